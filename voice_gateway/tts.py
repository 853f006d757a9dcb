"""The agent's voice: espeak-ng through pyttsx3, serialised through one worker thread, with a cache of prompts.

What pyttsx3 2.99's espeak driver does, and what this module does about it:

- `pyttsx3.init("espeak")` hands every caller the same engine, and espeak-ng's synthesis callback is global to the
  process: every `EspeakSynthesizer` in a process drives that one engine, one utterance at a time (`_ENGINE_LOCK`).
- espeak-ng runs in retrieval mode, synthesising in a thread of its own: `runAndWait()` can return before the WAV
  is written (it does for the first utterance of a process: a prompt longer than a few seconds is not on disk
  yet). Each utterance therefore waits for the driver's `finished-utterance` notification, and for espeak to go
  idle before the next one starts: pyttsx3's `runAndWait` cancels what it starts if espeak still looks busy.
- In that mode espeak-ng also queues parameter changes (rate, volume) through that thread, so right after
  `setProperty` espeak looks busy and the next utterance was cancelled (seen under 8 concurrent callers). Voice,
  rate and volume are set directly, only when they change, and espeak is left to go idle first.
- The driver prints "Audio saved to ..." for every file; that goes to the debug log instead.

Text goes through `speakable()` first (numbers as a 12333 agent says them). The 22.05 kHz result has its leading and
trailing silence cut to `EDGE_SILENCE_MS` and is resampled to the caller's rate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import shutil
import sys
import tempfile
import threading
import time
import wave
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_gateway.audio import SUPPORTED_RATES, AudioFormatError, pcm_to_array, resample
from voice_gateway.speech_text import speakable

log = logging.getLogger("hotline.tts")

ESPEAK_RATE = 22050  # what espeak-ng produces
DEFAULT_VOICE = "cmn-latn-pinyin"  # the zh/cmn voices read many characters as English-style pinyin
# espeak's "words per minute" for Mandarin, measured: 175 (espeak's default) ~3.8 characters/s, 200 (pyttsx3's
# default) ~4.4/s, 150 ~3.1/s (~190 characters a minute, a careful phone pace for older callers).
DEFAULT_WORDS_PER_MINUTE = 150
DEFAULT_VOLUME = 0.7  # espeak peaks at full scale at 1.0 and resampling then clips; 0.7 leaves ~3 dB of headroom
EDGE_SILENCE_MS = 50  # silence kept (or added) before and after the speech
SILENCE_LEVEL = 64  # |sample| at or below this (about -54 dBFS) counts as silence when trimming
CACHE_SIZE = 256
QUEUE_SIZE = 256  # pending requests; beyond that sync callers wait (up to the timeout) and async callers get TtsError

_ENGINE_LOCK = threading.Lock()  # the process has one espeak engine, whatever the number of synthesizers
_engine_settings: tuple[str, int, int] | None = None  # (voice, rate, volume) espeak has now; under _ENGINE_LOCK


class TtsError(RuntimeError):
    """Speech synthesis is unavailable (pyttsx3 or espeak-ng missing, unknown voice) or produced no audio."""


@dataclass
class TtsStats:
    syntheses: int = 0  # utterances espeak actually rendered
    cache_hits: int = 0
    engine_seconds: float = 0.0  # time spent rendering
    audio_seconds: float = 0.0  # speech produced by those renderings


@dataclass(frozen=True)
class _Request:
    key: tuple[str, int]
    spoken: str
    future: Future[bytes]


class _PromptCache:
    """An LRU of recent (text, rate) -> PCM, plus pinned prompts (from `prewarm`) that are never evicted."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._recent: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._pinned: dict[tuple[str, int], bytes] = {}

    def get(self, key: tuple[str, int]) -> bytes | None:
        if key in self._pinned:
            return self._pinned[key]
        pcm = self._recent.get(key)
        if pcm is not None:
            self._recent.move_to_end(key)
        return pcm

    def put(self, key: tuple[str, int], pcm: bytes) -> None:
        if key in self._pinned or self.size <= 0:
            return
        self._recent[key] = pcm
        self._recent.move_to_end(key)
        while len(self._recent) > self.size:
            self._recent.popitem(last=False)

    def pin(self, key: tuple[str, int]) -> None:
        pcm = self._recent.pop(key, None)
        if pcm is not None:
            self._pinned[key] = pcm

    def __len__(self) -> int:
        return len(self._recent) + len(self._pinned)


class _EspeakEngine:
    """The process's pyttsx3 espeak engine, rendering one utterance at a time (call with `_ENGINE_LOCK` held)."""

    def __init__(self, voice: str, words_per_minute: int, volume: float, timeout_s: float) -> None:
        try:
            import pyttsx3
            from pyttsx3.drivers import _espeak
        except (ImportError, OSError) as exc:  # OSError: libespeak-ng is not installed
            raise TtsError(f"pyttsx3 with espeak-ng is not available (pip pyttsx3, apt espeak-ng): {exc}") from exc
        try:
            self._engine = pyttsx3.init("espeak")
        except Exception as exc:
            raise TtsError(f"espeak-ng did not start (apt install espeak-ng): {exc}") from exc
        driver_module = sys.modules.get("pyttsx3.drivers.espeak")
        if driver_module is not None:
            driver_module.print = _driver_print  # type: ignore[attr-defined]  # not stdout: the debug log
        voices = {v.id.rsplit("/", 1)[-1]: v.id for v in self._engine.getProperty("voices")}
        if voice.rsplit("/", 1)[-1] not in voices:
            raise TtsError(f"espeak-ng has no voice {voice!r} (Mandarin voices: cmn, cmn-latn-pinyin)")
        self._espeak = _espeak
        self._voice = voices[voice.rsplit("/", 1)[-1]]
        self._words_per_minute = words_per_minute
        self._volume = volume
        self._timeout_s = timeout_s
        self._finished = threading.Event()
        self._completed = False
        self._token = self._engine.connect("finished-utterance", self._on_finished)

    def _on_finished(self, name: Any = None, completed: bool = False) -> None:  # in espeak's thread
        self._completed = completed
        self._finished.set()

    def render(self, text: str, path: Path) -> bytes:
        """`text` as 22.05 kHz PCM, through `path` (removed afterwards)."""
        try:
            for _attempt in range(2):  # espeak cancels an utterance that starts while it still looks busy: retry once
                self._configure()
                self._wait_idle()
                self._finished.clear()
                self._completed = False
                self._engine.save_to_file(text, str(path))
                self._engine.runAndWait()
                if not self._finished.wait(self._timeout_s):
                    raise TtsError(f"espeak-ng did not finish within {self._timeout_s:g} s: {text[:40]!r}")
                if self._completed:
                    break
            else:
                raise TtsError(f"espeak-ng cancelled the utterance twice: {text[:40]!r}")
            return _read_wav(path)
        finally:
            path.unlink(missing_ok=True)

    def _configure(self) -> None:
        """Voice, rate and volume straight to espeak (not through pyttsx3's queue), when they differ from now."""
        global _engine_settings
        settings = (self._voice, self._words_per_minute, round(self._volume * 100))
        if _engine_settings == settings:
            return
        _engine_settings = None
        if self._espeak.SetVoiceByName(self._voice.encode()) != 0:
            raise TtsError(f"espeak-ng refused the voice {self._voice!r}")
        self._espeak.SetParameter(self._espeak.RATE, settings[1], 0)
        self._espeak.SetParameter(self._espeak.VOLUME, settings[2], 0)
        _engine_settings = settings

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + 1.0
        while self._espeak.IsPlaying() and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._engine.disconnect(self._token)


def _driver_print(*args: object, **_: object) -> None:
    log.debug("pyttsx3: %s", " ".join(map(str, args)))


def _read_wav(path: Path) -> bytes:
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, ESPEAK_RATE):
                raise TtsError(f"unexpected espeak output: {wav.getparams()}")
            return wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise TtsError(f"espeak-ng wrote no usable WAV: {exc}") from exc


def trim_silence(pcm: bytes, sample_rate: int, keep_ms: int = EDGE_SILENCE_MS) -> bytes:
    """Cut leading and trailing silence to exactly `keep_ms` each side; b"" if there is nothing above silence."""
    samples = pcm_to_array(pcm)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE_LEVEL)
    if not loud.size:
        return b""
    edge = b"\x00\x00" * (sample_rate * keep_ms // 1000)
    return edge + samples[loud[0] : loud[-1] + 1].tobytes() + edge


class EspeakSynthesizer:
    """`SpeechSynthesizer` on espeak-ng: one worker thread owns the engine; repeated prompts come from a cache.

    `synthesize` blocks (call it from a worker thread); `synthesize_async` awaits the same work without blocking
    the event loop. Identical requests in flight share one rendering. Close it when done (or use `with`).
    """

    def __init__(
        self,
        *,
        voice: str = DEFAULT_VOICE,
        words_per_minute: int = DEFAULT_WORDS_PER_MINUTE,
        volume: float = DEFAULT_VOLUME,
        cache_size: int = CACHE_SIZE,
        timeout_s: float = 30.0,
    ) -> None:
        self.voice, self.words_per_minute, self.volume = voice, words_per_minute, volume
        self.timeout_s = timeout_s
        self.stats = TtsStats()
        self._cache = _PromptCache(cache_size)
        self._inflight: dict[tuple[str, int], Future[bytes]] = {}
        self._lock = threading.Lock()  # cache, in-flight requests, stats, closed
        self._closed = False
        self._queue: queue.Queue[_Request | None] = queue.Queue(QUEUE_SIZE)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="hotline-tts-"))
        ready: Future[None] = Future()
        self._worker = threading.Thread(target=self._run, args=(ready,), name="espeak-tts", daemon=True)
        self._worker.start()
        try:
            ready.result(timeout=timeout_s)
        except BaseException:
            self._closed = True
            self._queue.put_nowait(None)  # a worker still starting stops as soon as it is up
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise

    # --- the SpeechSynthesizer interface and its async twin ---
    def synthesize(self, text: str, sample_rate: int) -> bytes:
        """`text` spoken as 16-bit PCM at `sample_rate`. Blocks until ready; raises TtsError."""
        cached = self._cached((text, sample_rate))
        if cached is not None:
            return cached
        future = self._submit(text, sample_rate, block=True)
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            raise TtsError(f"no speech within {self.timeout_s:g} s for {text[:40]!r}") from None

    async def synthesize_async(self, text: str, sample_rate: int) -> bytes:
        """Like `synthesize`, awaited on the event loop. Cancelling the wait does not cancel the rendering (cached)."""
        cached = self._cached((text, sample_rate))
        if cached is not None:
            return cached
        future = self._submit(text, sample_rate, block=False)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout_s)
        except asyncio.TimeoutError:
            raise TtsError(f"no speech within {self.timeout_s:g} s for {text[:40]!r}") from None

    def prewarm(self, texts: list[str] | tuple[str, ...], rates: list[int] | tuple[int, ...]) -> int:
        """Render fixed prompts at start-up and keep them (never evicted). Returns how many were rendered."""
        before = self.stats.syntheses
        pending = [(key, self._submit(*key, block=True)) for key in ((t, r) for t in texts for r in rates)]
        for key, future in pending:
            future.result(timeout=self.timeout_s)
            with self._lock:
                self._cache.pin(key)
        return self.stats.syntheses - before

    def close(self) -> None:
        """Stop the worker, fail what is still queued, remove the temporary files. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._fail_queued()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._worker.join(timeout=self.timeout_s)
        self._fail_queued()
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> EspeakSynthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cached_prompts(self) -> int:
        return len(self._cache)

    # --- inside ---
    def _cached(self, key: tuple[str, int]) -> bytes | None:
        with self._lock:
            pcm = self._cache.get(key)
            if pcm is not None:
                self.stats.cache_hits += 1
            return pcm

    def _submit(self, text: str, sample_rate: int, *, block: bool) -> Future[bytes]:
        if sample_rate not in SUPPORTED_RATES:
            raise AudioFormatError(f"unsupported sample rate {sample_rate} Hz (supported: {SUPPORTED_RATES})")
        spoken = speakable(text)
        if not spoken.strip(" ，。！？、；：,.!?;:…"):
            raise TtsError(f"nothing to say in {text!r}")
        key = (text, sample_rate)
        with self._lock:
            if self._closed:
                raise TtsError("the synthesizer is closed")
            future: Future[bytes] = Future()
            cached = self._cache.get(key)
            if cached is not None:
                future.set_result(cached)
                return future
            if key in self._inflight:
                return self._inflight[key]
            self._inflight[key] = future
        try:
            self._queue.put(_Request(key, spoken, future), block=block, timeout=self.timeout_s if block else None)
        except queue.Full:
            with self._lock:
                self._inflight.pop(key, None)
            raise TtsError(f"synthesis queue full ({QUEUE_SIZE} requests)") from None
        return future

    def _run(self, ready: Future[None]) -> None:
        """The worker: owns the engine, renders requests one by one."""
        try:
            with _ENGINE_LOCK:
                engine = _EspeakEngine(self.voice, self.words_per_minute, self.volume, self.timeout_s)
        except BaseException as exc:
            ready.set_exception(exc if isinstance(exc, TtsError) else TtsError(f"espeak-ng failed to start: {exc}"))
            return
        ready.set_result(None)
        try:
            serial = 0
            while (request := self._queue.get()) is not None:
                serial += 1
                self._render(engine, request, self._tmpdir / f"{serial}.wav")
        finally:
            with _ENGINE_LOCK:
                engine.close()

    def _render(self, engine: _EspeakEngine, request: _Request, path: Path) -> None:
        if not request.future.set_running_or_notify_cancel():
            with self._lock:
                self._inflight.pop(request.key, None)
            return
        try:
            with _ENGINE_LOCK:
                started = time.perf_counter()
                native = engine.render(request.spoken, path)
                elapsed = time.perf_counter() - started
            speech = trim_silence(native, ESPEAK_RATE)
            if not speech:
                raise TtsError(f"espeak-ng produced no audio for {request.spoken[:40]!r}")
            pcm = resample(speech, ESPEAK_RATE, request.key[1])
        except Exception as exc:
            with self._lock:
                self._inflight.pop(request.key, None)
            log.warning("synthesis failed: %s", exc)
            request.future.set_exception(exc if isinstance(exc, TtsError) else TtsError(f"synthesis failed: {exc}"))
            return
        with self._lock:
            self._cache.put(request.key, pcm)
            self._inflight.pop(request.key, None)
            self.stats.syntheses += 1
            self.stats.engine_seconds += elapsed
            self.stats.audio_seconds += len(speech) / 2 / ESPEAK_RATE
        request.future.set_result(pcm)

    def _fail_queued(self) -> None:
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None and request.future.set_running_or_notify_cancel():
                request.future.set_exception(TtsError("the synthesizer is closed"))
            if request is not None:
                with self._lock:
                    self._inflight.pop(request.key, None)
