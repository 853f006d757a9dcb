"""Prompts rendered ahead: every fixed text the agent can say, synthesised once per voice, text and rate, on disk.

The agent's words are mostly fixed: the domain's `utter_` responses, the forms' questions, the actions' fixed
sentences, the call flow's notices, reprompts and queue words. `fixed_texts()` collects them from the project's
own files (without importing rasa_sdk: the actions are read as source), and `StoredVoice` renders each of their
sentences once (playout asks for an answer sentence by sentence: voice_gateway/speech_text.py `sentences`) into
`<cache>/prompts/<first 2 of key>/<key>.wav`, the key a SHA-256 of voice + text + rate. Files are written
atomically, so processes and restarts share them; a new voice or new settings is a new key.

Only fixed sentences are stored: a sentence with a caller's amount, date or masked ID tail is synthesised in the
call and never written to disk. A sentence the neural voice could not speak (espeak-ng stood in) is not stored
under the neural voice either.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import tempfile
import threading
import wave
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.speech_text import sentences

log = logging.getLogger("hotline.prompts")

QUEUE_POSITIONS = 10  # 您前面还有N位来电 is rendered ahead for the first ten places
RENDER_AHEAD_TIMEOUT_S = 30.0  # no caller is waiting: the neural voice gets all the time it needs
MEMORY_BYTES = 32 << 20  # recently played prompts kept in memory as well (most recently used first)


@dataclass(frozen=True)
class Rendering:
    pcm: bytes  # 16-bit mono PCM at the rate asked for
    voice: str  # the voice that actually spoke (a fallback voice names itself)


class Voice(Protocol):
    """A synthesiser that says which voice spoke, so that a stand-in's audio is never stored as the voice's."""

    voice_id: str

    def render(self, text: str, sample_rate: int, *, timeout_s: float | None = None) -> Rendering: ...

    def synthesize(self, text: str, sample_rate: int) -> bytes: ...

    async def synthesize_async(self, text: str, sample_rate: int) -> bytes: ...

    def close(self) -> None: ...


# --- the fixed texts ---
def fixed_texts(root: Path = PROJECT_ROOT) -> list[str]:
    """Every fixed text the agent can say, in a stable order, without duplicates."""
    from voice_gateway.flow import Prompts

    texts: list[str] = []
    domain = yaml.safe_load((root / "dialogue" / "domain.yml").read_text(encoding="utf-8"))
    for name, variants in (domain.get("responses") or {}).items():
        if name.startswith("utter_"):
            texts += [v["text"] for v in variants if isinstance(v, dict) and isinstance(v.get("text"), str)]
    prompts = Prompts()
    texts += [
        getattr(prompts, f.name) for f in dataclasses.fields(prompts) if isinstance(getattr(prompts, f.name), str)
    ]
    texts += prompts.hold_texts(QUEUE_POSITIONS)  # 您前面还有N位。大约需要N分钟。 (the fixed hold prompts are fields)
    actions = root / "dialogue" / "actions"
    texts += _questions(actions / "asks.py")
    texts += _module_strings(actions / "prompts.py")
    for source in sorted(actions.glob("*.py")):
        texts += _literal_utterances(source)
    seen: dict[str, None] = {}
    for text in texts:
        if text.strip() and "{" not in text:  # a template has caller-specific parts
            seen.setdefault(text.strip())
    return list(seen)


def fixed_sentences(root: Path = PROJECT_ROOT) -> list[str]:
    """The sentences of the fixed texts: what playout asks the synthesiser for."""
    seen: dict[str, None] = {}
    for text in fixed_texts(root):
        for piece in sentences(text):
            seen.setdefault(piece)
    return list(seen)


def _questions(path: Path) -> list[str]:
    """The questions of asks.py's QUESTIONS table (slot -> (question, keypad)), read from the source."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "QUESTIONS" and isinstance(node.value, ast.Dict):
            return [
                v.elts[0].value
                for v in node.value.values
                if isinstance(v, ast.Tuple) and isinstance(v.elts[0], ast.Constant) and isinstance(v.elts[0].value, str)
            ]
    return []


def _module_strings(path: Path) -> list[str]:
    """Module-level string constants (actions/prompts.py)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    ]


def _literal_utterances(path: Path) -> list[str]:
    """`dispatcher.utter_message(text="...")` with a literal text."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "utter_message":
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg == "text" and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.append(value.value)
    return found


# --- the store ---
class PromptStore:
    """Rendered prompts on disk: `<folder>/<key[:2]>/<key>.wav`, key = SHA-256 of voice, text and rate."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(voice: str, text: str, sample_rate: int) -> str:
        return hashlib.sha256(f"{voice}\0{text}\0{sample_rate}".encode()).hexdigest()

    def path(self, voice: str, text: str, sample_rate: int) -> Path:
        key = self.key(voice, text, sample_rate)
        return self.folder / key[:2] / f"{key}.wav"

    def get(self, voice: str, text: str, sample_rate: int) -> bytes | None:
        path = self.path(voice, text, sample_rate)
        try:
            with wave.open(str(path), "rb") as wav:
                if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, sample_rate):
                    return None
                return wav.readframes(wav.getnframes())
        except FileNotFoundError:
            return None
        except (OSError, EOFError, wave.Error):
            log.warning("unreadable stored prompt %s: rendering it again", path)
            return None

    def put(self, voice: str, text: str, sample_rate: int, pcm: bytes) -> Path:
        path = self.path(voice, text, sample_rate)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(sample_rate)
                wav.writeframes(pcm)
            os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


@dataclass
class StoreStats:
    hits: int = 0  # sentences played from the store
    misses: int = 0  # sentences synthesised in the call
    stored: int = 0  # renderings written


class StoredVoice:
    """`SpeechSynthesizer` that plays fixed sentences from the store and synthesises the rest with `voice`.

    `fixed` are the sentences that may be stored (default: `fixed_sentences()`); `render_ahead` fills the store
    for them. Everything else goes to the voice every time and stays off the disk.
    """

    def __init__(self, voice: Voice, store: PromptStore, fixed: Iterable[str] | None = None) -> None:
        self.voice = voice
        self.store = store
        self.fixed = frozenset(fixed_sentences() if fixed is None else fixed)
        self.stats = StoreStats()
        self._memory: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="prompt-store")

    @property
    def voice_id(self) -> str:
        return self.voice.voice_id

    def stored(self, text: str, sample_rate: int) -> bytes | None:
        """The stored rendering of a fixed sentence, or None."""
        if text not in self.fixed:
            return None
        key = (text, sample_rate)
        with self._lock:
            pcm = self._memory.get(key)
            if pcm is not None:
                self._memory.move_to_end(key)
                return pcm
        pcm = self.store.get(self.voice.voice_id, text, sample_rate)
        if pcm is not None:
            self._remember(key, pcm)
        return pcm

    def synthesize(self, text: str, sample_rate: int) -> bytes:
        return self.render(text, sample_rate).pcm

    def render(self, text: str, sample_rate: int, *, timeout_s: float | None = None) -> Rendering:
        """From the store when it is there, else from the voice (stored if the sentence is a fixed one)."""
        pcm = self.stored(text, sample_rate)
        if pcm is not None:
            self.stats.hits += 1
            return Rendering(pcm, self.voice.voice_id)
        self.stats.misses += 1
        return self._render(text, sample_rate, timeout_s)

    async def synthesize_async(self, text: str, sample_rate: int) -> bytes:
        with self._lock:
            pcm = self._memory.get((text, sample_rate)) if text in self.fixed else None
        if pcm is not None:
            self.stats.hits += 1
            return pcm
        if text not in self.fixed:
            self.stats.misses += 1
            return await self.voice.synthesize_async(text, sample_rate)
        loop = asyncio.get_running_loop()  # a disk read, then maybe a rendering: off the event loop
        return await asyncio.shield(loop.run_in_executor(self._executor, self.synthesize, text, sample_rate))

    def render_ahead(self, rates: Iterable[int] = (8000, 16000), texts: Iterable[str] | None = None) -> int:
        """Render the fixed sentences missing from the store (at start; blocking). Returns how many were made."""
        made = 0
        for text in self.fixed if texts is None else [s for t in texts for s in sentences(t)]:
            for rate in rates:
                if text in self.fixed and self.store.get(self.voice.voice_id, text, rate) is None:
                    try:
                        self._render(text, rate, RENDER_AHEAD_TIMEOUT_S)
                    except Exception as exc:
                        log.warning("prompt not rendered ahead (%s): %s", exc, text[:40])
                        continue
                    made += 1
        return made

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.voice.close()

    def __enter__(self) -> StoredVoice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _render(self, text: str, sample_rate: int, timeout_s: float | None) -> Rendering:
        rendering = self.voice.render(text, sample_rate, timeout_s=timeout_s)
        if text in self.fixed and rendering.voice == self.voice.voice_id:
            try:
                self.store.put(rendering.voice, text, sample_rate, rendering.pcm)
                self.stats.stored += 1
            except OSError as exc:  # a full or read-only disk costs a rendering per call, nothing else
                log.warning("prompt not stored: %s", exc)
            self._remember((text, sample_rate), rendering.pcm)
        return rendering

    def _remember(self, key: tuple[str, int], pcm: bytes) -> None:
        with self._lock:
            if key in self._memory:
                return
            self._memory[key] = pcm
            self._memory_bytes += len(pcm)
            while self._memory_bytes > MEMORY_BYTES and self._memory:
                _, old = self._memory.popitem(last=False)
                self._memory_bytes -= len(old)
