"""Call recordings: both sides on one timeline, streamed to disk encrypted, paused for secrets, purged in time."""

import os
import stat
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from hotline_domain.keys import KeyUnavailable, ensure_key_file, read_key_file
from voice_gateway import cli
from voice_gateway.recorder import MAGIC, CallRecorder, RecordingError, decrypt, purge

KEY = bytes(range(32))


def tone(level: int, ms: int, rate: int = 8000) -> bytes:
    return np.full(rate * ms // 1000, level, dtype="<i2").tobytes()


def test_caller_left_agent_right_placed_by_time(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "rec" / "call.wav.enc", 8000, started=100.0, key=KEY)
    recorder.agent(tone(1000, 500), at=100.0)  # the greeting, heard from the start
    recorder.caller(tone(2000, 20), at=101.0)  # the caller speaks a second in
    recorder.caller(tone(2000, 20), at=101.0)  # a second frame stamped at the same moment goes after the first
    path = recorder.save()
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(MAGIC) and tone(2000, 20) not in path.read_bytes()  # encrypted
    recording = decrypt(path, KEY)
    assert recording.rate == 8000 and recording.complete
    caller, agent = recording.caller, recording.agent
    assert (agent[:4000] == 1000).all() and (agent[4000:] == 0).all()
    assert (caller[:8000] == 0).all() and (caller[8000:8320] == 2000).all() and (caller[8320:] == 0).all()


def test_nothing_heard_writes_nothing(tmp_path: Path) -> None:
    assert CallRecorder(tmp_path / "none.wav.enc", 8000, started=0.0, key=KEY).save() is None
    assert not (tmp_path / "none.wav.enc").exists()


def test_secrets_are_not_recorded_while_digits_are_collected(tmp_path: Path) -> None:
    collecting = False
    recorder = CallRecorder(tmp_path / "c.wav.enc", 8000, started=0.0, key=KEY, paused=lambda: collecting)
    for n in range(150):  # three seconds, 20 ms frames: the middle second is the caller reading an ID number
        collecting = 50 <= n < 100
        recorder.caller(tone(3000, 20), at=n * 0.02)
        recorder.agent(tone(500, 20), at=n * 0.02)
    recording = decrypt(recorder.save() or Path(), KEY)
    assert (recording.stereo[:8000] != 0).all() and (recording.stereo[16000:24000] != 0).all()
    assert (recording.stereo[8000:16000] == 0).all()  # both sides silent while the secret was given


def test_audio_goes_to_disk_as_the_call_goes(tmp_path: Path) -> None:
    path = tmp_path / "long.wav.enc"
    recorder = CallRecorder(path, 8000, started=0.0, key=KEY)
    for n in range(500):  # ten seconds
        recorder.caller(tone(100 + n, 20), at=n * 0.02)
    deadline = time.monotonic() + 5
    while (not path.exists() or path.stat().st_size < 7 * 8000 * 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size >= 7 * 8000 * 4  # at least 7 s of stereo written before hang-up
    assert sum(len(t) for t in recorder._tracks) < 2 * 4 * 8000  # and no more than a few seconds held
    recording = decrypt(path, KEY)  # a call still going (or a gateway that died) reads as far as it got
    assert not recording.complete and len(recording.caller) >= 7 * 8000
    recorder.save()
    recording = decrypt(path, KEY)
    assert recording.complete and len(recording.caller) == 500 * 160
    assert recording.caller[160 * 499] == 599


def test_a_wrong_key_or_an_altered_file_is_refused(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "x.wav.enc", 8000, started=0.0, key=KEY)
    for n in range(300):
        recorder.caller(tone(700, 20), at=n * 0.02)
    path = recorder.save()
    assert path is not None
    with pytest.raises(RecordingError, match="wrong key"):
        decrypt(path, bytes(32))
    data = bytearray(path.read_bytes())
    data[-40] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError):
        decrypt(path, KEY)


def test_purge_deletes_recordings_past_retention(tmp_path: Path) -> None:
    old, new, other = tmp_path / "old.wav.enc", tmp_path / "new.wav.enc", tmp_path / "notes.txt"
    for path in (old, new, other):
        path.write_bytes(b"x")
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    os.utime(other, (month_ago, month_ago))
    assert purge(tmp_path, 30) == [old]
    assert not old.exists() and new.exists() and other.exists()
    assert purge(tmp_path / "missing", 30) == []


def test_key_files_are_private_and_kept(tmp_path: Path) -> None:
    path = ensure_key_file(tmp_path / "keys" / "recording.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = read_key_file(path)
    assert len(key) == 32 and read_key_file(ensure_key_file(path)) == key  # never overwritten
    path.chmod(0o644)
    with pytest.raises(KeyUnavailable, match="readable by others"):
        read_key_file(path)


def test_hotline_recordings_decrypt_writes_the_wav(tmp_path: Path) -> None:
    key_file = ensure_key_file(tmp_path / "k.key")
    recorder = CallRecorder(tmp_path / "call.wav.enc", 16000, started=0.0, key=read_key_file(key_file))
    recorder.caller(tone(1234, 100, 16000), at=0.0)
    path = recorder.save()
    out = tmp_path / "out.wav"
    assert cli.main(["recordings", "decrypt", str(path), "-o", str(out), "--key-file", str(key_file)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 16000)
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert (audio[:1600, 0] == 1234).all()
    assert cli.main(["recordings", "decrypt", str(path), "-o", str(out), "--key-file", str(path)]) == 1  # no key
