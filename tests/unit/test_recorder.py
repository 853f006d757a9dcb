"""Both sides of a call on one timeline in a stereo WAV."""

import stat
import wave
from pathlib import Path

import numpy as np

from voice_gateway.recorder import CallRecorder


def tone(level: int, ms: int, rate: int = 8000) -> bytes:
    return np.full(rate * ms // 1000, level, dtype="<i2").tobytes()


def test_caller_left_agent_right_placed_by_time(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "rec" / "call.wav", 8000, started=100.0)
    recorder.agent(tone(1000, 500), at=100.0)  # the greeting, heard from the start
    recorder.caller(tone(2000, 20), at=101.0)  # the caller speaks a second in
    recorder.caller(tone(2000, 20), at=101.0)  # a second frame stamped at the same moment goes after the first
    path = recorder.save()
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    caller, agent = audio[:, 0], audio[:, 1]
    assert (agent[:4000] == 1000).all() and (agent[4000:] == 0).all()
    assert (caller[:8000] == 0).all() and (caller[8000:8320] == 2000).all() and (caller[8320:] == 0).all()


def test_nothing_heard_writes_nothing(tmp_path: Path) -> None:
    assert CallRecorder(tmp_path / "none.wav", 8000, started=0.0).save() is None
    assert not (tmp_path / "none.wav").exists()
