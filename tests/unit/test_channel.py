"""The telephone channels the test audio is rendered through: band limits, SNR, tempo, pitch, room, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from voice_gateway.audio import array_to_pcm, pcm_to_array, ulaw_decode, ulaw_encode
from voice_gateway.config import PROJECT_ROOT
from voice_gateway.testing import channel
from voice_gateway.testing.ws_caller import read_wav

SR = 16000
AUDIO = PROJECT_ROOT / "tests" / "audio"


def tone(hz: float, seconds: float = 2.0, level: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return level * 32767 * np.sin(2 * np.pi * hz * t)


def band_energy(x: np.ndarray, sr: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def peak_hz(x: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def speech(name: str = "intent_card_loss_report_1.wav") -> bytes:
    return read_wav(AUDIO / name, SR)


@pytest.mark.parametrize("name", ["phone", "alaw"])
def test_the_telephone_line_keeps_300_to_3400_hz_and_drops_the_rest(name: str) -> None:
    rng = np.random.default_rng(1)
    white = rng.standard_normal(3 * SR) * 3000
    out, rate = channel.render(name, array_to_pcm(white))
    assert rate == 8000
    y = pcm_to_array(out).astype(np.float64)
    inside = band_energy(y, rate, 300, 3400)
    assert band_energy(y, rate, 0, 240) < 0.002 * inside
    assert band_energy(y, rate, 3460, 4000) < 0.002 * inside
    for hz, kept in [(100, False), (200, False), (1000, True), (3000, True), (3600, False), (5000, False)]:
        level = channel._rms(pcm_to_array(channel.render(name, array_to_pcm(tone(hz)))[0]).astype(np.float64))
        ratio_db = 20 * np.log10(max(level, 1e-9) / channel._rms(tone(hz)))
        assert (ratio_db > -1.0) if kept else (ratio_db < -30), (hz, ratio_db)


def test_the_mu_law_line_survives_the_twilio_callers_own_encoding() -> None:
    out, _ = channel.render("phone", speech())
    assert ulaw_decode(ulaw_encode(out)) == out  # the caller re-encodes what it sends: nothing changes


@pytest.mark.parametrize("asked", [10.0, 15.0, 20.0])
@pytest.mark.parametrize("name", ["babble", "street"])
def test_noise_is_mixed_at_the_asked_snr_on_the_line(name: str, asked: float) -> None:
    clean = speech()
    talkers = [speech("intent_wage_arrears_1.wav"), speech("intent_job_search_2.wav")]
    noisy, _ = channel.render(name, clean, talkers=talkers, snr=asked)
    line, _ = channel.render("phone", clean)
    s = pcm_to_array(line).astype(np.float64)
    noise = pcm_to_array(noisy).astype(np.float64) - s
    mask = channel.active_frames(s, sr=8000)
    measured = 10 * np.log10(np.mean(s[mask] ** 2) / np.mean(noise[mask] ** 2))
    assert abs(measured - asked) < 1.0, measured


def test_noisy_channels_draw_their_snr_between_10_and_20_db_per_file() -> None:
    levels = set()
    for name in ("intent_card_loss_report_1.wav", "intent_wage_arrears_1.wav", "intent_job_search_2.wav"):
        clean = speech(name)
        noisy, _ = channel.render("street", clean)
        s = pcm_to_array(channel.render("phone", clean)[0]).astype(np.float64)
        noise = pcm_to_array(noisy).astype(np.float64) - s
        mask = channel.active_frames(s, sr=8000)
        levels.add(round(float(10 * np.log10(np.mean(s[mask] ** 2) / np.mean(noise[mask] ** 2))), 1))
    assert len(levels) == 3 and all(9.0 < v < 21.0 for v in levels), levels


def test_street_noise_is_not_stationary() -> None:
    noise = channel.street_noise(6 * SR, np.random.default_rng(3))
    frames = noise[: len(noise) // 4000 * 4000].reshape(-1, 4000)  # 250 ms
    levels_db = 10 * np.log10(np.mean(frames**2, axis=1))
    assert levels_db.max() - levels_db.min() > 6


@pytest.mark.parametrize("rate", [0.9, 1.1])
def test_tempo_changes_the_duration_by_its_factor_and_keeps_the_pitch(rate: float) -> None:
    x = tone(440, 3.0)
    y = channel.time_stretch(x, rate)
    assert abs(len(y) / len(x) - 1 / rate) < 0.03 / rate
    assert abs(peak_hz(y) - 440) < 5
    out, sr = channel.render(f"tempo_{rate}", speech())
    assert abs(len(out) / 2 / sr / (len(speech()) / 2 / SR) - 1 / rate) < 0.03
    # a stretch that only resampled would move the tone by the factor; a stretch that clicked would smear it
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    assert spectrum[np.abs(freqs - 440) < 20].sum() > 0.95 * spectrum.sum()


@pytest.mark.parametrize("semitones", [2.5, -2.5])
def test_a_speaker_shift_moves_the_pitch_and_keeps_the_duration(semitones: float) -> None:
    x = tone(440, 2.0)
    y = channel.pitch_shift(x, semitones)
    assert len(y) == len(x)
    assert abs(peak_hz(y) - 440 * 2 ** (semitones / 12)) < 5


def test_the_room_decays_60_db_in_about_0_4_s() -> None:
    h = channel.room_impulse()
    energy = np.cumsum(h[::-1] ** 2)[::-1]  # Schroeder backward integration
    decay_db = 10 * np.log10(energy / energy[0])
    t5, t25 = np.argmax(decay_db < -5) / SR, np.argmax(decay_db < -25) / SR
    assert abs(3 * (t25 - t5) - channel.REVERB_RT60_S) < 0.05
    wet = channel.reverberate(tone(440, 1.0) * (np.arange(SR) < SR // 2))  # a burst: the room rings on after it
    assert channel._rms(wet[int(0.55 * SR) : int(0.65 * SR)]) > 0.01 * channel._rms(wet[: SR // 2])


@pytest.mark.parametrize("name", list(channel.CHANNELS))
def test_every_channel_is_deterministic_and_differs_from_file_to_file(name: str) -> None:
    a, b = speech(), speech("intent_wage_arrears_1.wav")
    talkers = [b, speech("intent_job_search_2.wav")]
    first = channel.render(name, a, talkers=talkers)
    assert channel.render(name, a, talkers=talkers) == first
    assert first[1] == channel.wire(name)[1]
    out = pcm_to_array(first[0]).astype(np.float64)
    assert len(out) / first[1] == pytest.approx(len(a) / 2 / SR, rel=0.15)
    assert 20 * np.log10(channel._rms(out) / 32768) > -35  # still speech-loud
    assert channel.render(name, b, talkers=[a])[0] != first[0]


def test_unknown_channels_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        channel.render("telegraph", speech())
