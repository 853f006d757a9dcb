"""The agent's voice: real espeak-ng synthesis through one worker, its cache, its async face and its errors."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from voice_gateway.audio import AudioFormatError, frame_bytes, rms_dbfs
from voice_gateway.speech_text import speakable
from voice_gateway.tts import EDGE_SILENCE_MS, SILENCE_LEVEL, EspeakSynthesizer, TtsError

GREETING = "您好，这里是12333人社服务热线，请问您要办理什么业务？"
PENSION = "您的养老金每月3500元，将于2026年12月4日发放。如有疑问，请拨打12333。"


@pytest.fixture(scope="module")
def synthesizer() -> Iterator[EspeakSynthesizer]:
    with EspeakSynthesizer() as tts:
        yield tts


def seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate


def hanzi(text: str) -> int:
    return sum("\u4e00" <= c <= "\u9fff" for c in speakable(text))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_prompt_with_numbers_is_speech_of_plausible_length(synthesizer: EspeakSynthesizer, rate: int) -> None:
    pcm = synthesizer.synthesize(PENSION, rate)
    assert len(pcm) % 2 == 0
    assert rms_dbfs(pcm) > -30  # speech, at a telephone level (about -22 dBFS)
    samples = np.frombuffer(pcm, "<i2").astype(np.int32)
    assert np.abs(samples).max() < 32767  # headroom: nothing clipped by resampling
    # 12333, 3500 and 2026 are spoken in words: about 3 characters a second at the chosen pace
    assert hanzi(PENSION) / 4.5 < seconds(pcm, rate) < hanzi(PENSION) / 2
    loud = np.flatnonzero(np.abs(samples) > SILENCE_LEVEL)
    edge = rate * EDGE_SILENCE_MS // 1000
    assert edge * 0.8 <= loud[0] <= edge * 1.5  # leading silence cut to ~50 ms
    assert edge * 0.8 <= len(samples) - 1 - loud[-1] <= edge * 1.5  # trailing too


def test_rates_agree_and_other_rates_are_refused(synthesizer: EspeakSynthesizer) -> None:
    durations = [seconds(synthesizer.synthesize(GREETING, rate), rate) for rate in (8000, 16000, 24000, 48000)]
    assert max(durations) - min(durations) < 0.1  # each rate is its own rendering; espeak varies by a few ms
    with pytest.raises(AudioFormatError):
        synthesizer.synthesize(GREETING, 11025)


def test_a_long_prompt_is_rendered_whole(synthesizer: EspeakSynthesizer) -> None:
    """espeak finishes after runAndWait returns: a long text must still come back complete."""
    text = PENSION + "社保卡挂失以后，请带上身份证到就近的网点补办新卡，一般需要七个工作日。" * 3
    pcm = synthesizer.synthesize(text, 8000)
    assert hanzi(text) / 4.5 < seconds(pcm, 8000) < hanzi(text) / 2
    assert seconds(pcm, 8000) > 30


def test_synthesis_is_much_faster_than_real_time(synthesizer: EspeakSynthesizer) -> None:
    synthesizer.synthesize("工作日早上八点到晚上八点都可以办理。", 16000)
    stats = synthesizer.stats
    assert stats.syntheses >= 1
    assert stats.engine_seconds / stats.audio_seconds < 0.05  # measured ~2 ms per second of speech


def test_eight_threads_at_once_all_get_speech(synthesizer: EspeakSynthesizer) -> None:
    texts = [f"您的受理编号是{202600 + 37 * i}，请您记好。" for i in range(8)]
    results: dict[int, bytes | BaseException] = {}
    start = threading.Barrier(len(texts))

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = synthesizer.synthesize(texts[i], 8000 if i % 2 else 16000)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "synthesis hung"
    for i, pcm in results.items():
        assert isinstance(pcm, bytes), pcm
        assert rms_dbfs(pcm) > -30 and seconds(pcm, 8000 if i % 2 else 16000) > 2
    assert len(results) == len(texts)


def test_two_synthesizers_share_the_engine_without_mixing_their_pace() -> None:
    with EspeakSynthesizer(words_per_minute=200) as fast, EspeakSynthesizer(words_per_minute=130) as slow:
        text = "请您在工作日带上身份证原件到社保经办机构办理。"
        barrier, out = threading.Barrier(2), {}

        def call(name: str, tts: EspeakSynthesizer) -> None:
            barrier.wait()
            out[name] = [tts.synthesize(f"{text}第{n}次。", 8000) for n in range(5)]

        threads = [threading.Thread(target=call, args=item, daemon=True) for item in (("fast", fast), ("slow", slow))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads), "synthesis hung"
        fast_s = [seconds(pcm, 8000) for pcm in out["fast"]]
        slow_s = [seconds(pcm, 8000) for pcm in out["slow"]]
        assert max(fast_s) * 1.3 < min(slow_s)  # each kept its own rate: 200 vs 130 words a minute


def test_repeated_prompts_come_from_the_cache(synthesizer: EspeakSynthesizer) -> None:
    text = "请问还有什么可以帮您？"
    first = synthesizer.synthesize(text, 8000)
    rendered, hits = synthesizer.stats.syntheses, synthesizer.stats.cache_hits
    started = time.perf_counter()
    again = [synthesizer.synthesize(text, 8000) for _ in range(1000)]
    per_hit = (time.perf_counter() - started) / 1000
    assert all(pcm == first for pcm in again)
    assert synthesizer.stats.syntheses == rendered
    assert synthesizer.stats.cache_hits == hits + 1000
    assert per_hit < 0.001  # measured ~0.5 µs
    other_rate = synthesizer.synthesize(text, 16000)  # the key is (text, rate)
    assert synthesizer.stats.syntheses == rendered + 1 and len(other_rate) > len(first)


def test_prewarmed_prompts_cost_nothing_later_and_are_never_evicted() -> None:
    prompts = [GREETING, "请说出您的身份证号码。"]
    with EspeakSynthesizer(cache_size=2) as tts:
        assert tts.prewarm(prompts, [8000, 16000]) == 4
        assert tts.prewarm(prompts, [8000, 16000]) == 0
        for n in range(5):  # dynamic answers churn the small LRU
            tts.synthesize(f"您的卡号尾号是{1000 + n}。", 8000)
        rendered = tts.stats.syntheses
        tts.synthesize(GREETING, 16000)
        tts.synthesize(prompts[1], 8000)
        assert tts.stats.syntheses == rendered  # pinned
        tts.synthesize("您的卡号尾号是1000。", 8000)
        assert tts.stats.syntheses == rendered + 1  # evicted from the LRU of 2, rendered again
        assert tts.cached_prompts == 4 + 2


def test_temporary_files_are_removed() -> None:
    tts = EspeakSynthesizer()
    tts.synthesize(GREETING, 8000)
    assert list(tts._tmpdir.iterdir()) == []
    tts.close()
    assert not tts._tmpdir.exists()
    with pytest.raises(TtsError, match="closed"):
        tts.synthesize("还在吗？", 8000)
    tts.close()  # idempotent


async def test_async_synthesis_does_not_block_the_event_loop(synthesizer: EspeakSynthesizer) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        texts = [f"您的申请已受理，编号{8800 + i}。" for i in range(4)]
        pcms = await asyncio.gather(*(synthesizer.synthesize_async(t, 16000) for t in texts))
    finally:
        task.cancel()
    assert ticks > 10  # the loop kept running while espeak worked
    assert all(rms_dbfs(pcm) > -30 for pcm in pcms)
    assert await synthesizer.synthesize_async(texts[0], 16000) == synthesizer.synthesize(texts[0], 16000)


async def test_a_cancelled_wait_still_fills_the_cache(synthesizer: EspeakSynthesizer) -> None:
    text = "好的，正在为您转接人工客服，请稍候。"
    rendered = synthesizer.stats.syntheses
    waiting = asyncio.create_task(synthesizer.synthesize_async(text, 8000))
    await asyncio.sleep(0)
    waiting.cancel()  # a barge-in: the caller no longer needs this prompt
    with pytest.raises(asyncio.CancelledError):
        await waiting
    deadline = time.monotonic() + 10
    while synthesizer.stats.syntheses == rendered and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    pcm = await synthesizer.synthesize_async(text, 8000)
    assert len(pcm) > frame_bytes(8000, 1000)
    assert synthesizer.stats.syntheses == rendered + 1


@pytest.mark.parametrize("text", ["", "   ", "。", "，？"])
async def test_nothing_to_say_is_an_error(synthesizer: EspeakSynthesizer, text: str) -> None:
    with pytest.raises(TtsError, match="nothing to say"):
        synthesizer.synthesize(text, 8000)
    with pytest.raises(TtsError, match="nothing to say"):
        await synthesizer.synthesize_async(text, 8000)


def test_missing_engine_or_voice_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TtsError, match="no voice 'klingon'"):
        EspeakSynthesizer(voice="klingon")
    monkeypatch.setitem(sys.modules, "pyttsx3", None)  # as if it were not installed
    with pytest.raises(TtsError, match="pyttsx3 with espeak-ng is not available"):
        EspeakSynthesizer()
