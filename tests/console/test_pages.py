"""The agent's console and the supervisor's dashboard in headless Chromium, against the FakeBackend with a real
aiortc peer (media.py): a call rings with its context card and a ring tone, 接听 brings the page's fake
microphone (a 660 Hz tone) to the peer and the peer's 440 Hz tone to the page, the wrap-up is posted; a dropped
connection and refusals are told in Chinese; the supervisor's table, live transcript, figures and actions."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.console.conftest import PASSWORD
from tests.console.fakes import FakeBackend, FakeCall, demo_backend
from tests.console.media import MIC_HZ, TONE_HZ, loopback_candidates, write_tone_wav
from voice_gateway.console import make_app, serve_console
from voice_gateway.console.backend import CallAction

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs chromium (./hotline test installs it)")

# what the page hears, from window.hotlineRemoteStream: the strongest frequency and the level
HEAR_JS = """async (ms) => {
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(window.hotlineRemoteStream).connect(analyser);
  await new Promise((resolve) => setTimeout(resolve, ms));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let peak = 1;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
  const wave = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(wave);
  const rms = Math.sqrt(wave.reduce((sum, x) => sum + x * x, 0) / wave.length);
  const hz = peak * ctx.sampleRate / analyser.fftSize;
  await ctx.close();
  return { hz, rms };
}"""


@pytest.fixture(scope="module")
async def chromium(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    mic = write_tone_wav(tmp_path_factory.mktemp("pages") / "mic.wav")
    with loopback_candidates():
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={mic}",
                    "--allow-loopback-in-peer-connection",
                    "--autoplay-policy=no-user-gesture-required",
                ],
            )
            yield browser
            await browser.close()


async def _open(browser: Browser, port: int, name: str, path: str) -> tuple[Page, list[str]]:
    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"http://127.0.0.1:{port}{path}")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**{path}")
    return page, errors


async def _until(check, seconds: float, what: str):
    async with asyncio.timeout(seconds):
        while not (value := check()):
            await asyncio.sleep(0.05)
    assert value, what
    return value


def _acted(backend: FakeBackend, action: CallAction) -> list[tuple]:
    return [a for a in backend.acted if a[1] is action]


async def test_a_call_rings_is_answered_heard_both_ways_and_wrapped_up(settings, chromium: Browser) -> None:
    backend = FakeBackend(media=True)
    backend.follow = True
    backend.add(FakeCall("call-queued"))
    backend.add(FakeCall("call-employment", queue="employment", waited_s=300))  # not agent1's skill
    async with serve_console(make_app(settings, backend), "127.0.0.1", 0) as port:
        page, errors = await _open(chromium, port, "agent1", "/agent")
        assert await page.is_hidden("#ringing")
        await page.click("button[data-status=available]")
        await page.locator("#ringing").wait_for(state="visible", timeout=5000)
        assert await page.evaluate("window.hotlineRinger.ringing") is True
        card = await page.inner_text("#call-card")
        for shown in ("来电人要求转人工", "社保卡", "110105********1230", "已核验", "card_loss → human_handoff"):
            assert shown in card, shown
        for shown in ("卡片状态：丢失", "来电人社保卡丢失，已核验身份", "01/03", "需回电"):
            assert shown in card, shown
        assert await page.locator("#transcript li.turn").count() == 4
        assert "card_loss 97%" in await page.inner_text("#transcript li.caller >> nth=0")
        assert await page.evaluate("window.hotlineAgent.callId") == "call-queued"

        await page.click("#accept")
        await page.locator("#hangup").wait_for(state="visible", timeout=10000)
        assert await page.evaluate("window.hotlineRinger.ringing") is False
        (name, _, call_id, offer) = _acted(backend, CallAction.ACCEPT)[0]
        assert (name, call_id, offer["type"]) == ("agent1", "call-queued", "offer") and "a=candidate" in offer["sdp"]
        heard = await page.evaluate(HEAR_JS, 1200)
        assert abs(heard["hz"] - TONE_HZ) < 15 and heard["rms"] > 0.02, heard
        peer = backend.peers[0]
        await _until(lambda: peer.kept > 48000, 10, "the peer got no audio from the page")
        rms, hz = peer.heard()
        assert rms > 0.02 and abs(hz - MIC_HZ) < 10, (rms, hz)

        # the caller goes on talking: the line and the partial reach the page within a second
        started = time.monotonic()
        backend.publish("turn", {"call_id": "call-queued", "seq": 3, "speaker": "caller", "text": "卡是昨天丢的"})
        backend.publish("partial", {"call_id": "call-queued", "text": "能先挂失吗"})
        await page.locator("#transcript li.turn >> text=卡是昨天丢的").wait_for(timeout=1000)
        await page.locator("#transcript li.partial >> text=能先挂失吗").wait_for(timeout=1000)
        assert time.monotonic() - started < 1.0

        await page.click("#hangup")
        await page.locator("#wrapup").wait_for(state="visible")
        assert _acted(backend, CallAction.HANGUP)[0][3] == {}
        assert await page.evaluate("window.hotlineRemoteStream") is None
        await page.fill("#wrapup-note", "已告知挂失补卡流程")
        await page.check("#wrapup input[value=callback]")
        await page.click("#wrapup button[type=submit]")
        await page.locator("#notice >> text=小结已提交").wait_for(timeout=3000)
        assert _acted(backend, CallAction.WRAPUP)[0][2:] == (
            "call-queued",
            {"note": "已告知挂失补卡流程", "disposition": "callback"},
        )
        assert await page.is_hidden("#wrapup") and await page.is_hidden("#ringing")  # the other call is not theirs
        assert errors == []
        await page.context.close()
        await backend.close()


async def test_a_dropped_connection_a_taken_call_and_callbacks_are_told_in_chinese(settings, chromium: Browser) -> None:
    backend = FakeBackend(media=True)
    backend.follow = True
    backend.add(FakeCall("call-a", waited_s=90))
    backend.add(FakeCall("call-b", waited_s=10))
    backend.add_callback("cb-1", "call-old")
    async with serve_console(make_app(settings, backend), "127.0.0.1", 0) as port:
        page, errors = await _open(chromium, port, "agent1", "/agent")
        await page.locator("#callbacks li[data-callback=cb-1]").wait_for()
        await page.click("#callbacks li[data-callback=cb-1] button[data-action=dial]")
        await page.locator("#hangup").wait_for(state="visible", timeout=10000)  # the callee answered
        assert "sdp" in backend.callback_bodies[0]  # the page's offer went with the dial
        await page.click("#hangup")
        await page.locator("#wrapup").wait_for(state="visible", timeout=3000)
        await page.fill("#wrapup-note", "回电已说明补卡流程")
        await page.click("#wrapup button[type=submit]")
        await page.locator("#notice >> text=小结已提交").wait_for(timeout=3000)
        await page.click("#callbacks li[data-callback=cb-1] button[data-action=done]")
        await page.locator("#callbacks >> text=暂无待回电").wait_for(timeout=3000)
        assert [a[2].value for a in backend.callback_acts] == ["dial", "done"]

        await page.click("button[data-status=available]")
        await page.locator("#ringing").wait_for(state="visible", timeout=5000)
        assert await page.evaluate("window.hotlineAgent.callId") == "call-a"  # the longest wait first
        backend.calls_by_id["call-a"].state = "agent"  # another agent answered it (its event not here yet)
        backend.calls_by_id["call-a"].agent = "agent9"
        await page.click("#accept")
        await page.locator("#notice >> text=接听未成功：这通电话已不在排队").wait_for(timeout=5000)
        await _until(lambda: not [p for p in backend.peers if p.call_id == "call-a"], 1, "no peer for a refused accept")
        await page.wait_for_function("window.hotlineAgent.callId === 'call-b'", timeout=5000)  # the next one rings

        await page.click("#accept")
        await page.locator("#hangup").wait_for(state="visible", timeout=10000)
        await backend.drop_peer(next(p for p in backend.peers if p.call_id == "call-b"))  # the call side's end goes
        await page.locator("#notice >> text=语音连接已中断").wait_for(timeout=15000)
        assert "来电已回到队列" in await page.inner_text("#notice")
        assert await page.is_hidden("#hangup")
        assert errors == []
        await page.context.close()
        await backend.close()


async def test_the_supervisor_watches_every_call_and_listens_whispers_barges_takes_over(
    settings, chromium: Browser
) -> None:
    backend = demo_backend()
    async with serve_console(make_app(settings, backend), "127.0.0.1", 0) as port:
        page, errors = await _open(chromium, port, "sup1", "/supervisor")
        rows = page.locator("#call-rows tr[data-call-id]")
        await rows.nth(3).wait_for()
        assert await rows.count() == 4
        table = await page.inner_text("#call-rows")
        for shown in ("智能客服", "排队中", "人工服务中", "社会保险", "agent2", "不满：连续两次未听懂"):
            assert shown in table, shown
        await page.locator("#stats [data-stat=calls] >> text=128").wait_for(timeout=3000)
        assert await page.inner_text("#stats [data-stat=turn_gap_p95_ms]") == "812 毫秒"
        assert "01:15" in await page.inner_text("#queue-rows tr[data-queue=general]")
        busy = page.locator("#call-rows tr[data-call-id=call-0105-0925]")
        first = await busy.locator(".duration").inner_text()
        await page.wait_for_timeout(1600)
        assert await busy.locator(".duration").inner_text() != first  # ticking

        await busy.click()
        assert "unemployment_benefit 88%" in await page.inner_text("#sup-transcript")
        started = time.monotonic()
        backend.publish(
            "turn",
            {
                "call_id": "call-0105-0925",
                "seq": 3,
                "speaker": "caller",
                "text": "我在北京参保",
                "intent": "inform_city",
                "confidence": 0.9,
            },
        )
        await page.locator("#sup-transcript li.turn >> text=我在北京参保").wait_for(timeout=1000)
        assert time.monotonic() - started < 1.0
        assert "inform_city 90%" in await page.inner_text("#sup-transcript li.turn >> nth=-1")
        backend.publish("partial", {"call_id": "call-0105-0925", "text": "哪个网点"})
        await page.locator("#sup-transcript li.partial >> text=哪个网点").wait_for(timeout=1000)
        backend.publish("turn", {"call_id": "call-0105-0933", "seq": 2, "speaker": "caller", "text": "别的通话"})
        await page.locator("#call-rows tr[data-call-id=call-0105-0933] .last >> text=别的通话").wait_for(timeout=1000)
        assert "别的通话" not in await page.inner_text("#sup-transcript")

        controls = "#monitor-controls button[data-action={}]"
        await page.click(controls.format("listen"))
        await page.locator(controls.format("leave")).wait_for(state="visible", timeout=10000)
        heard = await page.evaluate(HEAR_JS, 1000)
        assert abs(heard["hz"] - TONE_HZ) < 15 and heard["rms"] > 0.02, heard
        await page.click(controls.format("whisper"))
        await page.locator("#monitor-mode >> text=正在耳语").wait_for(timeout=10000)
        await page.click(controls.format("barge"))
        await page.locator("#monitor-mode >> text=正在插话").wait_for(timeout=10000)
        assert [p.action for p in backend.peers] == ["listen", "whisper", "barge"]
        assert [p.closed for p in backend.peers] == [True, True, False]  # each offer replaced the one before
        await _until(lambda: backend.peers[2].kept > 24000, 10, "the barging supervisor's mic did not arrive")
        await page.click(controls.format("leave"))
        await page.locator("#notice >> text=已退出监听").wait_for(timeout=3000)
        for action in (CallAction.LISTEN, CallAction.WHISPER, CallAction.BARGE):
            (name, _, call_id, body) = _acted(backend, action)[0]
            assert (name, call_id, body["type"]) == ("sup1", "call-0105-0925", "offer") and body["sdp"], action
        assert _acted(backend, CallAction.LEAVE)[0][2:] == ("call-0105-0925", {})

        await page.click(controls.format("takeover"))
        await page.locator("#takeover-controls").wait_for(state="visible", timeout=10000)
        assert await page.is_hidden(controls.format("leave"))
        await page.click(controls.format("return"))
        await page.locator("#wrapup").wait_for(state="visible")
        assert _acted(backend, CallAction.RETURN)[0][2:] == ("call-0105-0925", {})
        await page.fill("#wrapup textarea", "班长接管后转回")
        await page.click("#wrapup button[type=submit]")
        await page.locator("#notice >> text=小结已提交").wait_for(timeout=3000)
        assert _acted(backend, CallAction.WRAPUP)[0][3] == {"note": "班长接管后转回", "disposition": "resolved"}

        # a call that ended without the page hearing of it yet: the refusal in Chinese
        await page.click("#call-rows tr[data-call-id=call-0105-0931]")
        backend.calls_by_id["call-0105-0931"].state = "ended"
        await page.click(controls.format("listen"))
        await page.locator("#notice >> text=操作未成功：通话不存在或已结束").wait_for(timeout=5000)
        assert errors == []
        await page.context.close()
        await backend.close()
