"""What the dialogue side costs per turn and per call: Rasa's and the action server's CPU, Redis's commands and
memory. The figures deploy/README.md ("Capacity") sizes Rasa and Redis from.

Against a running hotline (`./hotline up`; this reads var/run/hotline.json: Redis, Rasa and its token, the process
ids). Two ways to make the load:

- `rasa`: text conversations straight to Rasa's REST channel, as the gateway talks to it (sender = a call id, one
  message per caller turn): a greeting, `--turns` sentences of the development split (tests/data/nlu_dev.yml)
  and a goodbye, `--concurrency` conversations at once. Per conversation it also reads how many bytes of Redis
  its keys hold (MEMORY USAGE of every key naming the sender: Rasa's tracker, kept a day).
- `around -- COMMAND...`: runs the command (e.g. `./hotline bench --calls 4 --rounds 2`) and counts what the whole
  hotline did meanwhile, the gateway included; calls and caller turns come from the gateway's own /metrics
  (hotline_calls_total, hotline_turn_gap_seconds_count).

Either way: CPU seconds of the Rasa, action server, gateway and Redis process groups (/proc), Redis commands and
their server time (INFO commandstats) and used memory (INFO memory), before and after; the report divides them by
the turns and the calls. Conversations are named `load-...`; their turns also reach the trainer's inbox.

    .venv/bin/python tools/dialogue_load.py rasa --conversations 40 --concurrency 8 --turns 4 -o docs/bench/x.json
    .venv/bin/python tools/dialogue_load.py around -o docs/bench/y.json -- ./hotline bench --calls 4 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.testing.bench import group_usage
from voice_gateway.testing.bench_report import commit, machine

DEV_SPLIT = PROJECT_ROOT / "tests" / "data" / "nlu_dev.yml"
GREETING = "你好"
PROCESSES = ("rasa", "actions", "gateway", "redis")  # and gateway-2, ... of `hotline up --gateways N`


def _per(value: float, n: int) -> float | None:
    return round(value / n, 4) if n else None


def dev_sentences(path: Path = DEV_SPLIT) -> tuple[list[str], list[str]]:
    """(caller sentences of every intent but goodbye, the goodbye sentences) of the development split."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    asks, byes = [], []
    for block in data["nlu"]:
        lines = [line.strip()[2:].strip() for line in block["examples"].splitlines() if line.strip().startswith("- ")]
        (byes if block["intent"] == "goodbye" else asks).extend(lines)
    return asks, byes


@dataclass
class Snapshot:
    """What the hotline had used up to one moment."""

    at: float
    cpu_s: dict[str, float]
    commands: dict[str, int]  # Redis command -> calls
    command_usec: int  # Redis's own time in commands, microseconds
    used_memory: int

    @classmethod
    def take(cls, client: redis.Redis, pids: dict[str, int]) -> Snapshot:
        stats = client.info("commandstats")
        commands = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        usec = sum(int(v["usec"]) for v in stats.values())
        cpu = {name: group_usage(pid)[0] for name, pid in pids.items() if name.startswith(PROCESSES)}
        return cls(time.monotonic(), cpu, commands, usec, int(client.info("memory")["used_memory"]))


def difference(before: Snapshot, after: Snapshot, turns: int, calls: int) -> dict[str, Any]:
    """The load between two snapshots, in all and per turn and per call."""
    wall = after.at - before.at
    cpu = {name: round(after.cpu_s[name] - before.cpu_s.get(name, 0.0), 3) for name in after.cpu_s}
    commands = {k: v - before.commands.get(k, 0) for k, v in after.commands.items() if v != before.commands.get(k, 0)}
    commands.pop("info", None)  # this tool's own snapshots
    total = sum(commands.values())
    return {
        "wall_s": round(wall, 1),
        "turns": turns,
        "calls": calls,
        "cpu_s": cpu,
        "cpu_s_per_turn": {name: _per(s, turns) for name, s in cpu.items()},
        "cpu_s_per_call": {name: _per(s, calls) for name, s in cpu.items()},
        "cores": {name: round(s / wall, 4) for name, s in cpu.items()} if wall > 0 else {},
        "redis_commands": total,
        "redis_commands_per_turn": _per(total, turns),
        "redis_commands_per_call": _per(total, calls),
        "redis_command_usec_per_turn": _per(after.command_usec - before.command_usec, turns),
        "redis_by_command": dict(sorted(commands.items(), key=lambda kv: -kv[1])),
        "redis_used_memory_delta_bytes": after.used_memory - before.used_memory,
    }


@dataclass
class Conversations:
    """Scripted text conversations against Rasa's REST channel."""

    url: str
    conversations: int
    concurrency: int
    turns: int
    seed: int = 12333
    latencies_ms: list[float] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)

    async def run(self) -> int:
        """All the conversations; returns the caller turns sent."""
        asks, byes = dev_sentences()
        rng = random.Random(self.seed)
        scripts = [[GREETING, *rng.sample(asks, self.turns), rng.choice(byes)] for _ in range(self.conversations)]
        gate = asyncio.Semaphore(self.concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def one(script: list[str]) -> int:
                sender = f"load-{uuid.uuid4().hex[:12]}"
                self.senders.append(sender)
                async with gate:
                    for text in script:
                        began = time.perf_counter()
                        body = {"sender": sender, "message": text}
                        async with http.post(f"{self.url}/webhooks/rest/webhook", json=body) as response:
                            response.raise_for_status()
                            await response.read()
                        self.latencies_ms.append((time.perf_counter() - began) * 1000)
                return len(script)

            return sum(await asyncio.gather(*(one(script) for script in scripts)))


def conversation_bytes(client: redis.Redis, senders: list[str]) -> dict[str, float]:
    """Bytes Redis holds per conversation: every key that names its sender (the tracker, kept for a day)."""
    sizes = []
    for sender in senders:
        keys = list(client.scan_iter(match=f"*{sender}*", count=1000))
        sizes.append(sum(int(client.memory_usage(key) or 0) for key in keys))
    if not sizes:
        return {}
    return {"mean": round(statistics.fmean(sizes)), "max": max(sizes), "conversations": len(sizes)}


def metric_total(metrics_url: str, name: str) -> float:
    """The sum of one Prometheus metric's samples (all labels) on the gateway's /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def read_runtime(settings: Settings) -> dict[str, Any]:
    path = settings.var_dir / "run" / "hotline.json"
    try:
        return json.loads(path.read_text())
    except OSError:
        raise SystemExit(f"no running hotline ({path} is missing): start ./hotline up first") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", type=Path, help="write the JSON report here too")
    sub = parser.add_subparsers(dest="mode", required=True)
    text = sub.add_parser("rasa", help="text conversations to Rasa's REST channel")
    text.add_argument("--conversations", type=int, default=40)
    text.add_argument("--concurrency", type=int, default=8)
    text.add_argument("--turns", type=int, default=4, help="development-split sentences between greeting and goodbye")
    around = sub.add_parser("around", help="run a command (a hotline bench) and count what the hotline did")
    around.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    runtime = read_runtime(settings)
    pids = {name: int(pid) for name, pid in runtime.get("pids", {}).items()}
    client = redis.Redis.from_url(runtime["redis_url"], socket_timeout=10)
    report: dict[str, Any] = {"mode": args.mode, "commit": commit(PROJECT_ROOT), "machine": machine()}
    if args.mode == "rasa":
        load = Conversations(runtime["rasa_url"], args.conversations, args.concurrency, args.turns)
        before = Snapshot.take(client, pids)
        turns = asyncio.run(load.run())
        after = Snapshot.take(client, pids)
        report |= difference(before, after, turns, args.conversations)
        report["settings"] = {"conversations": args.conversations, "concurrency": args.concurrency, "turns": args.turns}
        lat = sorted(load.latencies_ms)
        if lat:
            report["turn_ms"] = {"p50": round(lat[len(lat) // 2], 1), "p95": round(lat[int(len(lat) * 0.95)], 1)}
        report["redis_bytes_per_conversation"] = conversation_bytes(client, load.senders)
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command or not runtime.get("gateway_url"):
            parser.error("around needs a command after -- and a hotline with its gateway")
        metrics_url = runtime["gateway_url"].replace("ws://", "http://", 1) + "/metrics"
        calls0 = metric_total(metrics_url, "hotline_calls_total")
        turns0 = metric_total(metrics_url, "hotline_turn_gap_seconds_count")
        before = Snapshot.take(client, pids)
        returncode = subprocess.run(command, check=False).returncode
        after = Snapshot.take(client, pids)
        calls = int(metric_total(metrics_url, "hotline_calls_total") - calls0)
        turns = int(metric_total(metrics_url, "hotline_turn_gap_seconds_count") - turns0)
        report |= difference(before, after, turns, calls)
        report["settings"] = {"command": command, "returncode": returncode}
    output = json.dumps(report, ensure_ascii=False, indent=1)
    print(output)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(output + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
