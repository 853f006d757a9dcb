"""How late a supervisor hears a live call, and how late the caller hears a person who took it over.

Against a running hotline (`./hotline up`; this reads var/run/hotline.json): for each of `--calls` calls, a
Twilio caller (8 kHz mu-law over the gateway's WebSocket) is greeted by the bot; a supervisor's browser (an
aiortc peer, as a browser on the same machine would be) listens in through the consoles' backend and the desk;
the caller says a 440 Hz tone and the time until the supervisor first hears it is one "listen" figure. Then the
supervisor takes the call over and says a 880 Hz tone: the time until the caller first hears it is one
"take-over" figure. Onset: the first 20 ms frame whose energy is mostly the tone. Prints the figures and writes
a JSON report (`--out`).

    .venv/bin/python tools/desk_latency.py --calls 5 --out docs/bench/desk-latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voice_gateway.config import Settings
from voice_gateway.console.backend import CallAction
from voice_gateway.console.redis_backend import RedisBackend
from voice_gateway.console.roles import ConsoleUser, Role
from voice_gateway.queueing import SkillQueues
from voice_gateway.testing.console_peer import ConsolePeer, tone
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn

SUPERVISOR = ConsoleUser(0, "bench-supervisor", Role.SUPERVISOR)
CALLER_HZ, SUPERVISOR_HZ = 440.0, 880.0


def onset(frames: list[tuple[float, bytes]], since: float, hz: float, rate: int) -> float | None:
    """When the first frame after `since` that is mostly a `hz` tone arrived."""
    for at, pcm in frames:
        if at < since or len(pcm) < 2 * rate // 100:
            continue
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        if np.sqrt(np.mean(samples**2)) < 300:
            continue
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / rate)
        if spectrum[np.abs(freqs - hz) < 60].sum() > 0.5 * spectrum[freqs > 80].sum():
            return at
    return None


async def one_call(url: str, backend: RedisBackend, redis: Redis) -> dict[str, float | None]:
    caller = SimulatedCaller(url)
    running = asyncio.create_task(caller.run([Turn(wait_s=20)]))
    peer = ConsolePeer()
    try:
        deadline = time.monotonic() + 15
        while await redis.hget(f"hotline:call:{caller.call_id}", "console") != b"bot":
            if time.monotonic() > deadline:
                raise RuntimeError("the call did not start")
            await asyncio.sleep(0.05)
        await peer.answered(await backend.act(SUPERVISOR, CallAction.LISTEN, caller.call_id, await peer.offer()))
        while peer.pc.connectionState != "connected":
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        said = time.monotonic()
        caller.say_pcm(tone(CALLER_HZ, 0.6, rate=caller.rate))
        await asyncio.sleep(1.5)
        heard = onset(peer.heard, said, CALLER_HZ, 16000)
        await peer.close()
        peer = ConsolePeer()
        await peer.answered(await backend.act(SUPERVISOR, CallAction.TAKEOVER, caller.call_id, await peer.offer()))
        while peer.pc.connectionState != "connected":
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        said_over = time.monotonic()
        peer.say(tone(SUPERVISOR_HZ, 0.6))
        await asyncio.sleep(1.5)
        reached = onset(caller.arrived, said_over, SUPERVISOR_HZ, caller.rate)
        await backend.act(SUPERVISOR, CallAction.HANGUP, caller.call_id, {})
        return {
            "listen_ms": round((heard - said) * 1000, 1) if heard else None,
            "takeover_voice_ms": round((reached - said_over) * 1000, 1) if reached else None,
        }
    finally:
        await peer.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def summary(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = Settings.from_env()
    runtime = json.loads((settings.var_dir / "run" / "hotline.json").read_text())
    redis = Redis.from_url(runtime["redis_url"], socket_timeout=3)
    backend = RedisBackend(redis, SkillQueues(redis))
    url = f"{runtime['gateway_url']}/twilio?token={runtime['gateway_token']}"
    results = []
    for n in range(args.calls):
        result = await one_call(url, backend, redis)
        print(f"call {n + 1}: {result}", flush=True)
        results.append(result)
    report = {
        "what": "caller's tone -> supervisor's browser (listen-in); supervisor's tone -> caller (after take-over)",
        "wire": "Twilio Media Streams (8 kHz mu-law) caller, aiortc peer as the browser, loopback",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        or "unknown",
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "calls": results,
        "listen": summary([r["listen_ms"] for r in results if r["listen_ms"] is not None]),
        "takeover_voice": summary([r["takeover_voice_ms"] for r in results if r["takeover_voice_ms"] is not None]),
    }
    print(json.dumps({k: report[k] for k in ("listen", "takeover_voice")}, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    await redis.aclose()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
