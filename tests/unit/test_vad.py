"""The endpointer with a scripted detector (frame counts are exact), and WebRTC's VAD on the committed caller audio."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from voice_gateway.audio import frame_bytes, frames, resample, rms_dbfs
from voice_gateway.testing import channel
from voice_gateway.testing.ws_caller import read_wav
from voice_gateway.vad import SPEECH_END, SPEECH_START, Endpointer, SileroGatedVad, WebRtcVad

AUDIO = Path(__file__).resolve().parents[1] / "audio"
MANIFEST = json.loads((AUDIO / "manifest.json").read_text(encoding="utf-8"))
RATE = 8000
SIZE = frame_bytes(RATE)  # 20 ms


class ScriptedVad:
    """A detector that answers from a script: "1" voiced, "." not; frames carry their index in their first bytes."""

    def __init__(self, script: str) -> None:
        self.answers = iter(script)

    def is_speech(self, frame: bytes, sample_rate: int) -> bool:
        assert sample_rate == RATE
        return next(self.answers) == "1"


def frame(i: int) -> bytes:
    return i.to_bytes(4, "little") + b"\x00" * (SIZE - 4)


def index(pcm: bytes, n: int) -> int:
    """The index of the n-th frame in `pcm`."""
    return int.from_bytes(pcm[n * SIZE : n * SIZE + 4], "little")


def barge_in_flags(endpointer: Endpointer, frames_in: list[bytes]) -> list[bool]:
    """`barge_in_worthy` after each frame."""
    flags = []
    for f in frames_in:
        endpointer.feed(f)
        flags.append(endpointer.barge_in_worthy)
    return flags


def run(script: str, **options: object) -> tuple[Endpointer, list[tuple[int, str]]]:
    """Feed one frame per script character; the events with the frame index that produced them."""
    endpointer = Endpointer(ScriptedVad(script), RATE, **options)  # type: ignore[arg-type]
    events = [(i, event) for i in range(len(script)) if (event := endpointer.feed(frame(i)))]
    return endpointer, events


def test_speech_starts_after_80_ms_of_voiced_frames() -> None:
    _, events = run("." * 10 + "111." + "1111")  # three voiced frames are a click, four are speech
    assert events == [(17, SPEECH_START)]


def test_start_threshold_is_configurable() -> None:
    _, events = run("...111", start_ms=60)
    assert events == [(5, SPEECH_START)]


def test_turn_ends_after_300_ms_of_silence() -> None:
    endpointer, events = run("1" * 10 + "." * 14 + "1" * 5 + "." * 15)  # a 280 ms pause does not end the turn
    assert events == [(3, SPEECH_START), (43, SPEECH_END)]
    assert endpointer.end_reason == "silence"
    assert not endpointer.in_speech


def test_digits_mode_waits_longer_for_the_next_group() -> None:
    script = "1" * 10 + "." * 40 + "1" * 10 + "." * 60  # an 800 ms pause between digit groups
    endpointer = Endpointer(ScriptedVad(script), RATE)
    endpointer.digits_mode = True
    events = [(i, event) for i in range(len(script)) if (event := endpointer.feed(frame(i)))]
    assert events == [(3, SPEECH_START), (119, SPEECH_END)]
    assert len(endpointer.utterance) == 120 * SIZE  # one turn: all of it
    _, normal = run(script)
    assert normal == [(3, SPEECH_START), (24, SPEECH_END), (53, SPEECH_START), (74, SPEECH_END)]


def test_max_length_forces_an_end_and_the_next_turn_starts_again() -> None:
    endpointer, events = run("1" * 760)  # 15 s from the first voiced frame: frames 0..749
    assert events == [(3, SPEECH_START), (749, SPEECH_END), (753, SPEECH_START)]
    assert endpointer.in_speech and endpointer.end_reason is None  # the next turn is in progress
    assert len(endpointer.utterance) == 0
    endpointer, events = run("1" * 502, max_utterance_ms=10_000)
    assert events == [(3, SPEECH_START), (499, SPEECH_END)]
    assert endpointer.end_reason == "max_length" and len(endpointer.utterance) == 500 * SIZE


def test_utterance_has_200_ms_of_pre_roll() -> None:
    endpointer, events = run("." * 30 + "1" * 20 + "." * 15)
    assert events == [(33, SPEECH_START), (64, SPEECH_END)]
    audio = endpointer.utterance
    assert index(audio, 0) == 20  # 10 frames (200 ms) before the first voiced frame (30)
    assert len(audio) == (10 + 20 + 15) * SIZE
    assert [index(audio, n) for n in range(len(audio) // SIZE)] == list(range(20, 65))


def test_preroll_at_speech_start_and_short_history() -> None:
    endpointer = Endpointer(ScriptedVad("..1111" + "1"), RATE)
    events = [endpointer.feed(frame(i)) for i in range(6)]
    assert events[-1] == SPEECH_START
    pcm = endpointer.preroll()
    assert [index(pcm, n) for n in range(len(pcm) // SIZE)] == [0, 1, 2, 3, 4, 5]  # only 40 ms of history
    endpointer.feed(frame(6))
    assert len(endpointer.preroll()) == 7 * SIZE


def test_barge_in_needs_500_ms_of_voiced_speech() -> None:
    script = "1" * 24 + "." * 15 + "1" * 10 + ".." + "1" * 15  # 嗯嗯: 480 ms voiced; then a real turn
    endpointer = Endpointer(ScriptedVad(script), RATE)
    worthy = barge_in_flags(endpointer, [frame(i) for i in range(len(script))])
    assert not any(worthy[:39])  # the backchannel never interrupts, and its end clears the state
    assert worthy.index(True) == 39 + 10 + 2 + 14  # pauses inside a turn do not count as voiced
    assert endpointer.voiced_ms == 25 * 20 and endpointer.speech_ms == 27 * 20


def test_barge_in_threshold_is_configurable() -> None:
    endpointer = Endpointer(ScriptedVad("1" * 14), RATE, barge_in_ms=250)
    assert barge_in_flags(endpointer, [frame(i) for i in range(14)]).index(True) == 12  # 260 ms


def test_reset_forgets_speech_in_progress() -> None:
    endpointer = Endpointer(ScriptedVad("1" * 10 + "111" + "1"), RATE)
    for i in range(10):
        endpointer.feed(frame(i))
    assert endpointer.in_speech
    endpointer.reset()
    assert not endpointer.in_speech and endpointer.preroll() == b"" and endpointer.voiced_ms == 0
    assert [endpointer.feed(frame(i)) for i in range(4)] == [None, None, None, SPEECH_START]


def test_frames_of_the_wrong_size_are_refused() -> None:
    endpointer = Endpointer(ScriptedVad("1"), RATE)
    with pytest.raises(ValueError, match="20 ms frames at 8000 Hz"):
        endpointer.feed(b"\x00" * (SIZE - 2))


# --- WebRTC's VAD on real audio ---
def load(name: str, rate: int) -> bytes:
    with wave.open(str(AUDIO / name), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return resample(wav.readframes(wav.getnframes()), wav.getframerate(), rate)


def speech_ratio(name: str, rate: int) -> float:
    vad = WebRtcVad()  # a fresh detector per recording, as each call has its own
    decisions = [vad.is_speech(f, rate) for f in frames(load(name, rate), rate)]
    return sum(decisions) / len(decisions)


def files(*kinds: str) -> list[str]:
    return [entry["file"] for entry in MANIFEST if entry["kind"] in kinds]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_webrtc_vad_hears_speech_in_every_intent_recording(rate: int) -> None:
    ratios = {name: speech_ratio(name, rate) for name in files("intent", "call_turn", "id_number")}
    assert len(ratios) >= 70
    # 喂，你好。 is the shortest: 0.45 of its frames are voice once the detector's hangover is cut at -60 dBFS
    assert min(ratios.values()) > 0.4, sorted(ratios.items(), key=lambda item: item[1])[:3]
    assert sum(ratios.values()) / len(ratios) > 0.75


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("name", ["silence_2s.wav", "noise_pink_2s.wav", "noise_white_2s.wav"])
def test_webrtc_vad_hears_almost_nothing_in_silence_and_noise(name: str, rate: int) -> None:
    assert speech_ratio(name, rate) <= 0.1


def test_webrtc_vad_refuses_frames_it_cannot_judge() -> None:
    vad = WebRtcVad(3)
    assert vad.is_speech(b"\x00" * frame_bytes(16000, 30), 16000) is False
    with pytest.raises(ValueError, match=r"10, 20 or 30 ms .*\(160, 320, 480 bytes\), got 300 bytes"):
        vad.is_speech(b"\x00" * 300, 8000)
    with pytest.raises(ValueError, match="8000 or 16000 Hz"):
        vad.is_speech(b"\x00" * frame_bytes(48000), 48000)
    with pytest.raises(ValueError, match="aggressiveness"):
        WebRtcVad(4)


def turns(name: str, rate: int, *, digits: bool = False) -> tuple[list[str], Endpointer]:
    """Events of a real recording with 1.5 s of silence around it, through WebRTC's VAD, ending a turn after
    600 ms of silence as the gateway does by default."""
    endpointer = Endpointer(WebRtcVad(), rate, end_silence_ms=600)
    endpointer.digits_mode = digits
    quiet = b"\x00" * frame_bytes(rate, 1500)
    events = [e for f in frames(quiet + load(name, rate) + quiet, rate) if (e := endpointer.feed(f))]
    return events, endpointer


@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_real_turn_is_one_utterance_with_its_pre_roll(rate: int) -> None:
    events, endpointer = turns("intent_greet_1.wav", rate)  # 喂，你好。 (a 200 ms pause inside)
    assert events == [SPEECH_START, SPEECH_END]
    pre_roll = endpointer.utterance[: frame_bytes(rate, 200)]
    assert rms_dbfs(pre_roll) < -50 < rms_dbfs(endpointer.utterance)  # the quiet just before the first word
    assert 1.0 < len(endpointer.utterance) / 2 / rate < 2.0  # 0.2 s pre-roll, ~1 s of speech, 0.3 s of silence


@pytest.mark.parametrize("rate", [8000, 16000])
def test_an_id_number_read_in_groups_is_one_turn_only_in_digits_mode(rate: int) -> None:
    events, _ = turns("id_440106_yao_grouped.wav", rate)  # 四四洞幺洞六，幺九八五洞九两洞，三六六三。
    assert events.count(SPEECH_END) > 1
    events, _ = turns("id_440106_yao_grouped.wav", rate, digits=True)
    assert events == [SPEECH_START, SPEECH_END]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_backchannels_do_not_barge_in_but_a_request_does(rate: int) -> None:
    for name in files("backchannel"):  # 嗯, 对, 好的, 啊, 嗯嗯: 280-480 ms voiced
        assert not any(barge_in_flags(Endpointer(WebRtcVad(), rate), list(frames(load(name, rate), rate)))), name
    request = list(frames(load("intent_request_human_1.wav", rate), rate))  # 帮我转一下人工客服。
    flags = barge_in_flags(Endpointer(WebRtcVad(), rate), request)
    assert any(flags) and flags.index(True) * 20 < 800  # interrupts within 0.8 s of the start of the file


def _street_call(name: str, snr_db: float = 10.0) -> tuple[bytes, int, float]:
    """A committed recording with street noise going on for 3 s after it, through G.711: (PCM, rate, speech s)."""

    x = channel._f(read_wav(AUDIO / name, 16000))
    padded = np.concatenate([x, np.zeros(3 * 16000)])
    noise = channel.street_noise(len(padded), np.random.default_rng(len(x)))
    noise *= channel._rms(x) / channel._rms(noise) / 10 ** (snr_db / 20)
    pcm, rate = channel.telephone(padded + noise)
    return pcm, rate, len(x) / 16000


def _turn_ends(vad: object, pcm: bytes, rate: int) -> float | None:
    endpointer = Endpointer(vad, rate, end_silence_ms=600)  # type: ignore[arg-type]
    for i, frame in enumerate(frames(pcm, rate, 20)):
        if endpointer.feed(frame) == "speech_end":
            return (i + 1) * 0.02
    return None


STREET_FILES = [f"intent_{n}.wav" for n in ("card_loss_report_1", "job_search_1", "wage_arrears_2", "work_injury_1")]


def test_silero_gated_vad_ends_turns_in_street_noise() -> None:
    """Street noise after the caller stopped, at 10 dB SNR: every turn ends within 1.5 s of the recording's end."""
    for name in STREET_FILES:
        pcm, rate, speech_s = _street_call(name)
        end = _turn_ends(SileroGatedVad(), pcm, rate)
        assert end is not None and end - speech_s < 1.5, (name, end, speech_s)


def test_silero_gated_vad_hears_a_lone_dui_on_the_phone() -> None:
    pcm, rate = channel.telephone(channel._f(read_wav(AUDIO / "backchannel_dui.wav", 16000)))
    assert _turn_ends(SileroGatedVad(), pcm + bytes(rate * 2), rate) is not None
