"""G.711 against the reference (CPython's audioop, Sun's g711.c) for every 16-bit value; resampling; framing."""

import warnings

import numpy as np
import pytest

from voice_gateway.audio import (
    AudioFormatError,
    alaw_decode,
    alaw_encode,
    frames,
    resample,
    rms_dbfs,
    ulaw_decode,
    ulaw_encode,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop", reason="the G.711 reference (audioop) was removed in Python 3.13")

EVERY_SAMPLE = np.arange(-32768, 32768, dtype="<i2").tobytes()
EVERY_CODE = bytes(range(256))


def test_mu_law_is_bit_exact() -> None:
    assert ulaw_encode(EVERY_SAMPLE) == audioop.lin2ulaw(EVERY_SAMPLE, 2)
    assert ulaw_decode(EVERY_CODE) == audioop.ulaw2lin(EVERY_CODE, 2)


def test_a_law_is_bit_exact() -> None:
    assert alaw_encode(EVERY_SAMPLE) == audioop.lin2alaw(EVERY_SAMPLE, 2)
    assert alaw_decode(EVERY_CODE) == audioop.alaw2lin(EVERY_CODE, 2)


def tone(rate: int, hz: float = 440.0, seconds: float = 1.0, level: float = 0.5) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


@pytest.mark.parametrize(("src", "dst"), [(22050, 8000), (8000, 16000), (48000, 16000), (16000, 8000)])
def test_resample_keeps_length_and_level(src: int, dst: int) -> None:
    out = resample(tone(src), src, dst)
    assert abs(len(out) // 2 - dst) <= 2
    assert abs(rms_dbfs(out) - rms_dbfs(tone(dst))) < 0.5


def test_resample_filters_what_the_new_rate_cannot_carry() -> None:
    above_nyquist = tone(22050, hz=6000)  # no place for 6 kHz at 8 kHz: it must not fold back as an alias
    assert rms_dbfs(resample(above_nyquist, 22050, 8000)) < -40


def test_bad_audio_is_refused() -> None:
    with pytest.raises(AudioFormatError):
        resample(b"\x00\x01\x02", 8000, 16000)
    with pytest.raises(AudioFormatError):
        resample(b"\x00\x00", 8000, 11111)


def test_frames_are_20_ms_and_the_last_is_padded() -> None:
    pcm = b"\x01\x00" * (8000 * 30 // 1000)  # 30 ms at 8 kHz
    chunks = list(frames(pcm, 8000))
    assert [len(c) for c in chunks] == [320, 320]
    assert chunks[1][160:] == b"\x00" * 160
