"""`hotline bench --soak MINUTES`: calls placed back to back for a long while, and what the gateway keeps of them.

`calls` caller slots place calls one after another until the time is up (each call: the greeting, intent
recordings, a barge-in, as `hotline bench` places them). First the same calls run for a warm-up (default 2 min):
the recognizers' caches and pools fill to their working size then, so what grows afterwards is what the gateway
keeps. The gateway process is read when idle, after the warm-up once its calls have ended, and again once every
counted call has ended and a settle period has passed: resident memory, open file descriptors, threads (from /proc)
and asyncio tasks (from /healthz). A leak shows as growth; a failed call as an error or a call that did not reach
its last turn. A benchmark, not a test: its figures go into the closing notes and docs/bench.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import urllib.request
from dataclasses import asdict
from typing import Any

from voice_gateway.testing.bench import BenchConfig, intent_wavs, one_call

SETTLE_S = 15.0  # after the last call: what is still held then is kept, not in use
SETTLE_MAX_S = 90.0  # ...or up to this long, while more tasks run than at the start (calls still winding down)
SAMPLE_S = 30.0  # the process is also read this often while the calls run: a leak grows steadily, a cache levels off


def process_state(pid: int, health_url: str) -> dict[str, Any]:
    """The gateway process as the kernel and the gateway itself see it."""
    with open(f"/proc/{pid}/status", encoding="ascii") as proc:
        status = dict(line.split(":", 1) for line in proc.read().splitlines() if ":" in line)
    with urllib.request.urlopen(health_url, timeout=5) as response:
        health = json.loads(response.read())
    return {
        "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "tasks": health.get("tasks"),
        "task_kinds": health.get("task_kinds"),
        "calls": health.get("calls"),
    }


async def settled(start: dict[str, Any], gateway_pid: int, health_url: str) -> dict[str, Any]:
    """The gateway once the calls have wound down: after SETTLE_S, and then as soon as no more tasks run than at
    the start (a task that outlives its call by seconds is not a leak; one still there after SETTLE_MAX_S is)."""
    await asyncio.sleep(SETTLE_S)
    waited = SETTLE_S
    state = await asyncio.to_thread(process_state, gateway_pid, health_url)
    while (state["tasks"] or 0) > (start["tasks"] or 0) and waited < SETTLE_MAX_S:
        await asyncio.sleep(2.0)
        waited += 2.0
        state = await asyncio.to_thread(process_state, gateway_pid, health_url)
    return {**state, "settled_after_s": waited}


async def back_to_back(config: BenchConfig, seconds: float, rng: random.Random) -> list[dict[str, Any]]:
    """`config.calls` slots placing calls one after another for `seconds`; every call placed, in order."""
    wavs = intent_wavs(config.end_silence_ms)
    deadline = time.monotonic() + seconds

    async def slot(index: int) -> list[dict[str, Any]]:
        own = random.Random(rng.random())
        await asyncio.sleep(own.random() * config.ramp_s)
        placed = []
        while time.monotonic() < deadline:
            placed.append(await one_call(config, index, wavs, own))
        return placed

    return [call for placed in await asyncio.gather(*(slot(i) for i in range(config.calls))) for call in placed]


async def soak(
    config: BenchConfig, minutes: float, gateway_pid: int, health_url: str, warmup_minutes: float = 2.0
) -> dict[str, Any]:
    rng = random.Random(config.seed)
    idle = process_state(gateway_pid, health_url)
    warmed = await back_to_back(config, max(warmup_minutes * 60, 1.0), rng)
    start = await settled(idle, gateway_pid, health_url)
    samples: list[dict[str, Any]] = []

    async def sample() -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            state = await asyncio.to_thread(process_state, gateway_pid, health_url)
            samples.append({"at_s": round(time.monotonic() - began, 1), **state})

    began = time.monotonic()
    sampler = asyncio.create_task(sample())
    calls = await back_to_back(config, minutes * 60, rng)
    wall = time.monotonic() - began
    sampler.cancel()
    end = await settled(start, gateway_pid, health_url)
    failed = [c for c in calls if "error" in c or not c.get("completed")]
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "token"},
        "minutes": minutes,
        "warmup_minutes": warmup_minutes,
        "warmup_calls": len(warmed),
        "warmup_failed": sum(1 for c in warmed if "error" in c or not c.get("completed")),
        "idle": idle,
        "warmup_growth_pct": round(100 * (start["rss_mb"] - idle["rss_mb"]) / idle["rss_mb"], 2),
        "wall_s": round(wall, 1),
        "calls_placed": len(calls),
        "calls_failed": len(failed),
        "failures": [c.get("error") or c.get("ended_by") for c in failed][:20],
        "start": start,
        "end": end,
        "rss_growth_pct": round(100 * (end["rss_mb"] - start["rss_mb"]) / start["rss_mb"], 2),
        "rss_second_half_growth_pct": _second_half_growth(samples),
        "samples": samples,
        "fds_growth": end["fds"] - start["fds"],
        "threads_growth": end["threads"] - start["threads"],
        "tasks_growth": (end["tasks"] or 0) - (start["tasks"] or 0),
    }


def _second_half_growth(samples: list[dict[str, Any]]) -> float | None:
    """RSS growth over the second half of the run (calls in progress at both ends): a leak keeps growing here,
    caches that fill while the first calls explore them do not."""
    if len(samples) < 4:
        return None
    middle, last = samples[len(samples) // 2], samples[-1]
    return round(100 * (last["rss_mb"] - middle["rss_mb"]) / middle["rss_mb"], 2)
