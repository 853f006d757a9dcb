"""What a call's bridge costs: CPU per bridged 20 ms frame, for the shapes a call takes.

    .venv/bin/python tools/bridge_cost.py [--frames 5000]

Each shape runs `Bridge.tick` over real frames (tones) with in-memory participants, measuring process CPU time
(time.process_time, one thread). Printed: microseconds of CPU per frame and the share of one core per call
(a call ticks 50 times a second). Last, `--calls` bridges run on their real 20 ms clocks at once with the bot
talking, which adds the event loop's cost of waking each clock. The figures in docs/voice.md come from this.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from voice_gateway.bridge import Bridge, Pacing, Role


class Leg:
    wire = "bench"

    def __init__(self, rate: int) -> None:
        self.sample_rate = rate
        self.pacing = Pacing(lead_frames=0, send_silence=False)

    async def send_audio(self, frame: bytes | None) -> None:
        pass

    async def clear(self) -> None:
        pass


class Speaker:
    """A participant that says a tone every frame and throws away what it hears."""

    def __init__(self, role: Role, rate: int, hz: float, speaks: bool = True) -> None:
        self.role, self.sample_rate = role, rate
        n = rate // 50
        self.frame = (8000 * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype("<i2").tobytes() if speaks else None

    def hear(self, pcm: bytes) -> None:
        pass

    def speak(self, due: float) -> bytes | None:
        return self.frame

    @property
    def active(self) -> bool:
        return True


SHAPES = {
    "bot alone (8 kHz caller)": (8000, []),
    "agent in the browser (48 kHz), bot detached": (8000, [(Role.AGENT, 48000, 700.0, True)]),
    "agent + supervisor listening (both 48 kHz)": (
        8000,
        [(Role.AGENT, 48000, 700.0, True), (Role.MONITOR, 48000, 0, False)],
    ),
    "agent + whisper + listener (48 kHz)": (
        8000,
        [(Role.AGENT, 48000, 700.0, True), (Role.COACH, 48000, 900.0, True), (Role.MONITOR, 48000, 0, False)],
    ),
    "wideband caller (16 kHz), agent at 48 kHz": (16000, [(Role.AGENT, 48000, 700.0, True)]),
}


async def measure(rate: int, people: list[tuple[Role, int, float, bool]], frames: int) -> float:
    leg = Leg(rate)
    bridge = Bridge(leg)  # type: ignore[arg-type]
    bridge.attach_bot(Speaker(Role.BOT, rate, 440.0))
    if people:
        bridge.detach_bot() if any(r is Role.AGENT for r, *_ in people) else None
    for role, prate, hz, speaks in people:
        bridge.join(Speaker(role, prate, hz, speaks))
    caller = (8000 * np.sin(2 * np.pi * 300 * np.arange(rate // 50) / rate)).astype("<i2").tobytes()
    for i in range(50):  # warm-up: resamplers and numpy paths
        bridge.from_caller(caller)
        await bridge.tick(i * 0.02)
    start = time.process_time()
    for i in range(frames):
        bridge.from_caller(caller)
        await bridge.tick(i * 0.02)
    return (time.process_time() - start) / frames


async def measure_clock(calls: int, seconds: float) -> float:
    """`calls` bridges on their real 20 ms clocks, the bot talking all the time: CPU seconds per call-second."""
    bridges = []
    for _ in range(calls):
        bridge = Bridge(Leg(8000))  # type: ignore[arg-type]
        bridge.attach_bot(Speaker(Role.BOT, 8000, 440.0))
        bridges.append(bridge)
    start, wall = time.process_time(), time.monotonic()
    for bridge in bridges:
        bridge.start()
    await asyncio.sleep(seconds)
    for bridge in bridges:
        await bridge.close()
    return (time.process_time() - start) / (calls * (time.monotonic() - wall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=20, help="bridges on real clocks at once")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    results = {}
    for name, (rate, people) in SHAPES.items():
        per_frame = asyncio.run(measure(rate, people, args.frames))
        results[name] = {"us_per_frame": round(per_frame * 1e6, 1), "core_share_per_call": round(per_frame * 50, 4)}
    clock = asyncio.run(measure_clock(args.calls, args.seconds))
    results["clock"] = {"calls": args.calls, "core_share_per_call": round(clock, 4)}
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
        return
    print(f"{'shape':48} {'CPU per frame':>14} {'cores per call':>15}")
    for name, r in results.items():
        if name != "clock":
            print(f"{name:48} {r['us_per_frame']:>11.1f} us {r['core_share_per_call']:>15.4f}")
    print(f"{f'the 20 ms clock with the tick, {args.calls} calls at once':48} {'':>14} {clock:>15.4f}")


if __name__ == "__main__":
    main()
