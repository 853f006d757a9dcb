"""The browser softphone: headless Chromium calls the real gateway over WebRTC; the transport's edges in process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import urllib.error
import urllib.request
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest
import redis
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from playwright.async_api import Browser, Page, async_playwright
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from tests.unit.fakes import ToneBot
from tests.voice.conftest import VoiceGateway, first
from voice_gateway.audio import rms_dbfs
from voice_gateway.call_store import CallStore, events_channel
from voice_gateway.calls import Call, Switchboard
from voice_gateway.flow import EndReason
from voice_gateway.transports import webrtc
from voice_gateway.transports.webrtc import AgentVoice, CallerAudio, WebRtcSettings, reachable_candidates

CHROMIUM = "/usr/bin/chromium"
LEAD_SILENCE_S = 6.0  # the caller lets the greeting finish, asks once, then stays quiet
TAIL_SILENCE_S = 60.0


# --- in process: the transport's edges, against a gateway that must never start a call ---
class NoCallsGateway:
    """A switchboard on which no call may start: the connections here must all be refused before."""

    def __init__(self) -> None:
        self.sessions: list[str] = []
        self.switchboard = Switchboard(4, self._bot)
        self.store = None

    def _bot(self, call: Call) -> Any:
        self.sessions.append(call.call_id)
        raise AssertionError("no call should start here")


@contextlib.asynccontextmanager
async def softphone_server(timeout_s: float = 1.5, gateway: Any = None) -> AsyncIterator[tuple[str, Any]]:
    gateway = gateway or NoCallsGateway()
    settings = WebRtcSettings(timeout_s=timeout_s, addresses=("127.0.0.1",))
    webrtc.offer_host_candidates(settings.addresses)  # the test's own peer offers loopback too
    try:
        handler = lambda ws: webrtc.handle(ws, gateway.switchboard, gateway.store, settings)  # noqa: E731
        async with serve(handler, "127.0.0.1", 0) as server:
            yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/phone/ws", gateway
    finally:
        webrtc.offer_host_candidates(None)


async def _closed(ws: ClientConnection, seconds: float = 10) -> tuple[int, str, list[dict[str, Any]]]:
    """Read until the server closes: the close code and reason, and the JSON messages before it."""
    messages = []
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(seconds):
            while True:
                messages.append(json.loads(await ws.recv()))
    return closed.value.rcvd.code, closed.value.rcvd.reason, messages


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        ("not json", 1007, "malformed JSON"),
        ("[1, 2]", 1007, "JSON object"),
        (b"\x00\x01", 1003, "binary"),
        ('{"type": "dtmf", "digit": "5"}', 1002, "offer"),
        ('{"type": "offer", "sdp": "v=0\\r\\nthis is not SDP"}', 1007, "bad offer"),
        ('{"type": "offer", "sdp": 42}', 1002, "offer"),
    ],
)
async def test_garbage_signalling_gets_an_error_and_a_close_code(message: str | bytes, code: int, reason: str) -> None:
    async with softphone_server() as (url, gateway), connect(url) as ws:
        await ws.send(message)
        got_code, got_reason, messages = await _closed(ws)
    assert (got_code, reason in got_reason) == (code, True), got_reason
    assert messages[-1]["type"] == "error" and reason in messages[-1]["message"]
    assert not gateway.sessions and not webrtc.PEERS


async def _offer(pc: RTCPeerConnection, direction: str) -> str:
    pc.addTransceiver("audio", direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def test_a_peer_that_never_completes_ice_is_cleaned_up_after_the_timeout() -> None:
    async with softphone_server(timeout_s=1.5) as (url, gateway), connect(url) as ws:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sdp = await _offer(pc, "sendrecv")
        unreachable = "".join(
            line + "\r\n" for line in sdp.splitlines() if not line.startswith(("a=candidate", "a=end-of-candidates"))
        )
        await ws.send(json.dumps({"type": "offer", "sdp": unreachable}))
        started = asyncio.get_running_loop().time()
        code, reason, messages = await _closed(ws)
        waited = asyncio.get_running_loop().time() - started
        await pc.close()
    assert messages[0]["type"] == "answer" and "a=candidate" in messages[0]["sdp"]
    assert code == 1002 and reason.startswith("timeout"), reason
    assert 1.0 < waited < 4, waited
    assert not gateway.sessions and not webrtc.PEERS


async def test_a_page_that_goes_while_connecting_is_cleaned_up_at_once() -> None:
    async with softphone_server(timeout_s=10) as (url, gateway):
        async with connect(url) as ws:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            sdp = await _offer(pc, "sendrecv")
            await ws.send(json.dumps({"type": "offer", "sdp": sdp.replace("a=candidate", "a=x-candidate")}))
            assert json.loads(await ws.recv())["type"] == "answer" and webrtc.PEERS
        await pc.close()
        async with asyncio.timeout(2):  # not the 10 s timeout: the closed socket ends it
            while webrtc.PEERS:
                await asyncio.sleep(0.05)
    assert not gateway.sessions


async def test_a_peer_that_connects_but_sends_no_audio_is_cleaned_up_after_the_timeout() -> None:
    async with softphone_server(timeout_s=2.0) as (url, gateway), connect(url) as ws:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        states: list[str] = []
        pc.on("connectionstatechange", lambda: states.append(pc.connectionState))
        await ws.send(json.dumps({"type": "offer", "sdp": await _offer(pc, "recvonly")}))
        answer = json.loads(await ws.recv())
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        code, reason, _ = await _closed(ws)
        await pc.close()
    assert "connected" in states  # ICE and DTLS on loopback worked; only the caller's audio never came
    assert code == 1002 and reason.startswith("timeout"), reason
    assert not gateway.sessions and not webrtc.PEERS


class FakePubSub:
    """The call's event channel: one event, once the call has started."""

    def __init__(self, gateway: ScriptedGateway) -> None:
        self.gateway = gateway
        self.closed = False
        self.channels: list[str] = []

    async def subscribe(self, channel: str) -> None:
        self.channels.append(channel)

    async def listen(self) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "subscribe", "data": 1}
        while not (self.gateway.sessions and self.gateway.sessions[0].started):
            await asyncio.sleep(0.01)
        call = self.gateway.sessions[0].call_id
        yield {"type": "message", "data": json.dumps({"call": call, "event": "turn", "kind": "answer", "bot": call})}
        await asyncio.Future()

    async def aclose(self) -> None:
        self.closed = True


class ScriptedBot(ToneBot):
    """On the call's bridge: says a tone, waits for a key, then hangs up the way the bot does."""

    def __init__(self, call: Call) -> None:
        super().__init__(16000)
        self.call = call
        self.call_id = call.call_id
        self.started = False

    @property
    def heard_bytes(self) -> int:
        return len(self.heard)

    async def start(self) -> None:
        self.started = True
        self._script = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with asyncio.timeout(8):
            while not self.keys:
                await asyncio.sleep(0.02)
        await self.call.hang_up(EndReason.COMPLETED, "done")


class ScriptedGateway:
    def __init__(self) -> None:
        self.sessions: list[ScriptedBot] = []
        self.events = FakePubSub(self)
        self.store = SimpleNamespace(redis=SimpleNamespace(pubsub=lambda: self.events))
        self.switchboard = Switchboard(4, self._bot)

    def _bot(self, call: Call) -> ScriptedBot:
        assert call.leg.wire == "webrtc" and call.leg.sample_rate == 16000
        bot = ScriptedBot(call)
        call.bridge.attach_bot(bot)
        self.sessions.append(bot)
        return bot


async def test_a_call_in_process_audio_both_ways_keys_events_and_the_agent_hanging_up() -> None:
    gateway = ScriptedGateway()
    async with softphone_server(timeout_s=5, gateway=gateway) as (url, _), connect(url) as ws:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(AudioStreamTrack())  # the caller: silence, but real Opus packets
        heard: list[float] = []
        readers: list[asyncio.Future] = []

        @pc.on("track")
        def on_track(track: Any) -> None:
            async def read() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        heard.append(float(np.abs((await track.recv()).to_ndarray()).max()))

            readers.append(asyncio.ensure_future(read()))

        await pc.setLocalDescription(await pc.createOffer())
        await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
        await pc.setRemoteDescription(RTCSessionDescription(json.loads(await ws.recv())["sdp"], "answer"))
        call = json.loads(await ws.recv())
        assert call["type"] == "call" and call["call"].startswith("webrtc-")
        assert call["ms"]["offer"] <= call["ms"]["answer"] <= call["ms"]["media"]
        async with connect(url) as bad:  # a broken caller meanwhile gets its close; this call carries on
            await bad.send("not json")
            assert (await _closed(bad))[0] == 1007
        await asyncio.sleep(1.2)  # the agent's tone plays
        for digit in ("55", "x", "5"):  # only real keypad keys reach the session
            await ws.send(json.dumps({"type": "dtmf", "digit": digit}))
        code, reason, messages = await _closed(ws)
        await pc.close()
    [session] = gateway.sessions
    assert gateway.events.channels == [events_channel(call["call"])]  # this call's own channel, nobody else's
    assert [m["event"]["bot"] for m in messages if m["type"] == "event"] == [call["call"]]
    assert messages[-1] == {"type": "hangup", "reason": "completed"} and (code, reason) == (1000, "hangup: completed")
    assert session.keys == ["5"] and session.call.end_reason is EndReason.COMPLETED
    assert session.heard_bytes > 16000 and session.heard_bytes % 2 == 0  # > 0.5 s of caller audio at 16 kHz
    assert max(heard) > 2000, "the agent's tone did not arrive"
    assert gateway.events.closed and not webrtc.PEERS


def test_a_loopback_gateway_drops_candidates_it_cannot_reach() -> None:
    offer = "".join(
        f"a=candidate:{i} 1 udp 2122260223 {address} 5000{i} typ host generation 0\r\n"
        for i, address in enumerate(["127.0.0.1", "192.0.2.2", "fd00::2", "::1", "0f1e2d3c.local"])
    )
    offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + offer
    kept = reachable_candidates(offer, ("127.0.0.1",))
    assert [line.split()[4] for line in kept.splitlines() if line.startswith("a=candidate")] == ["127.0.0.1", "::1"]
    assert kept.startswith("v=0\r\nm=audio") and kept.endswith("\r\n")
    assert reachable_candidates(offer, None) == offer == reachable_candidates(offer, ("192.0.2.2",))


async def test_agent_voice_plays_queued_frames_in_real_time_then_silence() -> None:
    voice = AgentVoice()
    tone = (np.sin(np.arange(800) * 2 * math.pi * 440 / 16000) * 8000).astype("<i2").tobytes()  # 2.5 frames
    voice.put(tone)
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = [await voice.recv() for _ in range(4)]
    took = loop.time() - started
    assert [f.pts for f in got] == [0, 320, 640, 960] and all(f.sample_rate == 16000 for f in got)
    assert [f.to_ndarray().tobytes() for f in got[:2]] == [tone[:640], tone[640:1280]]
    assert not got[2].to_ndarray().any()  # half a frame waits for the rest; nothing queued is silence
    assert 0.05 < took < 0.2  # 60 ms of audio after the first frame, paced
    voice.put(tone)
    voice.clear()  # barge-in: nothing of it is played
    assert not (await voice.recv()).to_ndarray().any()
    voice.stop()


def test_caller_audio_is_downmixed_and_resampled_to_16_khz() -> None:
    caller = CallerAudio()
    t = np.arange(48000) / 48000
    left = np.sin(2 * math.pi * 300 * t) * 10000
    stereo = np.stack([left, left], axis=1).astype("<i2")  # both channels the same tone
    out = b""
    for i in range(50):  # 50 frames of 20 ms, as aiortc's Opus decoder gives them
        frame = av.AudioFrame.from_ndarray(
            stereo[i * 960 : (i + 1) * 960].reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = 48000
        out += caller.convert(frame)
    assert 15500 < len(out) / 2 <= 16000  # one second at 16 kHz, less the resampler's delay (~20 ms)
    assert abs(rms_dbfs(out[3200:]) - 20 * math.log10(10000 / math.sqrt(2) / 32768)) < 0.5


# --- the real gateway, called by headless Chromium ---
@pytest.fixture(scope="module")
def caller_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The retirement-age question once, with silence around it (Chrome's fake microphone loops its file)."""
    with wave.open(first("intent", "retirement_age"), "rb") as w:
        rate, speech = w.getframerate(), w.readframes(w.getnframes())
    path = tmp_path_factory.mktemp("webrtc") / "caller.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(int(rate * LEAD_SILENCE_S) * 2) + speech + bytes(int(rate * TAIL_SILENCE_S) * 2))
    return path


@pytest.fixture(scope="module")
async def chromium(caller_wav: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={caller_wav}",
                "--allow-loopback-in-peer-connection",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        await browser.close()


def _phone_url(gateway: VoiceGateway, token: str | None = None) -> str:
    token = gateway.token if token is None else token
    return f"http://127.0.0.1:{gateway.port}/phone" + (f"?token={token}&raw=1" if token else "")


STATS_JS = """async () => {
  const out = {times: window.phone.times, agentPeak: window.phone.agentPeak};
  (await window.phone.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") out.inbound = {
      packetsReceived: r.packetsReceived, packetsLost: r.packetsLost, jitter: r.jitter,
      totalAudioEnergy: r.totalAudioEnergy, totalSamplesDuration: r.totalSamplesDuration,
      jitterBufferMs: r.jitterBufferDelay / r.jitterBufferEmittedCount * 1000};
    if (r.type === "outbound-rtp" && r.kind === "audio") out.outbound = {packetsSent: r.packetsSent};
    if (r.type === "candidate-pair" && r.nominated) out.rttMs = r.currentRoundTripTime * 1000;
  });
  return out;
}"""


async def _wait_for(check: Any, seconds: float, what: str) -> Any:  # check: () -> value, falsy until ready
    async with asyncio.timeout(seconds):
        while not (value := check()):
            await asyncio.sleep(0.1)
    assert value, what
    return value


async def _until(page: Page, js: str, seconds: float) -> Any:
    """Poll a function in the page (wait_for_function evaluates strings, which the page's CSP forbids)."""
    async with asyncio.timeout(seconds):
        while not (value := await page.evaluate(js)):
            await asyncio.sleep(0.1)
    return value


async def _transcript(page: Page) -> list[tuple[str, str]]:
    rows = await page.eval_on_selector_all(
        "#transcript li", "els => els.map((e) => [e.className, e.lastChild.textContent])"
    )
    return [(kind, text) for kind, text in rows]


async def test_a_browser_call_is_heard_answered_keyed_and_hung_up(gateway: VoiceGateway, chromium: Browser) -> None:
    page = await chromium.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    await page.goto(_phone_url(gateway))
    calls_before = _health(gateway)["calls"]
    await page.click("#call")
    call_id = await _until(page, "() => window.phone.callId", 15)
    assert call_id.startswith("webrtc-")
    # the caller's question, recognised, then the agent's answer after it
    await _until(
        page,
        """() => [...document.querySelectorAll('#transcript li')].map((e) => e.className).join(' ')
                 .match(/caller( |$).*agent/)""",
        45,
    )
    rows = await _transcript(page)
    said = [text for kind, text in rows if kind == "caller"]
    answered = [text for kind, text in rows[[k for k, _ in rows].index("caller") :] if kind == "agent"]
    stats = await page.evaluate(STATS_JS)
    turns = await CallStore(redis.asyncio.Redis.from_url(gateway.redis_url)).turns(call_id)
    print(json.dumps({"call": call_id, "transcript": rows, "stats": stats, "turns": turns}, ensure_ascii=False))
    assert any("退休" in text for text in said), rows
    answer = next(t for t in turns if t.get("kind") == "answer" and t.get("after") == "speech")
    assert answer["intent"] == "retirement_age", turns
    assert answered[0] == answer["bot"]
    # the agent's voice reached the browser: decoded, with energy, and heard by the page's analyser
    assert stats["inbound"]["totalSamplesDuration"] > 3 and stats["inbound"]["totalAudioEnergy"] > 0.01, stats
    assert stats["agentPeak"] > 0.01 and stats["outbound"]["packetsSent"] > 100, stats
    # the keypad: 0 for a person
    r = redis.Redis.from_url(gateway.redis_url)
    await page.click('#keypad button[data-digit="0"]')
    handoff = await _wait_for(lambda: r.hget(f"hotline:call:{call_id}", "handoff"), 10, "no handover")
    assert json.loads(handoff)["reason"] == "keypad_zero"
    await _until(page, "() => document.querySelector('#transcript li.note')", 10)
    # the hang-up button ends the call and everything it held
    await page.click("#hangup")
    await _wait_for(lambda: r.hget(f"hotline:call:{call_id}", "state") == b"ended", 10, "the call did not end")
    assert r.hget(f"hotline:call:{call_id}", "reason") == b"caller_hung_up"
    assert call_id.encode() not in r.smembers("hotline:calls:active")
    await _wait_for(lambda: _health(gateway)["calls"] <= calls_before, 5, "the call was not forgotten")
    assert await page.is_enabled("#call") and not await page.is_enabled("#hangup")
    assert not [m for m in console if "error" in m.lower()], console
    await page.close()


def _health(gateway: VoiceGateway) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/healthz", timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("token", ["", "wrong"])
def test_the_page_needs_the_token(gateway: VoiceGateway, token: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(_phone_url(gateway, token=token), timeout=5)
    assert refused.value.code == 401
    with urllib.request.urlopen(_phone_url(gateway), timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/html") and "拨打" in response.read().decode()


async def test_the_signalling_socket_needs_the_token_and_refuses_garbage(gateway: VoiceGateway) -> None:
    async with connect(gateway.url("/phone/ws", token="")) as ws:
        code, reason, _ = await _closed(ws)
    assert code == 1008 and "unauthorized" in reason
    async with connect(gateway.url("/phone/ws")) as ws:
        await ws.send('{"type": "offer", "sdp": "nonsense"}')
        code, reason, messages = await _closed(ws)
    assert code == 1007 and "bad offer" in reason and messages[-1]["type"] == "error"
