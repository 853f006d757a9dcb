"""Audio plumbing shared by every transport: G.711 (mu-law, A-law), resampling, 20 ms frames.

Internally audio is 16-bit signed little-endian mono PCM (`bytes`); telephony wire formats are converted at the
edge. G.711 follows ITU-T G.711 bit for bit (tests compare with the reference tables); resampling uses soxr,
which filters against aliasing where audioop.ratecv does not.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import soxr

FRAME_MS = 20


class AudioFormatError(ValueError):
    """Audio that cannot be what it claims to be (odd byte count, unsupported rate)."""


SUPPORTED_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


def pcm_to_array(pcm: bytes) -> np.ndarray:
    if len(pcm) % 2:
        raise AudioFormatError(f"16-bit PCM must have an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<i2")


def array_to_pcm(samples: np.ndarray) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


# --- G.711 mu-law ---
_MU_BIAS = 0x84


def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = (((mantissa << 3) + _MU_BIAS) << exponent) - _MU_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


_ULAW_TO_LINEAR = _ulaw_decode_table()


def ulaw_decode(data: bytes) -> bytes:
    return _ULAW_TO_LINEAR[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def ulaw_encode(pcm: bytes) -> bytes:
    x = pcm_to_array(pcm).astype(np.int32) >> 2  # mu-law works on 14-bit samples (floor, as the reference does)
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + 33
    segment = np.floor(np.log2(magnitude)).astype(np.int32) - 5
    code = np.where(segment > 7, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))  # full scale
    return (code ^ mask).astype(np.uint8).tobytes()


# --- G.711 A-law ---
def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ALAW_TO_LINEAR = _alaw_decode_table()


def alaw_decode(data: bytes) -> bytes:
    return _ALAW_TO_LINEAR[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    x = pcm_to_array(pcm).astype(np.int32) >> 3  # A-law works on 13-bit magnitudes
    sign = np.where(x >= 0, 0x80, 0)
    magnitude = np.where(x >= 0, x, -x - 1)
    magnitude = np.minimum(magnitude, 0x0FFF)
    exponent = np.where(magnitude < 32, 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8).tobytes()


# --- rate and framing ---
def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample 16-bit mono PCM (whole utterances; streams keep a `soxr.ResampleStream` per call)."""
    for rate in (from_rate, to_rate):
        if rate not in SUPPORTED_RATES:
            raise AudioFormatError(f"unsupported sample rate {rate} Hz (supported: {SUPPORTED_RATES})")
    if from_rate == to_rate or not pcm:
        return pcm
    return array_to_pcm(soxr.resample(pcm_to_array(pcm), from_rate, to_rate, quality="HQ"))


def frame_bytes(sample_rate: int, ms: int = FRAME_MS, bytes_per_sample: int = 2) -> int:
    return sample_rate * ms // 1000 * bytes_per_sample


def frames(pcm: bytes, sample_rate: int, ms: int = FRAME_MS) -> Iterator[bytes]:
    """Cut PCM into frames of `ms` milliseconds; the last one is padded with silence."""
    size = frame_bytes(sample_rate, ms)
    for start in range(0, len(pcm), size):
        chunk = pcm[start : start + size]
        yield chunk if len(chunk) == size else chunk + b"\x00" * (size - len(chunk))


def rms_dbfs(pcm: bytes) -> float:
    """Loudness of 16-bit PCM in dB relative to full scale (-inf for digital silence)."""
    x = pcm_to_array(pcm).astype(np.float64)
    if not len(x):
        return float("-inf")
    rms = float(np.sqrt(np.mean(x * x)))
    return 20 * np.log10(rms / 32768) if rms > 0 else float("-inf")
