"""What a caller's voice goes through before the gateway hears it: telephone channels for test audio.

Each channel takes 16 kHz mono 16-bit PCM (a committed caller WAV) and returns (PCM, sample rate) as the gateway
would receive it. `clean` is the wideband line (16 kHz, untouched); every other channel ends on the telephone line
(300-3400 Hz, 8 kHz, G.711 mu-law, or A-law for `alaw`), with something a real caller brings on the way: a slower
or faster talker, a higher or lower voice, a room, other people talking, a street. Everything is deterministic:
random parts are seeded from the input itself, so one file always renders the same and two files differently.
numpy and soxr only; no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np
import soxr

from voice_gateway.audio import alaw_decode, alaw_encode, array_to_pcm, pcm_to_array, ulaw_decode, ulaw_encode

RATE = 16000  # what goes in
PHONE_RATE = 8000
BAND_HZ = (300.0, 3400.0)  # the telephone passband (ITU-T G.712)
ROLL_OFF_HZ = 60.0  # raised-cosine edges just outside the passband
SEED = 12333
SNR_DB = (10.0, 20.0)  # noisy channels draw a per-file SNR in this range
REVERB_RT60_S = 0.4
SEMITONES = 2.5  # the speaker channels: a voice this much higher or lower

Channel = Callable[[bytes], tuple[bytes, int]]


def _f(pcm: bytes) -> np.ndarray:
    return pcm_to_array(pcm).astype(np.float64)


def _rng(x: np.ndarray, salt: str) -> np.random.Generator:
    """A generator seeded from the audio and the channel: the same file renders the same every time."""
    digest = zlib.crc32(np.asarray(x, "<f8").tobytes()) ^ zlib.crc32(salt.encode())
    return np.random.default_rng([SEED, digest])


# --- the telephone line -----------------------------------------------------------------------------------------


def band_pass(x: np.ndarray, rate: int = RATE, band: tuple[float, float] = BAND_HZ) -> np.ndarray:
    """Zero-phase band-pass by a spectral mask: flat in `band`, raised-cosine to zero ROLL_OFF_HZ outside it."""
    if not len(x):
        return x
    n = 1 << int(np.ceil(np.log2(len(x) + 4096)))
    spectrum = np.fft.rfft(x, n)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    low, high = band
    mask = np.zeros_like(freqs)
    mask[(freqs >= low) & (freqs <= high)] = 1.0
    edge = (freqs > low - ROLL_OFF_HZ) & (freqs < low)
    mask[edge] = 0.5 - 0.5 * np.cos(np.pi * (freqs[edge] - (low - ROLL_OFF_HZ)) / ROLL_OFF_HZ)
    edge = (freqs > high) & (freqs < high + ROLL_OFF_HZ)
    mask[edge] = 0.5 + 0.5 * np.cos(np.pi * (freqs[edge] - high) / ROLL_OFF_HZ)
    return np.fft.irfft(spectrum * mask, n)[: len(x)]


def telephone(x: np.ndarray, codec: str = "ulaw") -> tuple[bytes, int]:
    """16 kHz float samples -> the telephone line: band-pass, 8 kHz, G.711 (`ulaw` or `alaw`) and back."""
    narrow = soxr.resample(band_pass(x), RATE, PHONE_RATE, quality="HQ")
    pcm = array_to_pcm(narrow)
    if codec == "ulaw":
        return ulaw_decode(ulaw_encode(pcm)), PHONE_RATE
    if codec == "alaw":
        return alaw_decode(alaw_encode(pcm)), PHONE_RATE
    raise ValueError(f"unknown codec {codec!r}")


# --- the talker: tempo and pitch ----------------------------------------------------------------------------------


def time_stretch(x: np.ndarray, rate: float, *, sr: int = RATE) -> np.ndarray:
    """WSOLA: `rate` > 1 speaks faster (duration / rate), pitch unchanged.

    30 ms Hann frames at a 15 ms synthesis hop; each frame is taken from within +-10 ms of its nominal analysis
    position where it best continues the previous frame (cross-correlation), so periods line up across the joins.
    """
    win_n = int(0.030 * sr)
    hop = win_n // 2
    tol = int(0.010 * sr)
    window = np.hanning(win_n + 1)[:win_n]  # periodic Hann: overlap-adds to one at half overlap
    out_n = round(len(x) / rate)
    padded = np.concatenate([np.zeros(tol), x, np.zeros(win_n + tol + int(hop * rate) + 2)])
    y = np.zeros(out_n + win_n)
    weight = np.zeros(out_n + win_n)
    previous = 0  # where the previous frame was taken from, in `padded`
    for k in range(out_n // hop + 1):
        nominal = tol + round(k * hop * rate)
        if k == 0:
            start = nominal
        else:
            template = padded[previous + hop : previous + hop + win_n]  # what would naturally come next
            region = padded[nominal - tol : nominal + tol + win_n]
            scores = np.correlate(region, template, mode="valid")
            start = nominal - tol + int(np.argmax(scores))
        frame = padded[start : start + win_n]
        y[k * hop : k * hop + win_n] += frame * window
        weight[k * hop : k * hop + win_n] += window
        previous = start
    y = y[:out_n] / np.maximum(weight[:out_n], 1e-3)
    return y


def pitch_shift(x: np.ndarray, semitones: float, *, sr: int = RATE) -> np.ndarray:
    """A higher or lower voice of the same duration: stretch by the pitch ratio, then resample back."""
    ratio = 2 ** (semitones / 12)
    stretched = time_stretch(x, 1 / ratio, sr=sr)
    y = soxr.resample(stretched, sr * ratio, sr, quality="HQ")  # played `ratio` times faster: pitch x ratio
    return _fit(y, len(x))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.concatenate([y, np.zeros(n - len(y))])


# --- the room -----------------------------------------------------------------------------------------------------


def room_impulse(rt60_s: float = REVERB_RT60_S, *, sr: int = RATE, seed: int = SEED, drr_db: float = 3.0) -> np.ndarray:
    """A synthetic room: the direct sound, then an exponentially decaying noise tail (60 dB down after rt60_s).

    The tail starts after 3 ms, is softened above ~4 kHz (air and walls absorb highs), and carries `drr_db` less
    energy than the direct sound (a phone held close in a small office).
    """
    rng = np.random.default_rng(seed)
    n = int(1.2 * rt60_s * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-3 * np.log(10) * t / rt60_s)  # amplitude: -60 dB at rt60_s
    tail[: int(0.003 * sr)] = 0.0
    tail = np.convolve(tail, np.ones(2) / 2, mode="same")  # a gentle low-pass
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    tail[0] = 1.0  # the direct path
    return tail


def reverberate(x: np.ndarray, rt60_s: float = REVERB_RT60_S) -> np.ndarray:
    """The caller in a room: convolution with `room_impulse`, at the dry signal's RMS level, same length."""
    h = room_impulse(rt60_s)
    n = 1 << int(np.ceil(np.log2(len(x) + len(h))))
    wet = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(h, n), n)[: len(x)]
    return wet * _rms(x) / max(_rms(wet), 1e-9)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


# --- noise --------------------------------------------------------------------------------------------------------


def active_frames(x: np.ndarray, *, sr: int = RATE, floor_db: float = 35.0) -> np.ndarray:
    """Sample mask of the speech: 20 ms frames within `floor_db` of the loudest frame."""
    size = sr // 50
    n = len(x) // size * size
    energy = np.mean(x[:n].reshape(-1, size) ** 2, axis=1) if n else np.zeros(0)
    loud = energy > energy.max() * 10 ** (-floor_db / 10) if len(energy) else energy.astype(bool)
    mask = np.zeros(len(x), bool)
    mask[:n] = np.repeat(loud, size)
    return mask


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """Speech power over its active frames against the noise's power over the same frames."""
    mask = active_frames(speech)
    return float(10 * np.log10(np.mean(speech[mask] ** 2) / max(np.mean(noise[mask] ** 2), 1e-12)))


def scale_to_snr(speech: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """`noise` scaled so that speech + it has `snr` dB (as `snr_db` measures it) in the telephone band."""
    in_band = band_pass(noise)
    gain = 10 ** ((snr_db(band_pass(speech), in_band) - snr) / 20)
    return noise * gain


def babble_noise(x: np.ndarray, talkers: Sequence[np.ndarray], rng: np.random.Generator, voices: int = 4) -> np.ndarray:
    """Other people talking: `voices` of the other sentences, each in a voice of its own (up to 4 semitones higher
    or lower), from a random point, looped, at equal levels."""
    others = [t for t in talkers if len(t) and _rms(t) > 0] or [x[::-1]]  # reversed speech if no one else
    noise = np.zeros(len(x))
    for _ in range(voices):
        talker = pitch_shift(others[int(rng.integers(len(others)))], float(rng.uniform(-4.0, 4.0)))
        talker = talker / max(_rms(talker), 1e-9)
        looped = np.tile(talker, len(x) // len(talker) + 2)
        start = int(rng.integers(len(talker)))
        noise += looped[start : start + len(x)]
    return noise


def street_noise(n: int, rng: np.random.Generator, *, sr: int = RATE) -> np.ndarray:
    """A street: traffic rumble (1/f^1.5 noise) that swells as vehicles pass, with wind gusts and a far horn."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum[1:] /= (np.maximum(freqs[1:], 40.0) / 40.0) ** 0.75
    spectrum[0] = 0
    rumble = np.fft.irfft(spectrum, n)
    t = np.arange(n) / sr
    envelope = 0.4 + np.zeros(n)
    for _ in range(max(1, int(n / sr / 1.5))):  # a vehicle passing every ~1.5 s, swelling over ~1 s
        centre, width = rng.uniform(0, n / sr), rng.uniform(0.4, 1.2)
        envelope += rng.uniform(0.6, 1.6) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    noise = rumble / _rms(rumble) * envelope
    hiss = band_pass(rng.standard_normal(n), sr, (1500.0, 6000.0))  # tyres and wind, in gusts
    gusts = np.clip(np.convolve(rng.standard_normal(n // 800 + 1), np.ones(3) / 3, "same"), 0, None)
    noise += 0.5 * hiss / max(_rms(hiss), 1e-9) * np.repeat(gusts, 800)[:n]
    if rng.random() < 0.5:  # a horn somewhere
        at, length = int(rng.uniform(0, max(n / sr - 0.4, 0.01)) * sr), int(0.35 * sr)
        tone = np.sin(2 * np.pi * 420 * t[:length]) + 0.6 * np.sin(2 * np.pi * 510 * t[:length])
        noise[at : at + length] += 1.5 * tone[: n - at] * np.hanning(length)[: n - at]
    return noise


def _snr_for(rng: np.random.Generator) -> float:
    return float(rng.uniform(*SNR_DB))


# --- the channels -------------------------------------------------------------------------------------------------


def render(name: str, pcm: bytes, *, talkers: Sequence[bytes] = (), snr: float | None = None) -> tuple[bytes, int]:
    """`pcm` (16 kHz) through channel `name`: (PCM, rate). `talkers` are other sentences, for `babble`."""
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r} (channels: {', '.join(CHANNELS)})")
    x = _f(pcm)
    if name == "clean":
        return pcm, RATE
    if name in ("phone", "alaw"):
        return telephone(x, "alaw" if name == "alaw" else "ulaw")
    if name.startswith("tempo_"):
        return telephone(time_stretch(x, float(name.removeprefix("tempo_"))))
    if name.startswith("speaker_"):
        return telephone(pitch_shift(x, SEMITONES if name == "speaker_high" else -SEMITONES))
    if name == "reverb":
        return telephone(reverberate(x))
    rng = _rng(x, name)
    level = _snr_for(rng) if snr is None else snr
    noise = street_noise(len(x), rng) if name == "street" else babble_noise(x, [_f(t) for t in talkers], rng)
    return telephone(x + scale_to_snr(x, noise, level))


CHANNELS: dict[str, str] = {
    "clean": "16 kHz wideband, untouched (the /pcm wire)",
    "phone": "300-3400 Hz, 8 kHz, G.711 mu-law (the /twilio wire)",
    "alaw": "300-3400 Hz, 8 kHz, G.711 A-law (sent as 8 kHz PCM on /pcm)",
    "tempo_0.9": "10% slower talker (WSOLA), then the phone line",
    "tempo_1.1": "10% faster talker (WSOLA), then the phone line",
    "speaker_low": f"a voice {SEMITONES:g} semitones lower, then the phone line",
    "speaker_high": f"a voice {SEMITONES:g} semitones higher, then the phone line",
    "reverb": f"a room (RT60 {REVERB_RT60_S:g} s), then the phone line",
    "babble": "four other people talking, each in a voice of its own, at 10-20 dB SNR, then the phone line",
    "street": "non-stationary street noise at 10-20 dB SNR, then the phone line",
}


def wire(name: str) -> tuple[str, int]:
    """How the gateway receives channel `name`: (WebSocket path, sample rate)."""
    if name == "clean":
        return "/pcm", RATE
    if name == "alaw":
        return "/pcm", PHONE_RATE  # linear PCM at 8 kHz: the A-law samples arrive as they are
    return "/twilio", PHONE_RATE
