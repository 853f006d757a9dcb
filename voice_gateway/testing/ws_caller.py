"""A simulated caller: dials the gateway like Twilio does, speaks WAV files, keys digits, listens, reports.

The line is continuous, as on a real phone: silence frames flow whenever the caller is not speaking. A turn is a
WAV file (spoken after the agent has finished, or over it with `barge_in`) or keypad digits. Timings are
measured at the caller's end: turn gap = end of caller speech to the first agent audio back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voice_gateway.audio import FRAME_MS, frame_bytes, frames, resample, rms_dbfs, ulaw_decode, ulaw_encode

RATE = 8000
AGENT_DONE_SILENCE_S = 0.9  # no agent audio for this long: the agent has finished its turn


@dataclass
class Turn:
    wav: str | None = None
    keys: str | None = None
    barge_in: bool = False  # start speaking this long after the agent starts its answer (seconds), not after it ends
    barge_in_after_s: float = 1.0
    wait_s: float | None = None  # say nothing for this long, listening
    pause_s: float = 0.0  # think this long after the agent has finished before speaking
    gate: asyncio.Event | None = None  # and then wait for this before speaking (a test's cue)


@dataclass
class TurnReport:
    said: str
    turn_gap_ms: float | None = None
    barge_in_stop_ms: float | None = None
    agent_audio_s: float = 0.0
    agent_level_dbfs: float | None = None
    recognised: str | None = None
    confidence: float | None = None
    intent: str | None = None
    bot: str | None = None


@dataclass
class CallReport:
    call_id: str
    greeting_s: float = 0.0
    turns: list[TurnReport] = field(default_factory=list)
    ended_by: str = ""
    heard_wav: str | None = None


def leading_silence_s(pcm: bytes, rate: int, floor_dbfs: float = -40.0) -> float:
    """How long `pcm` stays quieter than `floor_dbfs` before the first voiced 20 ms frame."""
    for i, frame in enumerate(frames(pcm, rate)):
        if rms_dbfs(frame) > floor_dbfs:
            return i * FRAME_MS / 1000
    return len(pcm) / 2 / rate


def trailing_silence_s(pcm: bytes, rate: int, floor_dbfs: float = -40.0) -> float:
    """How long `pcm` stays quieter than `floor_dbfs` after its last voiced 20 ms frame."""
    chunks = list(frames(pcm, rate))
    for i, frame in enumerate(reversed(chunks)):
        if rms_dbfs(frame) > floor_dbfs:
            return i * FRAME_MS / 1000
    return len(pcm) / 2 / rate


def read_wav(path: Path, rate: int = RATE) -> bytes:
    """A caller WAV as 16-bit mono PCM at `rate`."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: 16-bit PCM WAV expected")
        pcm = w.readframes(w.getnframes())
        if w.getnchannels() == 2:
            pcm = np.frombuffer(pcm, "<i2").reshape(-1, 2).mean(axis=1).astype("<i2").tobytes()
        return resample(pcm, w.getframerate(), rate)


class SimulatedCaller:
    """A caller over Twilio Media Streams (8 kHz mu-law); `PcmCaller` is the wideband raw-PCM variant."""

    rate = RATE
    sends_clear = True  # the wire has an explicit "drop what you buffered" message (barge-in)

    def __init__(self, url: str) -> None:
        self.url = url
        self.call_sid = "CA" + uuid.uuid4().hex[:30]
        self.stream_sid = "MZ" + uuid.uuid4().hex[:30]
        self.heard = bytearray()
        self.arrived: list[tuple[float, bytes]] = []  # what the caller heard, with when it arrived
        self._speech: asyncio.Queue[bytes] = asyncio.Queue()
        self._last_agent_audio = 0.0
        self._turn_ended_at: float | None = None  # end of the caller's last turn
        self._first_audio_at: float | None = None  # first agent audio after it
        self._clear_at: float | None = None
        self._audio_stopped_at: float | None = None
        self._closed = asyncio.Event()
        self.close_reason = ""

    async def run(self, turns: list[Turn], *, max_wait_s: float = 30.0) -> CallReport:
        report = CallReport(call_id=self.call_id)
        async with self._connect() as ws:
            await self._open(ws)
            tasks = [asyncio.create_task(self._receive(ws)), asyncio.create_task(self._microphone(ws))]
            try:
                started = time.monotonic()
                await self._agent_turn(max_wait_s, started_only=bool(turns) and turns[0].barge_in)
                report.greeting_s = round(time.monotonic() - started, 3)
                for n, turn in enumerate(turns):
                    if self._closed.is_set():
                        break
                    barge_next = n + 1 < len(turns) and turns[n + 1].barge_in  # speak over this turn's answer
                    report.turns.append(await self._caller_turn(ws, turn, max_wait_s, barge_next))
                if not self._closed.is_set():
                    await self._stop(ws)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        report.ended_by = self.close_reason or "caller"
        return report

    async def _caller_turn(self, ws: Any, turn: Turn, max_wait_s: float, barge_next: bool = False) -> TurnReport:
        if turn.wait_s is not None:
            heard_from = len(self.heard)
            await asyncio.sleep(turn.wait_s)
            answer = bytes(self.heard[heard_from:])
            return TurnReport(said=f"[沉默 {turn.wait_s:g} 秒]", agent_audio_s=round(len(answer) / 2 / self.rate, 2))
        if turn.keys:
            report = TurnReport(said=f"[按键 {turn.keys}]")
            for key in turn.keys:
                await self._key(ws, key)
                await asyncio.sleep(0.15)
            ended = time.monotonic()
        else:
            pcm = read_wav(Path(turn.wav or ""), self.rate)
            report = TurnReport(said=Path(turn.wav or "").name)
            if turn.barge_in:
                await self._wait_agent_speaking(max_wait_s)
                await asyncio.sleep(turn.barge_in_after_s)
                self._clear_at = None
                speech_start = time.monotonic() + leading_silence_s(pcm, self.rate)  # the first voiced frame
                stopped = asyncio.create_task(self._agent_stops(speech_start))
            elif turn.pause_s:
                await asyncio.sleep(turn.pause_s)
            if turn.gate is not None:
                await turn.gate.wait()
            for frame in frames(pcm, self.rate):
                await self._speech.put(frame)
            await self._speech.join()
            ended = time.monotonic() - trailing_silence_s(pcm, self.rate)  # the end of the caller's last word
            if turn.barge_in:
                stopped.cancel()
                stop_at = self._clear_at if self.sends_clear else self._audio_stopped_at
                if stop_at is not None and stop_at >= speech_start - 0.05:
                    report.barge_in_stop_ms = round((stop_at - speech_start) * 1000, 1)
        self._turn_ended_at, self._first_audio_at = ended, None
        heard_from = len(self.heard)
        await self._agent_turn(max_wait_s, since=ended, started_only=barge_next)
        if self._first_audio_at is not None:
            report.turn_gap_ms = round((self._first_audio_at - ended) * 1000, 1)
        answer = bytes(self.heard[heard_from:])
        report.agent_audio_s = round(len(answer) / 2 / self.rate, 2)
        report.agent_level_dbfs = round(rms_dbfs(answer), 1) if answer else None
        return report

    async def _agent_stops(self, since: float, gap_s: float = 0.2) -> None:
        """For wires without `clear` (SIP): when the agent's audio stopped after `since` (a `gap_s` silence)."""
        self._audio_stopped_at = None
        while True:
            await asyncio.sleep(0.01)
            last = self._last_agent_audio
            if time.monotonic() > since and time.monotonic() - last >= gap_s:
                self._audio_stopped_at = max(last, since)
                return

    async def _wait_agent_speaking(self, max_wait_s: float) -> None:
        deadline = time.monotonic() + max_wait_s
        while time.monotonic() - self._last_agent_audio > 0.1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _agent_turn(self, max_wait_s: float, since: float | None = None, started_only: bool = False) -> None:
        """Wait until the agent has spoken and then gone quiet (or only until it starts, for a barge-in next)."""
        since = since or time.monotonic()
        deadline = since + max_wait_s
        while time.monotonic() < deadline and not self._closed.is_set():
            spoke = self._last_agent_audio > since
            if spoke and (started_only or time.monotonic() - self._last_agent_audio > AGENT_DONE_SILENCE_S):
                return
            await asyncio.sleep(0.02)

    async def _microphone(self, ws: Any) -> None:
        """A continuous line: caller speech when there is some, silence otherwise, one frame every 20 ms."""
        silence = b"\x00" * frame_bytes(self.rate)
        next_at = time.monotonic()
        while True:
            try:
                frame = self._speech.get_nowait()
                self._speech.task_done()
            except asyncio.QueueEmpty:
                frame = silence
            await self._send_frame(ws, frame)
            next_at += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def say_pcm(self, pcm: bytes) -> None:
        """Queue audio at the caller's rate for the microphone (a test's tone, outside the scripted turns)."""
        size = frame_bytes(self.rate)
        for start in range(0, len(pcm) - size + 1, size):
            self._speech.put_nowait(pcm[start : start + size])

    def heard_since(self, at: float) -> bytes:
        """The audio that reached the caller from monotonic time `at` on."""
        return b"".join(pcm for t, pcm in self.arrived if t >= at)

    def _heard_audio(self, pcm: bytes) -> None:
        now = time.monotonic()
        self.heard.extend(pcm)
        self.arrived.append((now, pcm))
        if rms_dbfs(pcm) > -60:
            self._last_agent_audio = now
            if self._turn_ended_at is not None and self._first_audio_at is None:
                self._first_audio_at = now

    async def _receive(self, ws: Any) -> None:
        try:
            async for raw in ws:
                self._on_message(raw)
        except ConnectionClosed as exc:
            self.close_reason = (exc.rcvd.reason if exc.rcvd else "") or "closed"
        finally:
            self._closed.set()
            self.close_reason = self.close_reason or (ws.close_reason or "closed")

    # --- the wire: Twilio Media Streams (subclasses override these for other wires) ---
    def _connect(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """The connection the wire methods below are given as `ws`."""
        return connect(self.url, max_size=2**20)

    @property
    def call_id(self) -> str:
        return f"twilio-{self.call_sid[:40]}"

    async def _open(self, ws: Any) -> None:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        media = {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}
        start = {"streamSid": self.stream_sid, "callSid": self.call_sid, "tracks": ["inbound"], "mediaFormat": media}
        await ws.send(json.dumps({"event": "start", "streamSid": self.stream_sid, "start": start}))

    async def _send_frame(self, ws: Any, frame: bytes) -> None:
        payload = base64.b64encode(ulaw_encode(frame)).decode()
        await ws.send(json.dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}))

    async def _key(self, ws: Any, key: str) -> None:
        dtmf = {"track": "inbound_track", "digit": key}
        await ws.send(json.dumps({"event": "dtmf", "streamSid": self.stream_sid, "dtmf": dtmf}))

    async def _stop(self, ws: Any) -> None:
        await ws.send(json.dumps({"event": "stop", "streamSid": self.stream_sid, "stop": {"callSid": self.call_sid}}))

    def _on_message(self, raw: str | bytes) -> None:
        message = json.loads(raw)
        if message.get("event") == "media":
            self._heard_audio(ulaw_decode(base64.b64decode(message["media"]["payload"])))
        elif message.get("event") == "clear":
            self._clear_at = self._clear_at or time.monotonic()  # the first clear is when the agent stopped

    def save_heard(self, path: Path) -> None:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(bytes(self.heard))


class PcmCaller(SimulatedCaller):
    """A wideband caller over the raw PCM endpoint (16 kHz): no telephone codec between the WAV and the recogniser."""

    rate = 16000

    @property
    def call_id(self) -> str:
        return f"pcm-{self.call_sid[:40]}"

    async def _open(self, ws: Any) -> None:
        await ws.send(json.dumps({"sampleRate": self.rate, "callId": self.call_sid}))

    async def _send_frame(self, ws: Any, frame: bytes) -> None:
        await ws.send(frame)

    async def _key(self, ws: Any, key: str) -> None:
        await ws.send(json.dumps({"type": "dtmf", "digit": key}))

    async def _stop(self, ws: Any) -> None:
        await ws.send(json.dumps({"type": "hangup"}))

    def _on_message(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self._heard_audio(raw)
        elif json.loads(raw).get("type") == "clear":
            self._clear_at = self._clear_at or time.monotonic()  # the first clear is when the agent stopped


def parse_turns(items: list[str]) -> list[Turn]:
    """`hotline call` arguments: FILE.wav, keys:135790#, barge:FILE.wav, wait:SECONDS."""
    turns = []
    for item in items:
        if item.startswith("keys:"):
            turns.append(Turn(keys=item[5:]))
        elif item.startswith("wait:"):
            turns.append(Turn(wait_s=float(item[5:])))
        elif item.startswith("barge:"):
            turns.append(Turn(wav=item[6:], barge_in=True))
        else:
            turns.append(Turn(wav=item))
    return turns


def dial(url: str, token: str | None = None) -> SimulatedCaller:
    """The caller for a gateway URL: sip:... over SIP/RTP, ws://.../pcm raw PCM at 16 kHz, else Twilio."""
    if url.startswith(("sip:", "sips:")):
        from voice_gateway.testing.sip_caller import SipCaller

        return SipCaller(url)
    kind = PcmCaller if urlsplit(url).path.rstrip("/").endswith("/pcm") else SimulatedCaller
    return kind(f"{url}?token={token}" if token else url)


async def call_and_report(
    url: str, token: str | None, items: list[str], redis_url: str | None, save: str | None = None
) -> dict[str, Any]:
    """Place one call and report it, joining what the gateway recorded (recognised text, intent, answer).

    The wire follows the URL: .../pcm is the wideband raw-PCM caller, anything else Twilio Media Streams.
    """
    from redis.asyncio import Redis

    from voice_gateway.call_store import CallStore

    caller = dial(url, token)
    report = await caller.run(parse_turns(items))
    if save:
        caller.save_heard(Path(save))
        report.heard_wav = save
    if redis_url:
        redis = Redis.from_url(redis_url)
        await asyncio.sleep(0.3)  # the last answer's record is written off the critical path
        records = await CallStore(redis).turns(report.call_id)
        await redis.aclose()
        heard = [r for r in records if r.get("kind") == "heard"]
        answers = {r["seq"]: r for r in records if r.get("kind") == "answer" and r.get("after") == "speech"}
        spoken = [t for t in report.turns if not t.said.startswith("[")]
        for turn, record in zip(spoken, heard, strict=False):
            turn.recognised, turn.confidence = record.get("caller"), record.get("confidence")
            answer = answers.get(record["seq"]) or {}
            turn.intent, turn.bot = answer.get("intent"), answer.get("bot")
        key_answers = [r for r in records if r.get("kind") == "answer" and r.get("after") == "keys"]
        for turn, record in zip([t for t in report.turns if t.said.startswith("[按键")], key_answers, strict=False):
            turn.intent, turn.bot = record.get("intent"), record.get("bot")
    return asdict(report)
