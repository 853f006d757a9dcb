"""`hotline bench`: many simulated callers at once against a running gateway, and what it costs.

N caller slots run at once; each places calls one after another. A call hears the greeting, then speaks intent
recordings one turn at a time, pausing to think after each answer so that it speaks well under 40% of the call;
its last turn speaks over the agent's previous answer (barge-in).
Measured at the caller's end: turn gap (end of caller speech to the first agent audio back) and barge-in stop time
(first voiced caller frame to the gateway's `clear`). Measured on the server: CPU and memory of the gateway, Rasa,
the action server and Redis (whole process groups, from /proc). Writes a JSON report and a PNG chart.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.testing.ws_caller import CallReport, Turn, dial, read_wav

AUDIO = PROJECT_ROOT / "tests" / "audio"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class BenchConfig:
    url: str  # the gateway endpoint: .../twilio (8 kHz mu-law, the default), .../pcm (16 kHz)
    token: str | None = None
    calls: int = 12  # concurrent calls (caller slots)
    rounds: int = 3  # calls each slot places, one after another
    turns: int = 2  # caller turns per call
    barge_every: int = 2  # every n-th turn of a call speaks over the agent's previous answer (0: never)
    pause_s: float = 1.5  # the caller thinks about this long (0.5-2.5x, at random) after an answer before speaking
    ramp_s: float = 30.0  # calls start at random over about this long (about one call), as calls arrive on a line
    seed: int = 12333
    pids: dict[str, int] = field(default_factory=dict)  # process groups to measure (name -> leader pid)
    label: str = ""
    end_silence_ms: int = 600  # the gateway's end-of-turn silence (callers speak recordings it hears as one turn)
    redis_url: str = ""  # where the gateway keeps its records: each answer's voice latency is read from there
    warmup: bool = True  # first one short call per slot, not counted: a gateway that has just started is not
    # in its steady state (Vosk recognizers build their decoding graph lazily, per recognizer)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)


# --- server-side cost, from /proc ---
def _group_members(leader: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader or int(entry) == leader:  # fields[2] is the process group
                members.append(int(entry))
    return members


def group_usage(leader: int) -> tuple[float, float]:
    """CPU seconds used so far and resident memory now (MiB) of a process group."""
    cpu, rss = 0.0, 0.0
    for pid in _group_members(leader):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
            status = Path(f"/proc/{pid}/status").read_text()
            rss += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return cpu, rss


class Usage:
    """CPU over the run and peak memory of each process group, sampled twice a second."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}
        self.pids["bench"] = os.getpid()
        self.start = {name: group_usage(pid) for name, pid in self.pids.items()}
        self.peak = {name: rss for name, (_, rss) in self.start.items()}
        self.began = time.monotonic()

    async def sample(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], group_usage(pid)[1])

    def report(self) -> dict[str, dict[str, float]]:
        wall = time.monotonic() - self.began
        out = {}
        for name, pid in self.pids.items():
            cpu, _ = group_usage(pid)
            out[name] = {
                "cpu_cores": round((cpu - self.start[name][0]) / wall, 3),
                "rss_mb_before": round(self.start[name][1], 1),
                "rss_mb_peak": round(self.peak[name], 1),
            }
        return out


# --- the callers ---
def intent_wavs(end_silence_ms: int, audio: Path = AUDIO) -> list[Path]:
    """The intent recordings the gateway's endpointer hears as one utterance at `end_silence_ms`.

    At 300 ms, 39 of the 70 committed recordings split at a comma pause: the first half would be answered while
    the caller is still talking, and the benchmark would measure that, not a turn (docs/voice.md).
    """
    from voice_gateway.audio import frame_bytes, frames
    from voice_gateway.vad import Endpointer, WebRtcVad

    manifest = json.loads((audio / "manifest.json").read_text(encoding="utf-8"))
    quiet, kept = b"\0" * frame_bytes(8000, 1000), []
    for entry in (m for m in manifest if m["kind"] == "intent"):
        endpointer = Endpointer(WebRtcVad(), 8000, end_silence_ms=end_silence_ms)
        pcm = quiet + read_wav(audio / entry["file"], 8000) + quiet
        events = [e for frame in frames(pcm, 8000) if (e := endpointer.feed(frame))]
        if events.count("speech_start") == 1:
            kept.append(audio / entry["file"])
    return kept


def script(config: BenchConfig, rng: random.Random, wavs: list[Path]) -> list[Turn]:
    turns = []
    for n in range(1, config.turns + 1):
        barge = bool(config.barge_every) and n % config.barge_every == 0
        pause = config.pause_s * rng.uniform(0.5, 2.5)
        turns.append(Turn(wav=str(rng.choice(wavs)), barge_in=barge, barge_in_after_s=1.0, pause_s=pause))
    return turns


async def slot(config: BenchConfig, index: int, wavs: list[Path], rng: random.Random) -> list[dict[str, Any]]:
    """One caller slot: `rounds` calls back to back."""
    await asyncio.sleep((index + rng.random()) * config.ramp_s / max(config.calls, 1))
    return [await one_call(config, index, wavs, rng) for _ in range(config.rounds)]


async def one_call(config: BenchConfig, index: int, wavs: list[Path], rng: random.Random) -> dict[str, Any]:
    caller = dial(config.url, config.token)
    turns = script(config, rng, wavs)
    started = time.monotonic()
    try:
        report: CallReport = await caller.run(turns, max_wait_s=20)
    except Exception as exc:  # a failed call is a result, not the end of the benchmark
        return {"index": index, "error": f"{type(exc).__name__}: {exc}"}
    duration = time.monotonic() - started
    spoken = sum(len(read_wav(Path(t.wav), caller.rate)) / 2 / caller.rate for t in turns[: len(report.turns)])
    return {
        "index": index,
        "call_id": report.call_id,
        "seconds": round(duration, 1),
        "caller_speech_share": round(spoken / duration, 3),
        "completed": len(report.turns) == len(turns) and not report.ended_by.startswith("hangup"),
        "ended_by": report.ended_by,
        "turns": [asdict(t) for t in report.turns],
    }


async def run(config: BenchConfig) -> dict[str, Any]:
    wavs = intent_wavs(config.end_silence_ms)
    if config.warmup:
        short = BenchConfig(**{**asdict(config), "rounds": 1, "turns": 1, "barge_every": 0, "warmup": False})
        await asyncio.gather(*(slot(short, i, wavs, random.Random(i)) for i in range(config.calls)))
    usage = Usage(config.pids)
    sampler = asyncio.create_task(usage.sample())
    rng = random.Random(config.seed)
    began = time.monotonic()
    slots = await asyncio.gather(*(slot(config, i, wavs, random.Random(rng.random())) for i in range(config.calls)))
    calls = [call for placed in slots for call in placed]
    wall = time.monotonic() - began
    sampler.cancel()
    if config.redis_url:
        await voice_latencies(config.redis_url, calls)
    return summarise(config, calls, usage.report(), wall)


async def voice_latencies(redis_url: str, calls: list[dict[str, Any]]) -> None:
    """Each call's first-audio latencies after the dialogue's answers (greeting included), from its record."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url, socket_timeout=5)
    try:
        await asyncio.sleep(1.0)  # the last writes of calls that just ended
        for call in calls:
            if call.get("call_id"):
                raw = await redis.lrange(f"hotline:call:{call['call_id']}:voice", 0, -1)
                call["voice_ms"] = [float(v) for v in raw]
    finally:
        await redis.aclose()


def summarise(
    config: BenchConfig, calls: list[dict[str, Any]], usage: dict[str, dict[str, float]], wall: float
) -> dict[str, Any]:
    turns = [t for c in calls for t in c.get("turns", [])]
    gaps = [t["turn_gap_ms"] for t in turns if t["turn_gap_ms"] is not None]
    barges = [t["barge_in_stop_ms"] for t in turns if t["barge_in_stop_ms"] is not None]
    voice = [v for c in calls for v in c.get("voice_ms", [])]  # the dialogue's answer -> its first sound
    server = {k: v for k, v in usage.items() if k != "bench"}
    server_cpu = sum(v["cpu_cores"] for v in server.values())
    server_growth = sum(v["rss_mb_peak"] - v["rss_mb_before"] for v in server.values())
    shares = [c["caller_speech_share"] for c in calls if "caller_speech_share" in c]
    summary = {
        "concurrent": config.calls,
        "calls": len(calls),
        "answered": sum(1 for c in calls if c.get("turns") is not None),
        "completed": sum(1 for c in calls if c.get("completed")),
        "errors": [c["error"] for c in calls if "error" in c],
        "turns": len(turns),
        "turn_gap_ms": {"p50": percentile(gaps, 50), "p95": percentile(gaps, 95), "max": max(gaps, default=None)},
        "turn_gaps_measured": len(gaps),
        "barge_in_stop_ms": {"p50": percentile(barges, 50), "p95": percentile(barges, 95), "n": len(barges)},
        "voice_first_audio_ms": {"p50": percentile(voice, 50), "p95": percentile(voice, 95), "n": len(voice)},
        "caller_speech_share": {"mean": round(statistics.fmean(shares), 3) if shares else None, "max": max(shares)}
        if shares
        else {},
        "cpu_cores": {"server": round(server_cpu, 3), "per_call": round(server_cpu / max(config.calls, 1), 3)},
        "memory_mb": {  # per concurrent call
            "server_peak": round(sum(v["rss_mb_peak"] for v in server.values()), 1),
            "growth_per_call": round(server_growth / max(config.calls, 1), 1),
        },
        "wall_s": round(wall, 1),
        "recordings": len({t["said"] for t in turns}),
    }
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "token"},
        "summary": summary,
        "processes": usage,
        "calls": calls,
    }


def chart(result: dict[str, Any], path: Path) -> None:
    """Turn gaps and barge-in stop times as histograms, with p50/p95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    turns = [t for c in result["calls"] for t in c.get("turns", [])]
    gaps = [t["turn_gap_ms"] for t in turns if t["turn_gap_ms"] is not None]
    barges = [t["barge_in_stop_ms"] for t in turns if t["barge_in_stop_ms"] is not None]
    summary = result["summary"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, values, title, key in (
        (axes[0], gaps, "Turn gap (end of caller speech -> first agent audio)", "turn_gap_ms"),
        (axes[1], barges, "Barge-in stop (caller speech -> agent audio cleared)", "barge_in_stop_ms"),
    ):
        ax.hist(values, bins=30, color="#4c72b0")
        for q, style in (("p50", "--"), ("p95", "-")):
            if summary[key][q] is not None:
                ax.axvline(summary[key][q], color="#c44e52", linestyle=style, label=f"{q} {summary[key][q]:.0f} ms")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ms")
        ax.set_ylabel("turns")
        ax.legend()
    label = result["config"].get("label") or ""
    cpu = summary["cpu_cores"]
    fig.suptitle(
        f"{summary['concurrent']} concurrent calls {label}: {summary['completed']} of {summary['calls']} completed, "
        f"server CPU {cpu['server']:.2f} cores ({cpu['per_call']:.3f}/call)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(result: dict[str, Any]) -> str:
    s = result["summary"]
    rows = [
        ("concurrent calls", str(s["concurrent"])),
        ("calls placed (answered / completed)", f"{s['calls']} ({s['answered']} / {s['completed']})"),
        ("caller turns (turn gaps measured)", f"{s['turns']} ({s['turn_gaps_measured']})"),
        (
            "turn gap p50 / p95 / max",
            f"{s['turn_gap_ms']['p50']} / {s['turn_gap_ms']['p95']} / {s['turn_gap_ms']['max']} ms",
        ),
        (
            "barge-in stop p50 / p95 (n)",
            f"{s['barge_in_stop_ms']['p50']} / {s['barge_in_stop_ms']['p95']} ms ({s['barge_in_stop_ms']['n']})",
        ),
        (
            "voice: answer -> first audio p50 / p95 (n)",
            "{p50} / {p95} ms ({n})".format(**s["voice_first_audio_ms"]),
        ),
        (
            "caller speech share mean / max",
            f"{s['caller_speech_share'].get('mean')} / {s['caller_speech_share'].get('max')}",
        ),
        ("server CPU total / per call", f"{s['cpu_cores']['server']} / {s['cpu_cores']['per_call']} cores"),
        (
            "server memory peak / growth per call",
            f"{s['memory_mb']['server_peak']} / {s['memory_mb']['growth_per_call']} MiB",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
