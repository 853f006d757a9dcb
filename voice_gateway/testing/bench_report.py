"""What `hotline bench` makes of its calls: the pure part (matching, the rules, the figures) and the report's
context (commit, machine). The rules are documented in voice_gateway/testing/bench.py's docstring."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

GOODBYE = "goodbye"
DIALOGUE_HANGUP = "caller_done"  # the detail of a call the dialogue ended (HangupReason.CALLER_DONE)
MIN_PAUSE_S, MAX_PAUSE_S = 0.3, 2.5  # a caller's thinking pause; under the gateway's no-input prompt
BARGE_AFTER_S = 1.0  # a barging caller starts this long after the agent's answer starts
AGENT_DONE_S = 0.9  # the caller's sense that the agent has finished (ws_caller.AGENT_DONE_SILENCE_S)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)


# --- the call record against what the caller said ---
def match_turns(turns: list[dict[str, Any]], records: list[dict[str, Any]], expected: dict[str, str]) -> int:
    """Fill each spoken turn (in place) with what the gateway recorded for it: the n-th spoken turn is the n-th
    "heard" record; its answer is the last "answer" after speech with the same `seq` (a sentence the gateway
    joined is asked again). `expected` maps recording file names to their intents. Returns how many "heard"
    records were left over (the gateway heard more utterances than the caller spoke: the matching is suspect)."""
    heard = [r for r in records if r.get("kind") == "heard"]
    answers = {r.get("seq"): r for r in records if r.get("kind") == "answer" and r.get("after") == "speech"}
    spoken = [t for t in turns if not str(t.get("said", "")).startswith("[")]
    for n, turn in enumerate(spoken):
        record = heard[n] if n < len(heard) else {}
        answer = answers.get(record.get("seq"), {}) if record else {}
        turn["expected"] = expected.get(turn["said"])
        turn["recognised"] = record.get("caller")
        turn["confidence"] = record.get("confidence")
        turn["engine"] = record.get("engine")
        turn["intent"] = answer.get("intent")
        turn["bot"] = answer.get("bot")
        turn["understood"] = turn["expected"] is not None and turn["intent"] == turn["expected"]
    return max(0, len(heard) - len(spoken))


def call_completed(call: dict[str, Any]) -> bool:
    """Completed: no error, every scripted turn spoken, the last one a goodbye recording, and the goodbye heard:
    that turn's answer has intent goodbye, or the call's record says the dialogue ended it (reason "completed",
    detail "caller_done", which the gateway writes only after the dialogue's hangup)."""
    turns = call.get("turns") or []
    if "error" in call or not turns or len(turns) != call.get("scripted_turns"):
        return False
    last = turns[-1]
    if last.get("expected") != GOODBYE:
        return False
    record = call.get("record") or {}
    ended_by_dialogue = record.get("reason") == "completed" and record.get("detail") == DIALOGUE_HANGUP
    return last.get("intent") == GOODBYE or ended_by_dialogue


def understood_share(turns: list[dict[str, Any]]) -> float | None:
    """Spoken turns whose answer's intent is the recording's intent, over all spoken turns."""
    spoken = [t for t in turns if not str(t.get("said", "")).startswith("[")]
    if not spoken:
        return None
    return round(sum(1 for t in spoken if t.get("understood")) / len(spoken), 3)


def barge_ins(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """Every barge-in turn spoken is attempted; stopped only where the agent's stop was measured. The
    percentiles are over the stopped ones: an unmeasured stop is a failure, never left out silently."""
    attempted = [t for t in turns if t.get("barge_in")]
    stopped = [t["barge_in_stop_ms"] for t in attempted if t.get("barge_in_stop_ms") is not None]
    return {
        "p50": percentile(stopped, 50),
        "p95": percentile(stopped, 95),
        "attempted": len(attempted),
        "stopped": len(stopped),
    }


def barged_answers(turns: int, barge_every: int) -> int:
    """How many of a call's answers the caller speaks over: turn n (2..turns) barges in when n % barge_every == 0
    (never over the greeting)."""
    return sum(1 for n in range(2, turns + 1) if barge_every and n % barge_every == 0)


class Pacer:
    """What a call takes besides the caller's speech and pauses, learnt from the calls already placed (priors
    until then): the greeting, an answer heard to its end (turn gap, its audio, the caller noticing it ended),
    an answer spoken over (turn gap, then the caller starts BARGE_AFTER_S into it) and the goodbye's answer."""

    def __init__(self, greeting_s: float = 8.0, full_s: float = 8.0, barged_s: float = 2.5, closing_s: float = 3.0):
        self.greeting, self.full, self.barged, self.closing = [greeting_s], [full_s], [barged_s], [closing_s]

    def other_s(self, turns: int, barged: int) -> float:
        full = max(turns - 1 - barged, 0)
        med = statistics.median
        return med(self.greeting) + barged * med(self.barged) + full * med(self.full) + med(self.closing)

    def learn(self, greeting_s: float, turns: list[dict[str, Any]]) -> None:
        """From a call's turn reports (turn_gap_ms, agent_audio_s, barge_in), as placed."""
        if not turns:
            return
        self.greeting.append(greeting_s)
        for k, turn in enumerate(turns):
            if turn.get("turn_gap_ms") is None:
                continue
            gap = turn["turn_gap_ms"] / 1000
            if k == len(turns) - 1:
                self.closing.append(gap + turn.get("agent_audio_s", 0.0))
            elif turns[k + 1].get("barge_in"):
                self.barged.append(gap + BARGE_AFTER_S)
            else:
                self.full.append(gap + turn.get("agent_audio_s", 0.0) + AGENT_DONE_S)


def plan(
    target: float, speech_s: list[float], typical_s: float, pacer: Pacer, barge_every: int, max_turns: int
) -> tuple[int, int, float, bool]:
    """How a call reaches the talk share `target` = speech / (speech + pauses + the rest, from `pacer`): returns
    (middle turns to add, barge_every, each pause, reachable). The pause comes first (between MIN_PAUSE_S and
    MAX_PAUSE_S, on the turns that do not barge in); if even the shortest cannot reach the share, the caller speaks
    over every answer, then more turns (of `typical_s` speech each) amortise the greeting, up to `max_turns`."""
    base = len(speech_s)
    for extra in range(max(max_turns - base, 0) + 1):
        speech, turns = sum(speech_s) + extra * typical_s, base + extra
        for every in dict.fromkeys([barge_every, 1]):
            barged = barged_answers(turns, every)
            pause = (speech / target - speech - pacer.other_s(turns, barged)) / max(turns - barged, 1)
            if pause >= MIN_PAUSE_S:
                return extra, every, min(pause, MAX_PAUSE_S), True
    return max(max_turns - base, 0), 1, MIN_PAUSE_S, False


# --- the report's context ---
def commit(root: Path) -> str:
    """`git rev-parse HEAD`, with "+dirty" when the tree has changes (untracked files included)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    return (head.stdout.strip() or "unknown") + ("+dirty" if status.stdout.strip() else "")


def machine() -> dict[str, Any]:
    model, memory = "", 0.0
    with contextlib.suppress(OSError, StopIteration):
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    with contextlib.suppress(OSError, StopIteration, ValueError, IndexError):
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal:"))
        memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu_model": model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gb": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy so far (/proc/stat: all but idle and iowait)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def shared_cores(usage: dict[str, dict[str, float]], machine_cores: float | None, caller_cpus: list[int]) -> str:
    bench = usage.get("bench", {}).get("cpu_cores", 0.0)
    server = sum(v["cpu_cores"] for k, v in usage.items() if k != "bench")
    budget = f"pinned to cores {caller_cpus}" if caller_cpus else "not pinned"
    text = (
        f"The simulated callers ran in the bench process on the same machine as the gateway ({os.cpu_count()} "
        f"cores, {budget}); the bench process used {bench:.2f} cores, the server processes {server:.2f}"
    )
    if machine_cores is not None:
        other = max(0.0, machine_cores - bench - server)
        text += f", everything else on the machine {other:.2f} (whole machine busy {machine_cores:.2f} cores)"
    return text + "."


def summarise(
    config: dict[str, Any],
    calls: list[dict[str, Any]],
    usage: dict[str, dict[str, float]],
    wall: float,
    machine_cores: float | None = None,
) -> dict[str, Any]:
    turns = [t for c in calls for t in c.get("turns", [])]
    gaps = [t["turn_gap_ms"] for t in turns if t.get("turn_gap_ms") is not None]
    voice = [v for c in calls for v in c.get("voice_ms", [])]  # the dialogue's answer -> its first sound
    server = {k: v for k, v in usage.items() if k != "bench"}
    server_cpu = sum(v["cpu_cores"] for v in server.values())
    growth = sum(v["rss_mb_peak"] - v["rss_mb_before"] for v in server.values())
    shares = [c["talk_share"] for c in calls if c.get("talk_share") is not None]
    concurrent = max(config.get("calls", 1), 1)
    completed = sum(1 for c in calls if call_completed(c))
    barge = barge_ins(turns)
    summary = {
        "concurrent": config.get("calls"),
        "calls": len(calls),
        "answered": sum(1 for c in calls if c.get("turns") is not None),
        "completed": completed,
        "errors": [c["error"] for c in calls if "error" in c],
        "turns": len(turns),
        "understood": sum(1 for t in turns if t.get("understood")),
        "unmatched_heard": sum(c.get("unmatched_heard", 0) for c in calls),
        "turn_gap_ms": {"p50": percentile(gaps, 50), "p95": percentile(gaps, 95), "max": max(gaps, default=None)},
        "turn_gaps_measured": len(gaps),
        "barge_in_stop_ms": {"p50": barge["p50"], "p95": barge["p95"], "n": barge["stopped"]},
        "voice_first_audio_ms": {"p50": percentile(voice, 50), "p95": percentile(voice, 95), "n": len(voice)},
        "caller_speech_share": {"mean": round(statistics.fmean(shares), 3), "max": max(shares)} if shares else {},
        "cpu_cores": {"server": round(server_cpu, 3), "per_call": round(server_cpu / concurrent, 3)},
        "memory_mb": {
            "server_peak": round(sum(v["rss_mb_peak"] for v in server.values()), 1),
            "growth_per_call": round(growth / concurrent, 1),
        },
        "wall_s": round(wall, 1),
        "recordings": len({t["said"] for t in turns}),
    }
    return {
        "calls": config.get("calls"),
        "talk_share": summary["caller_speech_share"].get("mean"),
        "placed": len(calls),
        "completed": completed,
        "understood_share": understood_share(turns),
        "turn_gap_ms": {"p50": summary["turn_gap_ms"]["p50"], "p95": summary["turn_gap_ms"]["p95"]},
        "barge_in_ms": barge,
        "cpu_cores_per_call": summary["cpu_cores"]["per_call"],
        "rss_mb_per_call": round(growth / concurrent, 1),
        "bench_cpu_cores": usage.get("bench", {}).get("cpu_cores"),
        "shared_cores": shared_cores(usage, machine_cores, config.get("caller_cpus") or []),
        "machine": machine(),
        "config": config,
        "summary": summary,
        "processes": usage,
        "call_list": calls,
    }


def chart(result: dict[str, Any], path: Path) -> None:
    """Turn gaps and barge-in stop times as histograms, with p50/p95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    turns = [t for c in result["call_list"] for t in c.get("turns", [])]
    gaps = [t["turn_gap_ms"] for t in turns if t.get("turn_gap_ms") is not None]
    barges = [t["barge_in_stop_ms"] for t in turns if t.get("barge_in") and t.get("barge_in_stop_ms") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    barge = result["barge_in_ms"]
    for ax, values, title, marks in (
        (axes[0], gaps, "Turn gap (end of caller speech -> first agent audio)", result["turn_gap_ms"]),
        (axes[1], barges, f"Barge-in stop: {barge['stopped']} of {barge['attempted']} stopped", barge),
    ):
        ax.hist(values, bins=30, color="#4c72b0")
        for q, style in (("p50", "--"), ("p95", "-")):
            if marks[q] is not None:
                ax.axvline(marks[q], color="#c44e52", linestyle=style, label=f"{q} {marks[q]:.0f} ms")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("ms")
        ax.set_ylabel("turns")
        if values:
            ax.legend()
    label = result["config"].get("label") or ""
    understood = result["understood_share"]
    fig.suptitle(
        f"{result['calls']} concurrent calls {label}: {result['completed']} of {result['placed']} completed, "
        f"{understood if understood is not None else '-'} understood, talk share {result['talk_share']}, "
        f"server CPU {result['cpu_cores_per_call']:.3f} cores/call",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(result: dict[str, Any]) -> str:
    s, barge = result["summary"], result["barge_in_ms"]
    rows = [
        ("engine / wire / commit", f"{result.get('engine')} / {result.get('wire')} / {result.get('commit')}"),
        ("concurrent calls", str(result["calls"])),
        ("calls placed / completed (goodbye heard)", f"{result['placed']} / {result['completed']}"),
        ("caller turns understood / spoken", f"{s['understood']} / {s['turns']} ({result['understood_share']})"),
        ("talk share (target)", f"{result['talk_share']} ({result['config'].get('talk_share')})"),
        (
            "turn gap p50 / p95 / max (n)",
            f"{s['turn_gap_ms']['p50']} / {s['turn_gap_ms']['p95']} / {s['turn_gap_ms']['max']} ms "
            f"({s['turn_gaps_measured']})",
        ),
        (
            "barge-in stop p50 / p95 (stopped of attempted)",
            f"{barge['p50']} / {barge['p95']} ms ({barge['stopped']} of {barge['attempted']})",
        ),
        ("voice: answer -> first audio p50 / p95 (n)", "{p50} / {p95} ms ({n})".format(**s["voice_first_audio_ms"])),
        ("server CPU total / per call", f"{s['cpu_cores']['server']} / {result['cpu_cores_per_call']} cores"),
        ("server memory peak / growth per call", f"{s['memory_mb']['server_peak']} / {result['rss_mb_per_call']} MiB"),
        ("bench process (callers) CPU", f"{result.get('bench_cpu_cores')} cores"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
