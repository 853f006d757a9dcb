"""`hotline bench`: many simulated callers at once against a running gateway, what they understood, what it costs.

N caller slots run at once; each places calls one after another. A call hears the greeting, speaks dev-split intent
recordings (tests/audio/manifest.json) one turn at a time and ends with a goodbye recording; every `barge_every`-th
turn speaks over the agent's previous answer (barge-in). The caller speaks `talk_share` of each call (default 0.4),
planned from what the calls placed so far took (bench_report.Pacer, bench_report.plan): first the thinking pauses;
where even the shortest pause cannot reach the share, the caller speaks over every answer, then takes more turns
(up to MAX_TURNS) so that the greeting weighs less. The share reached is measured (speech seconds / call seconds)
and reported: with slow answers it stays below the target, and the report says so rather than hiding it.

Every turn is checked against its call's record in Redis (`hotline:call:<id>:turns`): the n-th spoken turn is the
n-th "heard" record, its answer the last "answer" after speech with the same seq. A turn is *understood* when that
answer's intent is the recording's intent in the manifest; `understood_share` = understood / spoken turns.
A call is *completed* only when it spoke every scripted turn, the last being the goodbye recording, and the goodbye
was heard: that turn's answer has intent goodbye, or the call's record (`hotline:call:<id>`) says the dialogue ended
it (reason "completed", detail "caller_done": the flow hangs up after the dialogue's hangup payload). A barge-in
is *attempted* on every barge-in turn spoken and *stopped* only where the agent's stop (the gateway's `clear`, or
its audio stopping on SIP) was measured; the percentiles are over the stopped ones, the rest count as failures.

Measured at the caller's end: turn gap (end of caller speech to the first agent audio back) and barge-in stop time
(first voiced caller frame to the gateway's `clear`). Measured on the server: CPU and memory of the gateway, Rasa,
the action server and Redis (whole process groups, from /proc). Memory is sampled first, before the warm-up calls;
CPU is counted from after the warm-up. `rss_mb_per_call` = the sum over server groups of (peak - before) / the
concurrent calls. The bench process's own CPU is measured too (`shared_cores`): its callers share the machine.
Writes a JSON report and a PNG chart. Its top level: engine, wire, calls (concurrent calls), talk_share (measured),
placed, completed, understood_share, turn_gap_ms, barge_in_ms, cpu_cores_per_call (server cores / concurrent calls),
rss_mb_per_call, commit (HEAD, "+dirty" with changes), settings (this config, the gateway's /healthz), machine,
shared_cores, bench_cpu_cores; each call with its turns is in `call_list`, `summary` and `processes` in detail.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import statistics
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.testing.bench_report import (
    BARGE_AFTER_S,
    GOODBYE,
    Pacer,
    chart,
    commit,
    machine_busy_s,
    match_turns,
    plan,
    print_table,
    summarise,
)
from voice_gateway.testing.ws_caller import CallReport, Turn, dial, read_wav

AUDIO = PROJECT_ROOT / "tests" / "audio"
TICKS = os.sysconf("SC_CLK_TCK")
MID_CALL_EXCLUDED = {GOODBYE, "request_human", "stop", "complain", "affirm", "deny", "thank"}  # end or redirect
GOODBYE_FALLBACK = "call_card_loss_4_goodbye.wav"
MAX_TURNS = 8  # the most caller turns a call is given to reach the talk share (more amortise the greeting)


@dataclass
class BenchConfig:
    url: str  # the gateway endpoint: .../twilio (8 kHz mu-law, the default), .../pcm (16 kHz)
    token: str | None = None
    calls: int = 12  # concurrent calls (caller slots)
    rounds: int = 3  # calls each slot places, one after another
    turns: int = 2  # caller turns per call, the goodbye included
    barge_every: int = 2  # every n-th turn of a call speaks over the agent's previous answer (0: never)
    pause_s: float = 1.5  # the thinking pause when talk_share is 0 (0.5-2.5x, at random)
    talk_share: float = 0.4  # the share of each call's time the caller speaks (0: pauses of pause_s instead)
    ramp_s: float = 30.0  # calls start at random over about this long (about one call), as calls arrive on a line
    seed: int = 12333
    pids: dict[str, int] = field(default_factory=dict)  # process groups to measure (name -> leader pid)
    label: str = ""
    end_silence_ms: int = 600  # the gateway's end-of-turn silence (callers speak recordings it hears as one turn)
    redis_url: str = ""  # where the gateway keeps its records: each turn's text, intent and answer come from there
    warmup: bool = True  # first one short call per slot, not counted: a gateway that has just started is not
    # in its steady state (Vosk recognizers build their decoding graph lazily, per recognizer)
    caller_cpus: list[int] = field(default_factory=list)  # the cores the bench process was pinned to (empty: any)


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
        self.cpu_start = {name: cpu for name, (cpu, _) in self.start.items()}
        self.peak = {name: rss for name, (_, rss) in self.start.items()}
        self.began = time.monotonic()

    def restart_cpu(self) -> None:
        """Count CPU from now on (after the warm-up); memory keeps its first sample as the baseline."""
        self.cpu_start = {name: group_usage(pid)[0] for name, pid in self.pids.items()}
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
                "cpu_cores": round((cpu - self.cpu_start[name]) / wall, 3),
                "rss_mb_before": round(self.start[name][1], 1),
                "rss_mb_peak": round(self.peak[name], 1),
            }
        return out


# --- the callers ---
def manifest_intents(audio: Path = AUDIO) -> dict[str, str]:
    """Recording file name -> its expected intent."""
    manifest = json.loads((audio / "manifest.json").read_text(encoding="utf-8"))
    return {m["file"]: m["intent"] for m in manifest if m.get("intent")}


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


@functools.cache
def speech_s(wav: str, rate: int = 8000) -> float:
    return len(read_wav(Path(wav), rate)) / 2 / rate


def script(config: BenchConfig, rng: random.Random, wavs: list[Path], pacer: Pacer | None = None) -> list[Turn]:
    """`turns - 1` intent recordings that neither end nor redirect the call, then a goodbye recording; with a
    talk share, the pauses, barge-ins and added turns that reach it (bench_report.plan)."""
    intents = manifest_intents(wavs[0].parent if wavs else AUDIO)
    middle = [w for w in wavs if intents.get(w.name) not in MID_CALL_EXCLUDED] or wavs
    goodbyes = [w for w in wavs if intents.get(w.name) == GOODBYE] or [AUDIO / GOODBYE_FALLBACK]
    chosen = [rng.choice(middle) for _ in range(max(config.turns, 1) - 1)] + [rng.choice(goodbyes)]
    barge_every = config.barge_every
    if config.talk_share > 0:
        typical = statistics.median(speech_s(str(w)) for w in middle)
        extra, barge_every, pause, _ = plan(
            config.talk_share,
            [speech_s(str(w)) for w in chosen],
            typical,
            pacer or Pacer(),
            config.barge_every,
            max(config.turns, MAX_TURNS),
        )
        chosen = chosen[:-1] + [rng.choice(middle) for _ in range(extra)] + chosen[-1:]
        planned = [pause] * len(chosen)
    else:
        planned = [config.pause_s * rng.uniform(0.5, 2.5) for _ in chosen]
    turns = []
    for n, (wav, pause) in enumerate(zip(chosen, planned, strict=True), start=1):
        barge = bool(barge_every) and n % barge_every == 0 and n > 1
        turns.append(Turn(wav=str(wav), barge_in=barge, barge_in_after_s=BARGE_AFTER_S, pause_s=pause))
    return turns


async def slot(
    config: BenchConfig, index: int, wavs: list[Path], rng: random.Random, pacer: Pacer | None = None
) -> list[dict[str, Any]]:
    """One caller slot: `rounds` calls back to back."""
    await asyncio.sleep((index + rng.random()) * config.ramp_s / max(config.calls, 1))
    return [await one_call(config, index, wavs, rng, pacer) for _ in range(config.rounds)]


async def one_call(
    config: BenchConfig, index: int, wavs: list[Path], rng: random.Random, pacer: Pacer | None = None
) -> dict[str, Any]:
    """One call as the caller saw it; `completed` here is only "reached its last turn and was not hung up on
    otherwise" (the soak's rule): the bench's own rule needs the call record (bench_report.call_completed)."""
    caller = dial(config.url, config.token)
    turns = script(config, rng, wavs, pacer)
    started = time.monotonic()
    try:
        report: CallReport = await caller.run(turns, max_wait_s=20)
    except Exception as exc:  # a failed call is a result, not the end of the benchmark
        return {"index": index, "error": f"{type(exc).__name__}: {exc}", "scripted_turns": len(turns)}
    duration = time.monotonic() - started
    reached = turns[: len(report.turns)]
    spoken = sum(speech_s(t.wav or "", caller.rate) for t in reached)
    ended_ok = report.ended_by in ("caller", "closed") or report.ended_by == "hangup: completed"
    call = {
        "index": index,
        "call_id": report.call_id,
        "seconds": round(duration, 1),
        "talk_share": round(spoken / duration, 3),
        "scripted_turns": len(turns),
        "completed": len(report.turns) == len(turns) and ended_ok,
        "ended_by": report.ended_by,
        "greeting_s": report.greeting_s,
        "turns": [
            {**asdict(r), "barge_in": t.barge_in, "pause_s": round(t.pause_s, 2)}
            for r, t in zip(report.turns, reached, strict=True)
        ],
    }
    if pacer is not None:
        pacer.learn(report.greeting_s, call["turns"])
    return call


def wire(url: str) -> str:
    """The wire a URL dials: sip, pcm (16 kHz raw PCM) or twilio (8 kHz mu-law)."""
    if url.startswith(("sip:", "sips:")):
        return "sip"
    return "pcm" if urlsplit(url).path.rstrip("/").endswith("/pcm") else "twilio"


def healthz(ws_url: str) -> dict[str, Any]:
    """The gateway's /healthz (engine, settings), from its WebSocket URL; {} if it cannot be read."""
    parts = urlsplit(ws_url)
    http = urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, "/healthz", "", ""))
    try:
        with urllib.request.urlopen(http, timeout=5) as response:
            return dict(json.loads(response.read()))
    except (OSError, ValueError):
        return {}


def pin(cpus: list[int]) -> None:
    """Run the callers (this process and its threads) on these cores only: the callers' CPU budget."""
    if cpus:
        os.sched_setaffinity(0, set(cpus))


async def run(config: BenchConfig, gateway: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole bench; `gateway` is the gateway's /healthz (read from the URL when not given)."""
    if gateway is None:
        gateway = healthz(config.url) if not config.url.startswith("sip") else {}
    pin(config.caller_cpus)
    wavs = intent_wavs(config.end_silence_ms)
    usage = Usage(config.pids)  # memory before anything, the warm-up included
    sampler = asyncio.create_task(usage.sample())
    pacer = Pacer()
    if config.warmup:
        short = BenchConfig(**{**asdict(config), "rounds": 1, "turns": 2, "barge_every": 0, "warmup": False})
        await asyncio.gather(*(slot(short, i, wavs, random.Random(i), pacer) for i in range(config.calls)))
    usage.restart_cpu()
    busy = machine_busy_s()
    rng = random.Random(config.seed)
    began = time.monotonic()
    slots = await asyncio.gather(
        *(slot(config, i, wavs, random.Random(rng.random()), pacer) for i in range(config.calls))
    )
    calls = [call for placed in slots for call in placed]
    wall = time.monotonic() - began
    machine_cores = (machine_busy_s() - busy) / wall if wall > 0 else None
    sampler.cancel()
    processes = usage.report()
    if config.redis_url:
        await read_records(config.redis_url, calls, manifest_intents())
    settings = {k: v for k, v in asdict(config).items() if k != "token"}
    figures = summarise(settings, calls, processes, wall, machine_cores)
    return {
        "engine": (gateway.get("asr") or {}).get("name"),
        "wire": wire(config.url),
        **figures,
        "commit": commit(PROJECT_ROOT),
        "settings": {"bench": settings, "gateway": gateway},
    }


async def read_records(redis_url: str, calls: list[dict[str, Any]], expected: dict[str, str]) -> None:
    """Each call's record: its turns matched to the caller's (text, intent, answer), how it ended, and the
    first-audio latencies after the dialogue's answers (greeting included)."""
    from redis.asyncio import Redis

    from voice_gateway.call_store import CallStore

    redis = Redis.from_url(redis_url, socket_timeout=5)
    store = CallStore(redis)
    try:
        await asyncio.sleep(1.0)  # the last writes of calls that just ended
        for call in calls:
            if call.get("call_id"):
                call["unmatched_heard"] = match_turns(call["turns"], await store.turns(call["call_id"]), expected)
                record = await store.record(call["call_id"])
                call["record"] = {k: record.get(k) for k in ("state", "reason", "detail")}
                raw = await redis.lrange(f"hotline:call:{call['call_id']}:voice", 0, -1)
                call["voice_ms"] = [float(v) for v in raw]
    finally:
        await redis.aclose()


__all__ = ["BenchConfig", "chart", "intent_wavs", "one_call", "print_table", "run"]
