"""Recording a call: both sides on one timeline, encrypted as it is written, paused while secrets are collected.

Only when the operator turns it on (`HOTLINE_RECORDING=1`), and then every call starts with the consent notice,
which cannot be interrupted. Audio is placed by when it was heard: the caller's as it arrived, the agent's at the
moment each frame was due at the caller's ear (agent audio dropped by a barge-in `clear` within the last 100 ms
may still be in the file). Caller on the left channel, agent on the right.

- **Paused while the caller gives digits or a password**: `paused()` (the call flow's `expects_digits`: from the
  dialogue asking for an ID number or the service password until the digits are in) turns both sides into
  silence, whatever the caller says or keys meanwhile.
- **Streamed to disk**: about a second at a time, `MARGIN_S` behind the call (arrival jitter), so a recording
  never waits in memory until hang-up. Encryption and writing happen in one writer thread for all calls, behind
  a bounded queue: if the disk stalls and the queue is full, a second of audio is dropped (and logged), never
  the call's event loop blocked.
- **Encrypted at rest** with AES-256-GCM (`cryptography`), the key from a key file or key service
  (hotline_domain/keys.py). Files are created with mode 0600.
- **Deleted after the retention period** by `purge` (`hotline purge`; `hotline up` runs it hourly).

File format, version 1 (`<call>.wav.enc`; `hotline recordings decrypt FILE -o OUT.wav` writes the WAV):

    header   b"HLREC" 0x01 | salt (16 bytes) | u16 n | n bytes of JSON {"rate", "channels": 2, "sample_width": 2,
             "call", "started"}
    chunks   u32 n | n bytes: AES-256-GCM of (u64 first sample | 16-bit little-endian stereo PCM), 16-byte tag

The chunk key is HKDF-SHA256(key, salt, "hotline recording v1"), a key per file; a chunk's nonce is its number
(u64) and a last-chunk flag (u32, 1 on the last); the associated data is the header. Chunks cannot be reordered,
dropped, altered or moved to another file unnoticed, and a file that ends without its last chunk (the gateway
died mid-call) decrypts as far as it goes, reported as incomplete. Integers are big-endian.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import struct
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hotline_domain.keys import load_key

log = logging.getLogger("hotline.recorder")

MAGIC = b"HLREC\x01"
SUFFIX = ".wav.enc"
CHUNK_S = 1.0  # audio per encrypted chunk
MARGIN_S = 2.0  # how far behind the latest audio a chunk is written: later pieces may still land before it
QUEUE_CHUNKS = 512  # chunks waiting for the writer thread, all calls together (~10 s of 40 calls at 16 kHz)
_INFO = b"hotline recording v1"


class RecordingError(RuntimeError):
    """A recording cannot be read: wrong key, not a recording, or altered."""


def recording_key(config: object) -> bytes:
    """The recording key the gateway settings name (`recording_key_url`, else `recording_key_file`)."""
    return load_key(
        file=getattr(config, "recording_key_file", ""),
        url=getattr(config, "recording_key_url", ""),
        token=getattr(config, "kms_token", ""),
    )


def _file_key(key: bytes, salt: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(key))


def _nonce(number: int, last: bool) -> bytes:
    return struct.pack(">QI", number, 1 if last else 0)


# --- the writer thread: encryption and disk writes, off the event loop ---
@dataclass
class _File:
    path: Path
    header: bytes
    aead: AESGCM
    fd: int | None = None
    chunks: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


class _Writer:
    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[_File, bytes | None, bool]] = queue.Queue(QUEUE_CHUNKS)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, file: _File, plain: bytes | None, last: bool) -> bool:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
                self._thread.start()
        try:
            if last:
                self._jobs.put((file, plain, True), timeout=10)  # the close is never dropped (a worker thread)
            else:
                self._jobs.put_nowait((file, plain, False))
            return True
        except queue.Full:
            return False

    def _run(self) -> None:
        while True:
            file, plain, last = self._jobs.get()
            try:
                self._write(file, plain, last)
            except OSError:
                if not file.failed:
                    log.exception("recording %s: write failed", file.path.name)
                file.failed = True
            finally:
                if last:
                    if file.fd is not None:
                        os.close(file.fd)
                        file.fd = None
                    file.done.set()

    @staticmethod
    def _write(file: _File, plain: bytes | None, last: bool) -> None:
        if file.failed:
            return
        if file.fd is None:
            if plain is None:
                return  # closed before anything was written: no file
            file.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            file.fd = os.open(file.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(file.fd, file.header)
        if plain is None:  # the last chunk, empty: it only marks the end
            plain = b""
        sealed = file.aead.encrypt(_nonce(file.chunks, last), plain, file.header)
        os.write(file.fd, struct.pack(">I", len(sealed)) + sealed)
        file.chunks += 1
        if last:
            os.fsync(file.fd)


_WRITER = _Writer()


class CallRecorder:
    """One call's recording (the bridge's `AudioSink`): `caller()` and `agent()` as audio is heard, `save()` at
    the end (blocking: run it in a thread)."""

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        started: float,
        *,
        key: bytes,
        paused: Callable[[], bool] = lambda: False,
        call_id: str = "",
    ) -> None:
        self.path = path
        self.rate = sample_rate
        self.started = started
        self.paused = paused
        salt = secrets.token_bytes(16)
        meta = {"rate": sample_rate, "channels": 2, "sample_width": 2, "call": call_id, "started": time.time()}
        body = json.dumps(meta).encode()
        self._file = _File(path, MAGIC + salt + struct.pack(">H", len(body)) + body, _file_key(key, salt))
        self._base = 0  # the first sample not yet written
        self._tracks = [np.zeros(0, dtype="<i2"), np.zeros(0, dtype="<i2")]  # from _base on: caller, agent
        self._cursor = [0, 0]  # a piece never overwrites the one before it (arrival times jitter)
        self._latest = 0  # the latest sample position heard of, on either side
        self._chunk = round(CHUNK_S * sample_rate)
        self._margin = round(MARGIN_S * sample_rate)
        self._heard = False
        self._closed = False
        self._lock = threading.Lock()  # audio comes on the event loop, `save` from a worker thread
        self.dropped_chunks = 0

    def caller(self, pcm: bytes, at: float) -> None:
        """Caller audio that arrived at `at` (monotonic seconds)."""
        self._place(0, pcm, at)

    def agent(self, pcm: bytes, at: float) -> None:
        """Agent audio the caller hears from `at` on."""
        self._place(1, pcm, at)

    def _place(self, side: int, pcm: bytes, at: float) -> None:
        paused = self.paused()
        with self._lock:
            if self._closed:
                return
            start = round((at - self.started) * self.rate)
            self._latest = max(self._latest, start + len(pcm) // 2)
            if not paused:
                samples = np.frombuffer(pcm, dtype="<i2")
                start = max(start, self._cursor[side], self._base)
                end = start + len(samples)
                self._grow(end)
                self._tracks[side][start - self._base : end - self._base] = samples
                self._cursor[side] = end
                self._heard = True
            self._flush(self._latest - self._margin)

    def _grow(self, end: int) -> None:
        need = end - self._base
        for side, track in enumerate(self._tracks):
            if len(track) < need:
                self._tracks[side] = np.concatenate([track, np.zeros(need - len(track) + self._chunk, dtype="<i2")])

    def _flush(self, upto: int, *, last: bool = False) -> None:
        while upto - self._base >= self._chunk or (last and upto > self._base):
            size = min(self._chunk, upto - self._base)
            self._grow(self._base + size)
            stereo = np.stack([t[:size] for t in self._tracks], axis=1)
            plain = struct.pack(">Q", self._base) + np.ascontiguousarray(stereo).tobytes()
            self._tracks = [t[size:] for t in self._tracks]
            self._base += size
            if not _WRITER.put(self._file, plain, False):
                self.dropped_chunks += 1
                log.warning("recording %s: the writer is behind, %.0f s of audio dropped", self.path.name, CHUNK_S)

    def save(self) -> Path | None:
        """Write what is left and close the file (blocking: run it in a thread); None when nothing was heard."""
        with self._lock:
            closing, self._closed = not self._closed, True
            if closing and self._heard:
                self._flush(max(self._cursor), last=True)
        if closing:
            _WRITER.put(self._file, None, True)
        self._file.done.wait(30)
        return self.path if self._file.chunks and not self._file.failed else None


# --- reading ---
@dataclass
class Recording:
    rate: int
    meta: dict
    stereo: np.ndarray  # (samples, 2) int16: caller, agent
    complete: bool  # the last chunk was there (the call was closed properly)

    @property
    def caller(self) -> np.ndarray:
        return self.stereo[:, 0]

    @property
    def agent(self) -> np.ndarray:
        return self.stereo[:, 1]


def decrypt(path: Path, key: bytes) -> Recording:
    data = path.read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 18:
        raise RecordingError(f"{path}: not a hotline recording (version 1)")
    salt = data[len(MAGIC) : len(MAGIC) + 16]
    (length,) = struct.unpack(">H", data[len(MAGIC) + 16 : len(MAGIC) + 18])
    end = len(MAGIC) + 18 + length
    header, meta = data[:end], json.loads(data[len(MAGIC) + 18 : end])
    aead = _file_key(key, salt)
    pieces: list[tuple[int, bytes]] = []
    number, at, complete = 0, end, False
    while at < len(data):
        if complete:
            raise RecordingError(f"{path}: data after the last chunk")
        if at + 4 > len(data):
            break  # cut in the middle of a chunk: what came before stands
        (n,) = struct.unpack(">I", data[at : at + 4])
        sealed = data[at + 4 : at + 4 + n]
        if len(sealed) < n:
            break
        try:
            plain = aead.decrypt(_nonce(number, False), sealed, header)
        except InvalidTag:
            try:
                plain, complete = aead.decrypt(_nonce(number, True), sealed, header), True
            except InvalidTag:
                raise RecordingError(f"{path}: chunk {number} does not decrypt (wrong key, or altered)") from None
        if plain:
            (first,) = struct.unpack(">Q", plain[:8])
            pieces.append((first, plain[8:]))
        number, at = number + 1, at + 4 + n
    length = max((first + len(pcm) // 4 for first, pcm in pieces), default=0)
    stereo = np.zeros((length, 2), dtype="<i2")
    for first, pcm in pieces:  # a chunk dropped while the disk stalled leaves silence in its place
        frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2)
        stereo[first : first + len(frames)] = frames
    return Recording(int(meta["rate"]), meta, stereo, complete)


def write_wav(recording: Recording, out: Path) -> None:
    """The recording as a stereo WAV, mode 0600 (it is the caller's voice in clear)."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(recording.rate)
        w.writeframes(np.ascontiguousarray(recording.stereo).tobytes())


# --- retention ---
def purge(folder: Path, retention_days: float, now: float | None = None) -> list[Path]:
    """Delete the recordings in `folder` last written more than `retention_days` ago; returns what was deleted."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    deleted = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.name.endswith((SUFFIX, ".wav")) and path.is_file():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    deleted.append(path)
            except FileNotFoundError:
                continue
    return deleted
