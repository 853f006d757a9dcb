"""The consoles in headless Chromium against the real thing: the session's gateway process (Whisper, Rasa, Redis,
the desk, RedisBackend) serving /agent and /supervisor, Twilio callers simulated on its media socket.

Whose voice reached whom is told by tones: the caller says 440 Hz (measured in the agent's page on
window.hotlineRemoteStream), the page's fake microphone plays a 660 Hz WAV (measured on the 8 kHz audio the
caller receives). HOTLINE_SCREENSHOTS=docs/img makes the tests save the consoles' screenshots on the way
(tools/console_screenshots.py has the browser set-up they share with the FakeBackend's shots).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import APIRequestContext, Browser, Page, async_playwright
from redis.asyncio import Redis

from tests.console.media import write_tone_wav
from tests.voice.conftest import VoiceGateway, first, log_tail
from tools import console_screenshots as shots
from voice_gateway.audio import rms_dbfs
from voice_gateway.call_store import CallStore
from voice_gateway.console.store import UserStore, open_database
from voice_gateway.testing.console_peer import ConsolePeer, tone, tone_level
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn, read_wav

pytestmark = pytest.mark.skipif(not os.path.exists(shots.CHROMIUM), reason="needs chromium (./hotline test)")

CALLER_HZ, AGENT_HZ = 440.0, 660.0
PASSWORD = "浏览器测试-12333"
ALL_SKILLS = "general,social_insurance,card,employment,talent,arbitration"
AGENT, OTHER_AGENT, SUPERVISOR = "br-agent", "br-agent2", "br-sup"
SCREENSHOTS = Path(os.environ["HOTLINE_SCREENSHOTS"]) if os.environ.get("HOTLINE_SCREENSHOTS") else None

# The share of the page's received audio energy at `hz` (80 Hz .. 4 kHz), averaged over `ms`, and its level.
HEAR_JS = """async ({ ms, hz }) => {
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 4096;
  analyser.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(window.hotlineRemoteStream).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const wave = new Float32Array(analyser.fftSize);
  const binHz = ctx.sampleRate / analyser.fftSize;
  let band = 0, total = 0, squares = 0, samples = 0;
  const until = performance.now() + ms;
  while (performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    analyser.getFloatFrequencyData(bins);
    for (let i = 1; i < bins.length; i++) {
      const f = i * binHz, power = Math.pow(10, bins[i] / 10);
      if (f > 80 && f < 4000) total += power;
      if (Math.abs(f - hz) < 20) band += power;
    }
    analyser.getFloatTimeDomainData(wave);
    for (const x of wave) squares += x * x;
    samples += wave.length;
  }
  await ctx.close();
  return { share: total > 0 ? band / total : 0, rms: Math.sqrt(squares / Math.max(1, samples)) };
}"""

# Every caller line added to the supervisor's transcript, with the page's clock when it appeared.
WATCH_JS = """() => {
  window.seenLines = [];
  new MutationObserver((mutations) => {
    const now = Date.now();
    for (const m of mutations)
      for (const node of m.addedNodes)
        if (node.nodeType === 1 && node.matches("li.turn.caller"))
          window.seenLines.push({ t: now, text: node.querySelector(".text").textContent, seq: node.dataset.seq });
  }).observe(document.getElementById("sup-transcript"), { childList: true });
}"""


class Caller(SimulatedCaller):
    """A Twilio caller that can say a tone."""

    def since(self, at: float) -> bytes:
        return self.heard_since(at)

    def say_tone(self, hz: float, seconds: float) -> None:
        self.say_pcm(tone(hz, seconds, rate=self.rate))


class Line:
    """One caller on the gateway, and what Redis says of the call."""

    def __init__(self, gateway: VoiceGateway, redis: Redis, turns: list[Turn]) -> None:
        self.gateway, self.redis = gateway, redis
        self.caller = Caller(gateway.url("/twilio"))
        self.task = asyncio.create_task(self.caller.run(turns))

    @property
    def call_id(self) -> str:
        return self.caller.call_id

    async def record(self) -> dict[str, str]:
        raw = await self.redis.hgetall(f"hotline:call:{self.call_id}")
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def until(self, state: str, timeout_s: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while (record := await self.record()).get("console") != state:
            if time.monotonic() > deadline or self.task.done():
                pytest.fail(
                    f"{self.call_id}: console {record.get('console')!r}, not {state!r} "
                    f"(record {record}; caller ended: {self.task.done()})\n{log_tail(self.gateway)}"
                )
            await asyncio.sleep(0.1)
        return record

    async def hang_up(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        deadline = time.monotonic() + 10
        while (await self.record()).get("console") not in ("ended", None, "") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # out of every queue before the next test rings


@pytest.fixture(scope="module")
def users(gateway: VoiceGateway) -> dict[str, str]:
    engine = open_database(gateway.console_db_url)
    store = UserStore(engine)
    store.add(AGENT, "agent", PASSWORD, ALL_SKILLS)
    store.add(OTHER_AGENT, "agent", PASSWORD, ALL_SKILLS)
    store.add(SUPERVISOR, "supervisor", PASSWORD, "")
    engine.dispose()
    return {"url": f"http://127.0.0.1:{gateway.console_port}"}


@pytest.fixture(scope="module")
async def chromium(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    mic = write_tone_wav(tmp_path_factory.mktemp("browser") / "mic-660.wav", hz=AGENT_HZ)
    async with async_playwright() as p:
        browser = await shots.launch(p, mic)
        yield browser
        await browser.close()


@pytest.fixture
async def redis(gateway: VoiceGateway) -> AsyncIterator[Redis]:
    client = Redis.from_url(gateway.redis_url, socket_timeout=3)
    yield client
    await client.aclose()


async def open_page(browser: Browser, url: str, name: str, path: str) -> tuple[Page, list[str]]:
    """Signed in through the real form; the page's script errors collected."""
    page = await shots.sign_in(browser, url, f"{name}:{PASSWORD}", path)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


async def eventually(check: Callable[[], Awaitable[object]], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while not (value := await check()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)
    return value


async def ringing(page: Page, call_id: str, timeout_ms: float = 15000) -> None:
    await page.wait_for_function(
        "(id) => window.hotlineAgent.callId === id && window.hotlineAgent.mode === 'ringing'",
        arg=call_id,
        timeout=timeout_ms,
    )


async def test_an_agent_answers_a_real_caller_both_hear_each_other_and_the_bot_takes_the_caller_back(
    gateway: VoiceGateway, users: dict, chromium: Browser, redis: Redis
) -> None:
    line = Line(gateway, redis, [Turn(wav=first("intent", "request_human")), Turn(wait_s=60)])
    page = None
    try:
        page, errors = await open_page(chromium, users["url"], AGENT, "/agent")
        await page.click("button[data-status=available]")
        record = await line.until("queued", 30)
        await ringing(page, line.call_id)
        assert await page.evaluate("window.hotlineRinger.ringing") is True
        card = await page.inner_text("#call-card")
        assert "来电人要求转人工" in card, card  # the reason
        queue = record["queue"]
        assert await page.inner_text("#call-card [data-field=queue]") not in ("", "—", queue), card  # the domain
        said = await page.locator("#transcript li.turn.caller .text").all_inner_texts()
        assert said and all(said), "the transcript so far is not on the card"
        assert await page.locator("#transcript li.turn.bot").count() >= 1
        if SCREENSHOTS:
            await shots.save(page, SCREENSHOTS, "console-agent-ringing.png")

        await page.click("#accept")
        await page.locator("#hangup").wait_for(state="visible", timeout=15000)
        record = await line.until("agent", 10)
        assert record["agent"] == AGENT
        await page.wait_for_function("window.hotlineRemoteStream !== null && window.hotlineRemoteStream !== undefined")
        await asyncio.sleep(1.0)  # ICE, DTLS, the first packets

        mic_from = time.monotonic()
        line.caller.say_tone(CALLER_HZ, 3.0)
        await asyncio.sleep(0.4)  # the tone on its way to the page
        heard = await page.evaluate(HEAR_JS, {"ms": 2000, "hz": CALLER_HZ})
        assert heard["share"] > 0.3 and heard["rms"] > 0.01, f"the agent's page did not hear the caller: {heard}"
        to_caller = tone_level(line.caller.since(mic_from), AGENT_HZ, rate=line.caller.rate)
        assert to_caller > 0.3, f"the caller did not hear the agent's microphone: 660 Hz share {to_caller:.2f}"
        if SCREENSHOTS:
            await shots.save(page, SCREENSHOTS, "console-agent-in-call.png")

        await page.click("#return")  # 转回智能客服
        await page.locator("#wrapup").wait_for(state="visible", timeout=10000)
        await line.until("bot", 10)
        before = len(await CallStore(redis).turns(line.call_id))
        line.caller.say_pcm(read_wav(Path(first("intent", "retirement_age")), line.caller.rate))

        async def answered() -> list[dict]:
            turns = (await CallStore(redis).turns(line.call_id))[before:]
            return [t for t in turns if t.get("kind") == "answer"]

        answers = await eventually(answered, 20, "the bot did not answer after the call came back to it")
        assert answers[0].get("intent") == "retirement_age", answers

        await page.fill("#wrapup-note", "来电人咨询退休年龄，已转回智能客服")
        await page.check("#wrapup input[value=resolved]")
        await page.click("#wrapup button[type=submit]")
        await page.wait_for_function("document.getElementById('notice').textContent.includes('小结')", timeout=5000)
        notice = await page.inner_text("#notice")
        assert "小结已提交" in notice, notice
        wrapup = json.loads((await line.record())["wrapup"])
        assert (wrapup["by"], wrapup["disposition"]) == (AGENT, "resolved")
        assert errors == []
    finally:
        await line.hang_up()
        if page is not None:
            await page.context.close()


async def test_the_supervisor_sees_a_recognised_sentence_within_a_second(
    gateway: VoiceGateway, users: dict, chromium: Browser, redis: Redis
) -> None:
    page, errors = await open_page(chromium, users["url"], SUPERVISOR, "/supervisor")
    await page.evaluate(WATCH_JS)
    waiting = Line(gateway, redis, [Turn(wav=first("intent", "request_human")), Turn(wait_s=40)])  # the dashboard
    line = Line(gateway, redis, [Turn(wait_s=1.0), Turn(wav=first("intent", "retirement_age")), Turn(wait_s=30)])
    try:
        row = page.locator(f"#call-rows tr[data-call-id='{line.call_id}']")
        await row.wait_for(timeout=10000)
        await row.click()
        assert await page.evaluate("window.hotlineSupervisor.selected") == line.call_id
        selected_ms = time.time() * 1000

        async def caller_turn() -> tuple[int, str] | None:
            for raw_id, fields in await redis.xrange("hotline:events", min=f"{int(selected_ms) - 60000}", max="+"):
                data = json.loads(fields[b"data"])
                if fields[b"type"] == b"turn" and data.get("call_id") == line.call_id and data["speaker"] == "caller":
                    return int(raw_id.decode().split("-")[0]), data["text"]
            return None

        written_ms, text = await eventually(caller_turn, 30, "the caller's sentence was not recognised")
        assert written_ms > selected_ms, "the sentence was recognised before the call was selected"

        async def shown() -> dict | None:
            seen = await page.evaluate("window.seenLines")
            return next((s for s in seen if s["text"] == text), None)

        line_seen = await eventually(shown, 5, f"{text!r} never appeared in the supervisor's transcript")
        delay_ms = line_seen["t"] - written_ms
        print(f"\nsupervisor transcript: the caller's line {delay_ms} ms after its hotline:events entry")
        assert 0 <= delay_ms < 1000, delay_ms

        await waiting.until("queued", 30)
        await page.locator(f"#call-rows tr[data-call-id='{waiting.call_id}'][data-state=queued]").wait_for(timeout=5000)
        await page.locator(f"#sup-transcript li.turn.bot[data-seq='{line_seen['seq']}']").wait_for(timeout=15000)
        if SCREENSHOTS:
            await page.wait_for_timeout(1200)  # the figures and queues refreshed after the events
            await shots.save(page, SCREENSHOTS, "console-supervisor.png")
        assert errors == []
    finally:
        await asyncio.gather(line.hang_up(), waiting.hang_up())
        await page.context.close()


async def _signed_in(api: APIRequestContext, name: str) -> str:
    """Signs `api` in through the JSON form of POST /login; returns the CSRF token."""
    await api.get("/login")
    token = next(c["value"] for c in (await api.storage_state())["cookies"] if c["name"] == "csrftoken")
    signed = await api.post(
        "/login",
        data={"username": name, "password": PASSWORD},
        headers={"X-CSRFToken": token, "Accept": "application/json"},
    )
    assert signed.status == 200, await signed.text()
    return token


async def test_refusals_of_the_real_backend(gateway: VoiceGateway, users: dict, redis: Redis) -> None:
    url = users["url"]
    peer = None
    async with async_playwright() as p:
        anonymous = await p.request.new_context(base_url=url)
        forged = await p.request.new_context(
            base_url=url, extra_http_headers={"Cookie": "hotline_console=eyJ1aWQiOjEsIm5hbWUiOiJici1zdXAifQ==.forged"}
        )
        agent, other, supervisor = [await p.request.new_context(base_url=url) for _ in range(3)]
        line = Line(gateway, redis, [Turn(wav=first("intent", "request_human")), Turn(wait_s=40)])
        try:
            assert (await anonymous.get("/api/calls")).status == 401
            assert (await forged.get("/api/calls")).status == 401
            assert (await forged.get("/api/me")).status == 401

            agent_csrf = await _signed_in(agent, AGENT)
            other_csrf = await _signed_in(other, OTHER_AGENT)
            sup_csrf = await _signed_in(supervisor, SUPERVISOR)
            assert (await supervisor.get("/api/calls")).status == 200
            no_csrf = await agent.post("/api/agent/status", data={"status": "away"})
            assert no_csrf.status == 403, await no_csrf.text()
            page = await agent.get("/supervisor")
            assert page.status == 403 and "没有权限" in await page.text()

            await line.until("queued", 30)
            peer = ConsolePeer()
            taken = await other.post(
                f"/api/calls/{line.call_id}/accept", data=await peer.offer(), headers={"X-CSRFToken": other_csrf}
            )
            assert taken.status == 200, await taken.text()
            await peer.answered(await taken.json())
            await line.until("agent", 10)
            for action in ("hangup", "return"):
                refused = await agent.post(
                    f"/api/calls/{line.call_id}/{action}", data={}, headers={"X-CSRFToken": agent_csrf}
                )
                assert refused.status == 403, (action, await refused.text())
            assert (await line.record())["agent"] == OTHER_AGENT

            await line.hang_up()
            assert (await line.record())["console"] == "ended"
            ended = await supervisor.post(
                f"/api/calls/{line.call_id}/listen",
                data={"sdp": "v=0", "type": "offer"},
                headers={"X-CSRFToken": sup_csrf},
            )
            assert ended.status == 404, await ended.text()
        finally:
            if peer is not None:
                await peer.close()
            await line.hang_up()
            for api in (anonymous, forged, agent, other, supervisor):
                await api.dispose()


async def test_a_browser_that_drops_mid_call_puts_the_caller_back_in_the_queue(
    gateway: VoiceGateway, users: dict, chromium: Browser, redis: Redis
) -> None:
    line = Line(gateway, redis, [Turn(wav=first("intent", "request_human")), Turn(wait_s=60)])
    try:
        page, _ = await open_page(chromium, users["url"], AGENT, "/agent")
        await page.click("button[data-status=available]")
        await line.until("queued", 30)
        await ringing(page, line.call_id)
        await page.click("#accept")
        await page.locator("#hangup").wait_for(state="visible", timeout=15000)
        await line.until("agent", 10)
        await asyncio.sleep(1.0)
        closed = time.monotonic()
        await page.context.close()  # the tab goes away mid-call
        record = await line.until("queued", 15)
        print(f"\nthe dropped browser noticed in {time.monotonic() - closed:.1f} s")
        assert not record.get("agent")
        back = time.monotonic()
        await asyncio.sleep(3.0)
        heard = line.caller.since(back)
        assert len(heard) > 2 * line.caller.rate * 2.5, "the caller's line went dead after the drop"
        assert rms_dbfs(heard) > -45, f"the caller hears silence after the drop ({rms_dbfs(heard):.1f} dBFS)"
    finally:
        await line.hang_up()
