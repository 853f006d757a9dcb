"""Small interfaces the per-call core uses for speech engines; adapters live in asr.py, tts.py, vad.py.

Engines are blocking (Vosk, CTranslate2, espeak-ng): the bot's listener and playout run them in worker threads,
never on the event loop. Audio is 16-bit signed little-endian mono PCM bytes at the stated sample rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Transcript:
    """What the caller said in one utterance, normalised for understanding (simplified characters, digits)."""

    text: str
    confidence: float  # 0..1; engines without a score report 1.0 for non-empty text
    raw: str = ""  # the engine's own text before normalisation
    engine: str = ""
    unclear: bool = False  # the caller spoke, but nothing usable was heard (the agent asks them again)


class UtteranceRecognizer(Protocol):
    """Recognition of one caller utterance, fed as it arrives."""

    def accept(self, pcm: bytes) -> str | None:
        """Feed audio; return the partial text so far when the engine has one (streaming engines), else None."""
        ...

    def finish(self) -> Transcript:
        """End of the utterance: the final, normalised transcript."""
        ...

    def close(self) -> None:
        """Free the engine's per-utterance resources (idempotent)."""
        ...


@dataclass(frozen=True)
class RecognizerInfo:
    name: str  # "vosk" or "whisper"
    streaming: bool  # partial results while the caller speaks
    model: str  # which model is loaded (path or name)
    preview: bool = False  # its utterance recognizers have `preview()`: transcribe on a pause, before the end


class PreviewingRecognizer(UtteranceRecognizer, Protocol):
    """An utterance recognizer that can start on a pause (Whisper): `finish()` reuses the preview's transcript
    when only silence followed it."""

    def preview(self) -> None: ...


class SpeechRecognizer(Protocol):
    """One per process: holds the loaded model and makes a recognizer per utterance."""

    info: RecognizerInfo

    def utterance(
        self, sample_rate: int, hints: list[str] | None = None, *, digits: bool = False
    ) -> UtteranceRecognizer:
        """A recognizer for one utterance at `sample_rate` (8000 or 16000); `hints` are likely phrases; `digits`:
        the dialogue asked for a number, so the caller is likely reading out digits."""
        ...

    def warm_up(
        self, sample_rates: tuple[int, ...] = (8000, 16000), *, speech: bytes | None = None, count: int = 1
    ) -> None:
        """Run the model on audio (`speech`: 16 kHz PCM of someone talking, if at hand) so that the first callers
        do not pay for lazy initialisation; engines with per-call state prepare `count` of it per sample rate."""
        ...


class SpeechSynthesizer(Protocol):
    """Text to speech, serialised through one worker."""

    def synthesize(self, text: str, sample_rate: int) -> bytes:
        """Speak `text` (numbers and symbols are made speakable first) as PCM at `sample_rate`."""
        ...

    async def synthesize_async(self, text: str, sample_rate: int) -> bytes:
        """The same, awaited without blocking the event loop."""
        ...


class VoiceActivityDetector(Protocol):
    """Speech or not, frame by frame (10, 20 or 30 ms at 8 or 16 kHz)."""

    def is_speech(self, frame: bytes, sample_rate: int) -> bool: ...
