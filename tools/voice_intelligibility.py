"""Can a caller understand the agent? Each voice through the phone channel, transcribed by the project's Whisper.

Every fixed sentence the agent can say (voice_gateway/prompt_store.py `fixed_sentences`: the domain's responses,
the questions, the actions' and the call flow's fixed words) and the 50 sentences with numbers below (amounts,
dates, phone, ID-tail and reference numbers, as the actions write them) are synthesised by each voice at 8 kHz
exactly as a call plays them, sent through G.711 mu-law and back, and transcribed by Whisper base (the gateway's
recogniser, `make_recognizer("whisper")`). The character error rate is counted against the text as the voices
read it (`speakable`: numbers in words), both sides normalised as the recogniser normalises callers (digits,
simplified characters, no punctuation): total edits over total characters, per voice and per kind.

Then latency: the first audio of an answer (its first sentence, synthesised) at 1 and 12 requests at once, with the
prompt store (fixed sentences rendered ahead) and without it (every sentence rendered), and sentences with numbers
(never stored); and the worker's CPU and memory.

    .venv/bin/python tools/voice_intelligibility.py            # both voices; about 10 minutes on 2 cores
    .venv/bin/python tools/voice_intelligibility.py --quick    # a dozen sentences per kind, no latency

Run it through the environment ./hotline makes (HOTLINE_TTS_ENV is the neural voice's), e.g.
`HOTLINE_TTS_ENV=~/.cache/hotline/tts-<hash> .venv/bin/python tools/voice_intelligibility.py`.
The report goes to docs/bench/voice-<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voice_gateway.asr import make_recognizer  # noqa: E402
from voice_gateway.audio import frames, ulaw_decode, ulaw_encode  # noqa: E402
from voice_gateway.config import Settings  # noqa: E402
from voice_gateway.neural_tts import EspeakVoice, NeuralSynthesizer  # noqa: E402
from voice_gateway.prompt_store import PromptStore, StoredVoice, fixed_sentences  # noqa: E402
from voice_gateway.speech_text import sentences, speakable  # noqa: E402
from voice_gateway.testing.text_errors import chars, edits  # noqa: E402
from voice_gateway.tts import EspeakSynthesizer  # noqa: E402

# What the actions say with a caller's numbers in it: amounts, dates, phone numbers, reference numbers.
NUMBER_SENTENCES = [
    "您的养老金每月3500元，将于2026年12月4日发放。",
    "您本月的养老金是4286元，已经发到尾号6617的社保卡上。",
    "您累计缴纳养老保险15年4个月，个人账户余额是68230元。",
    "您今年已经缴费11个月，缴费基数是每月5200元。",
    "您的失业保险金每月1860元，可以领取12个月。",
    "失业保险金从2026年3月开始发放，到2027年2月为止。",
    "您的受理编号是202611280037，请您记好。",
    "已经为您办理临时挂失，受理编号是202612010458。",
    "电话挂失是临时挂失，有效期5天，到12月6日为止。",
    "您的社保卡卡号尾号是3852，目前状态正常。",
    "身份证尾号1230，请确认是不是您本人。",
    "您的仲裁案号是2024年第123号，目前在审理中。",
    "您的案件将于2026年1月15日上午9点开庭。",
    "如有疑问，请拨打12333。",
    "您可以拨打0755-12333咨询深圳当地的政策。",
    "工作人员会在3个工作日内给您回电，电话是13912345678。",
    "我们会把结果发到您的手机13800138000上。",
    "您按男职工计算，法定退休年龄是63岁。",
    "您出生于1975年8月，可以在2038年8月退休。",
    "您的退休年龄是60岁4个月，也就是2035年12月。",
    "您的工伤认定申请已经受理，编号是GS20260417。",
    "您的技能证书编号是2026001234567，等级是三级。",
    "您今年一共缴纳了失业保险费312元。",
    "灵活就业人员的缴费基数在4000元到20000元之间。",
    "按百分之20的费率，每月要缴纳800元。",
    "您的医疗保险个人账户余额是2356.8元。",
    "您上次缴费的时间是2026年10月31日。",
    "您的社保卡会在7个工作日内寄出，快递单号是SF1234567890。",
    "补卡费用是20元，新卡大约15天可以领取。",
    "您前面还有3位来电，预计等待2分钟。",
    "深圳市南山区有5个岗位，月薪6000元到8000元。",
    "这个电工岗位月薪7500元，工作时间是早上8点到下午5点。",
    "招聘会在11月20日下午2点举行，地点是市人才市场3楼。",
    "您的档案在2019年转到了市人才服务中心。",
    "您的转移申请编号是ZY2026112800015，大约45个工作日办完。",
    "您的补贴申请金额是1500元，将在30天内到账。",
    "您的服务密码已经重置，新密码请在6小时内修改。",
    "您连续缴费36个月，满足领取条件。",
    "您的单位从2021年5月开始为您缴纳社保。",
    "您今年的年度缴费总额是14880元。",
    "养老金资格认证要在每年12月31日之前完成。",
    "社保大厅的电话是010-68123456，工作日上午9点开始办公。",
    "您的预约号是A0358，请在3月8日上午10点前到窗口办理。",
    "您领取失业金已经8个月，还可以领取4个月。",
    "您的一次性丧葬补助金是23600元。",
    "本次退还多缴的社保费968.5元。",
    "您的个人账户从2026年1月起每月计息。",
    "您的劳动仲裁申请已经在11月3日立案，案号是2026年第458号。",
    "请在5个工作日内补交材料，逾期需要重新申请。",
    "您的社保卡在2026年12月1日14点22分已经停用。",
]

SUBSET_SIZE = 12


def phone_channel(pcm8k: bytes) -> bytes:
    """The telephone line: G.711 mu-law and back at 8 kHz."""
    return ulaw_decode(ulaw_encode(pcm8k))


# Whisper's window with the domain prompt holds about 24 s: longer audio is cut at its quietest frame in 12-20 s
CHUNK_S = (12, 20)


def transcribe(recognizer: Any, pcm8k: bytes) -> str:
    """What Whisper hears, fed in 20 ms frames as a call feeds it (audio over 20 s in pieces: espeak-ng's are)."""
    pieces, rest = [], pcm8k
    while len(rest) > CHUNK_S[1] * 16000:
        window = np.frombuffer(rest[CHUNK_S[0] * 16000 : CHUNK_S[1] * 16000], "<i2").astype(np.float64)
        energy = (window[: len(window) // 160 * 160].reshape(-1, 160) ** 2).mean(axis=1)
        cut = CHUNK_S[0] * 16000 + int(np.argmin(energy)) * 320
        pieces.append(rest[:cut])
        rest = rest[cut:]
    heard = []
    for piece in [*pieces, rest]:
        utterance = recognizer.utterance(8000)
        try:
            for frame in frames(piece, 8000):
                utterance.accept(frame)
            heard.append(utterance.finish().text)
        finally:
            utterance.close()
    return "".join(heard)


def intelligibility(voice: Any, recognizer: Any, texts: list[str]) -> dict[str, Any]:
    """Each text's sentences at 8 kHz through the phone channel into Whisper: CER over all, and per text."""
    items, total_edits, total_chars = [], 0, 0
    for text in texts:
        heard = []
        for piece in sentences(text):
            # the voice itself, given the time it needs (the latency part counts what a call's deadline costs)
            pcm = voice.render(piece, 8000, timeout_s=30.0).pcm
            heard.append(transcribe(recognizer, phone_channel(pcm)))
        reference, hypothesis = chars(speakable(text)), chars("".join(heard))
        wrong = edits(reference, hypothesis)
        total_edits += wrong
        total_chars += len(reference)
        items.append({"text": text, "heard": "".join(heard), "cer": round(wrong / max(1, len(reference)), 3)})
    return {"cer": round(total_edits / max(1, total_chars), 4), "characters": total_chars, "items": items}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def first_audio(synthesizer: Any, answers: list[str], concurrency: int) -> dict[str, Any]:
    """Each answer's first sentence at 8 kHz, `concurrency` requests at once (as that many calls would)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for answer in answers:
        queue.put_nowait(sentences(answer)[0])
    latencies: list[float] = []

    async def caller() -> None:
        while not queue.empty():
            piece = queue.get_nowait()
            started = time.perf_counter()
            await synthesizer.synthesize_async(piece, 8000)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "wall_s": round(wall, 2),
    }


def latency(neural: NeuralSynthesizer | None, espeak: EspeakVoice, fixed: list[str]) -> dict[str, Any]:
    """First audio: without the store (every first sentence rendered), with it, and for number sentences."""
    results: dict[str, Any] = {}
    voices: list[tuple[str, Any]] = [("espeak", espeak)] + ([("neural", neural)] if neural is not None else [])
    for name, voice in voices:
        if neural is not None:
            neural.forget()  # the sentences were heard before: render them again
        with tempfile.TemporaryDirectory() as folder:
            stored = StoredVoice(voice, PromptStore(Path(folder)), fixed=[sentences(t)[0] for t in fixed])
            for concurrency in (1, 12):
                # distinct texts per run, so that no in-memory cache answers: without the store, every one renders
                half = len(fixed) // 2
                block = fixed[:half] if concurrency == 1 else fixed[half:]
                usage = _usage(neural) if name == "neural" else None
                fallbacks = neural.stats.fallbacks if name == "neural" and neural is not None else 0
                without = asyncio.run(first_audio(voice, block, concurrency))
                if usage is not None and neural is not None:
                    after = _usage(neural)
                    without["worker_cpu_cores"] = round((after["cpu_s"] - usage["cpu_s"]) / without["wall_s"], 2)
                    without["fallbacks"] = neural.stats.fallbacks - fallbacks
                stored.render_ahead((8000,), block)
                with_store = asyncio.run(first_audio(stored, block, concurrency))
                numbers = NUMBER_SENTENCES[:24] if concurrency == 1 else NUMBER_SENTENCES[24:]
                fallbacks = neural.stats.fallbacks if name == "neural" and neural is not None else 0
                with_numbers = asyncio.run(first_audio(stored, numbers, concurrency))
                if name == "neural" and neural is not None:
                    with_numbers["fallbacks"] = neural.stats.fallbacks - fallbacks
                results[f"{name}_{concurrency}"] = {
                    "fixed_without_store": without,
                    "fixed_with_store": with_store,
                    "numbers_never_stored": with_numbers,
                }
                print(f"  {name} x{concurrency}: {json.dumps(results[f'{name}_{concurrency}'])}", flush=True)
    return results


def _usage(neural: NeuralSynthesizer) -> dict[str, Any]:
    return neural.worker_usage()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{SUBSET_SIZE} sentences per kind, no latency")
    parser.add_argument("--voices", default="neural,espeak", help="comma-separated (default neural,espeak)")
    parser.add_argument("--out", help="report file (default docs/bench/voice-<date>.json)")
    args = parser.parse_args()
    settings = Settings.from_env()
    config = settings.gateway
    fixed = fixed_sentences()
    numbers = NUMBER_SENTENCES
    if args.quick:
        fixed, numbers = fixed[:: max(1, len(fixed) // SUBSET_SIZE)][:SUBSET_SIZE], numbers[:SUBSET_SIZE]
    recognizer = make_recognizer("whisper")
    recognizer.warm_up()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start",
        "channel": "8 kHz, G.711 mu-law round trip",
        "recogniser": recognizer.info.model,
        "texts": {"fixed_sentences": len(fixed), "number_sentences": len(numbers)},
        "voices": {},
    }
    espeak = EspeakVoice()
    neural = None
    with tempfile.TemporaryDirectory() as run_dir:
        if "neural" in args.voices:
            python = Path(config.tts_env) / "bin" / "python" if config.tts_env else None
            started = time.perf_counter()
            neural = NeuralSynthesizer(Path(run_dir) / "tts.sock", python, speed=config.tts_speed)
            report["neural_worker_start_s"] = round(time.perf_counter() - started, 2)
        for name in args.voices.split(","):
            voice = neural if name == "neural" else espeak
            print(f"{name}: intelligibility through the phone channel", flush=True)
            result = {
                "voice_id": voice.voice_id,
                "fixed": intelligibility(voice, recognizer, fixed),
                "numbers": intelligibility(voice, recognizer, numbers),
            }
            if name == "neural" and neural is not None:
                result["fallbacks_during_intelligibility"] = neural.stats.fallbacks
                result["render_real_time_factor"] = round(
                    neural.stats.render_seconds / max(neural.stats.audio_seconds, 1e-9), 3
                )
            report["voices"][name] = result
            print(f"  CER fixed {result['fixed']['cer']}, numbers {result['numbers']['cer']}", flush=True)
        if not args.quick:
            print("latency of the first audio", flush=True)
            report["load_average_before_latency"] = round(os.getloadavg()[0], 1)  # the machine is shared
            uncached = EspeakVoice(EspeakSynthesizer(cache_size=0))  # its cache would answer repeated sentences
            report["latency"] = latency(neural, uncached, fixed)
            uncached.close()
        if neural is not None:
            usage = neural.worker_usage()
            report["neural_worker"] = {
                "rss_mib": round(usage["rss_kib"] / 1024),
                "max_rss_mib": round(usage["max_rss_kib"] / 1024),
                "cpu_s": usage["cpu_s"],
                "renderings": usage["renderings"],
                "cpu_s_per_audio_s": round(usage["cpu_s"] / max(neural.stats.audio_seconds, 1e-9), 3),
            }
            neural.close()
    espeak.close()
    out = Path(args.out or ROOT / "docs" / "bench" / f"voice-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
