"""The WebSocket wires fuzzed: Twilio Media Streams JSON and the raw-PCM metadata and control messages.

Properties: `twilio._parse`, `twilio._decode_media` and `common.json_object` raise only ProtocolViolation; a
whole stream of mutated messages through `twilio.handle` or `pcm.handle` (a fake socket, a fake switchboard)
ends normally or closes the socket with the code the docs give for bad input (1002 protocol order, 1003
unsupported format, 1007 malformed), never 1011 (internal error: a bug), and hands the call only whole 16-bit
frames and single keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from tests.fuzz.harness import CORPUS, Harness, budget, corpus, explicit
from tests.fuzz.jsonmut import TEXT_BOMBS, mutated_text
from voice_gateway.transports import pcm, twilio
from voice_gateway.transports.common import CloseCode, ProtocolViolation, json_object

TWILIO_SEEDS = [json.loads(data) for data in corpus("twilio", ".json")]
PCM_SEEDS = [json.loads(data) for data in corpus("pcm", ".json")]
FRAMES = [data.decode() for data in corpus("frames", ".txt")]  # text frames the fuzzer found answered 1011
STREAM_REGRESSIONS = sorted((CORPUS / "twilio-streams").glob("*.jsonl"))
BAD_INPUT = {CloseCode.PROTOCOL, CloseCode.UNSUPPORTED, CloseCode.INVALID_DATA}

MESSAGES = Harness("ws-json-messages")
STREAMS = Harness("ws-streams")


def check_message(raw: str | bytes) -> None:
    for parse in (twilio._parse, json_object):
        try:
            message = parse(raw)  # type: ignore[arg-type]
        except ProtocolViolation as exc:
            assert exc.code in BAD_INPUT, exc.code
            continue
        assert isinstance(message, dict)
        if parse is twilio._parse:
            try:
                audio = twilio._decode_media(message)
            except ProtocolViolation as exc:
                assert exc.code in BAD_INPUT
            else:
                assert len(audio) % 2 == 0


@settings(max_examples=budget(2000))
@explicit(*(json.dumps(seed) for seed in TWILIO_SEEDS + PCM_SEEDS), *FRAMES, *TEXT_BOMBS)
@given(st.text(max_size=200) | st.binary(max_size=50))
@MESSAGES
def test_seeds_and_random_text(raw: str | bytes) -> None:
    MESSAGES.check(check_message, raw)


@settings(max_examples=budget(1200))
@given(pick=st.integers(0, 1000), seed=st.integers(0, 2**32 - 1))
@MESSAGES
def test_mutated_messages(pick: int, seed: int) -> None:
    rng = random.Random(seed)
    seeds = TWILIO_SEEDS + PCM_SEEDS
    for _ in range(16):
        MESSAGES.check(check_message, mutated_text(seeds[pick % len(seeds)], rng))


# --- whole streams through the handlers ---
class FakeSocket:
    """The server side of a WebSocket: the peer's frames in, what we close it with out."""

    remote_address = ("192.0.2.10", 40000)

    def __init__(self, frames: list[str | bytes], clean_end: bool) -> None:
        self.frames, self.clean_end = list(frames), clean_end
        self.closed: tuple[int, str] | None = None
        self.sent: list[Any] = []

    def __aiter__(self) -> FakeSocket:
        return self

    async def __anext__(self) -> str | bytes:
        if self.frames:
            return self.frames.pop(0)
        if self.clean_end:
            raise StopAsyncIteration
        raise ConnectionClosedError(None, None)

    async def recv(self) -> str | bytes:
        if self.frames:
            return self.frames.pop(0)
        raise ConnectionClosedError(None, None)

    async def send(self, data: Any) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        assert self.closed is None, "closed twice"
        self.closed = (code, reason)


class FakeCall:
    def __init__(self) -> None:
        self.audio_bytes = 0
        self.keys: list[str] = []

    def audio(self, frame: bytes) -> None:
        assert isinstance(frame, bytes) and len(frame) % 2 == 0, len(frame)
        self.audio_bytes += len(frame)

    def key(self, key: str) -> None:
        assert isinstance(key, str) and len(key) <= 1, key
        self.keys.append(key)


class FakeAdmission:
    async def run(self, leg: Any, call_id: str, media: Any) -> Any:
        assert isinstance(call_id, str) and call_id
        assert leg.sample_rate in (8000, 16000), leg.sample_rate
        return await media(FakeCall())

    def release(self) -> None:
        pass


class FakeSwitchboard:
    def admit(self) -> FakeAdmission:
        return FakeAdmission()

    def unique_id(self, wanted: str) -> str:
        return wanted


LOOP = asyncio.new_event_loop()


def run_stream(handler: Any, frames: list[str | bytes], clean_end: bool) -> None:
    ws = FakeSocket(frames, clean_end)
    with contextlib.suppress(ConnectionClosed):  # the peer went away: websockets itself ends the connection
        LOOP.run_until_complete(handler(ws, FakeSwitchboard()))
    if ws.closed is not None:
        assert ws.closed[0] in BAD_INPUT, f"closed with {ws.closed}"


def stream(rng: random.Random, seeds: list[Any], first: list[Any], binary: bool) -> list[str | bytes]:
    frames: list[str | bytes] = []
    opening = [rng.choice(first)] if rng.random() < 0.9 else []
    for value in opening + [rng.choice(seeds) for _ in range(rng.randrange(8))]:
        if binary and rng.random() < 0.3:
            frames.append(rng.randbytes(rng.choice((320, 640, 1, 33, 32002, 0))))
        elif rng.random() < 0.5:
            frames.append(json.dumps(value))
        else:
            frames.append(mutated_text(value, rng))
    return frames


@settings(max_examples=budget(1500))
@given(seed=st.integers(0, 2**32 - 1), clean_end=st.booleans())
@STREAMS
def test_twilio_streams(seed: int, clean_end: bool) -> None:
    rng = random.Random(seed)
    first = [s for s in TWILIO_SEEDS if s.get("event") in ("connected", "start")]
    STREAMS.check(run_stream, twilio.handle, stream(rng, TWILIO_SEEDS, first, binary=False), clean_end)


@settings(max_examples=budget(1500))
@given(seed=st.integers(0, 2**32 - 1), clean_end=st.booleans())
@STREAMS
def test_pcm_streams(seed: int, clean_end: bool) -> None:
    rng = random.Random(seed)
    first = [s for s in PCM_SEEDS if "type" not in s]
    STREAMS.check(run_stream, pcm.handle, stream(rng, PCM_SEEDS, first, binary=True), clean_end)


@pytest.mark.parametrize("path", STREAM_REGRESSIONS, ids=lambda p: p.stem)
def test_streams_the_fuzzer_found(path: Path) -> None:
    """Whole streams that once closed the socket with 1011, through both handlers, and once more with frames."""
    frames: list[str | bytes] = list(path.read_text(encoding="utf-8").splitlines())
    for handler in (twilio.handle, pcm.handle):
        STREAMS.check(run_stream, handler, frames, False)
        STREAMS.check(run_stream, handler, [*frames, *FRAMES], True)
