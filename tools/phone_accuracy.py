"""First-turn intent accuracy through the real gateway, per telephone channel (issue 10).

Each recording of a split (dev: the intent WAVs the recogniser was tuned on; eval: the held-out ones) is rendered
through each channel of voice_gateway/testing/channel.py and spoken as the first caller turn of a real call, after
the greeting: /pcm at 16 kHz for `clean`, /pcm at 8 kHz for `alaw` (the A-law samples as they are), /twilio
(8 kHz mu-law) for the rest. What the gateway recognised and the intent the dialogue understood are read from the
call's record in Redis. Per channel: intent accuracy, recognition CER against the manifest text (both normalised
as the recogniser normalises callers, punctuation stripped), empty recognitions, and the misses. Writes
docs/bench/phone-accuracy-<timestamp>-<split>.json and prints a table.

    ./hotline up &   # then:
    .venv/bin/python tools/phone_accuracy.py --split eval [--channels clean,phone,babble] [--concurrency 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from voice_gateway.audio import frames
from voice_gateway.call_store import CallStore
from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.testing import channel
from voice_gateway.testing.text_errors import cer
from voice_gateway.testing.ws_caller import PcmCaller, SimulatedCaller, read_wav

AUDIO = PROJECT_ROOT / "tests" / "audio"
GREETING_DONE_S = 0.6  # no agent audio for this long after the greeting began: the caller speaks
SETTLE_S = 0.8  # after the first answer, wait this long for a second one (the turn re-asked, joined)
ANSWER_TIMEOUT_S = 45.0  # a loaded 2-core machine can take this long to recognise and answer


def split_entries(split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The manifest's recordings of `split` ("dev" or "eval"), every n-th of them if `limit` asks for fewer."""
    manifest = json.loads((AUDIO / "manifest.json").read_text(encoding="utf-8"))
    entries = [e for e in manifest if e.get("split") == split]
    if not entries:
        raise ValueError(f"no recordings of split {split!r} in the manifest")
    if limit and limit < len(entries):
        step = len(entries) / limit
        entries = [entries[int(i * step)] for i in range(limit)]
    return entries


def caller_for(base_url: str, token: str, name: str) -> SimulatedCaller:
    """The simulated caller for channel `name`'s wire (channel.wire), at its sample rate."""
    path, rate = channel.wire(name)
    url = f"{base_url}{path}?token={token}" if token else f"{base_url}{path}"
    caller = PcmCaller(url) if path == "/pcm" else SimulatedCaller(url)
    caller.rate = rate
    return caller


async def first_turn(caller: SimulatedCaller, pcm: bytes, store: CallStore) -> dict[str, Any]:
    """One call: hear the greeting, say `pcm` (at the caller's rate), wait for the answer's record, hang up."""
    async with caller._connect() as ws:
        await caller._open(ws)
        tasks = [asyncio.create_task(caller._receive(ws)), asyncio.create_task(caller._microphone(ws))]
        try:
            t0 = time.monotonic()
            await _greeting(caller)
            greeted_at = time.monotonic()
            for frame in frames(pcm, caller.rate):
                await caller._speech.put(frame)
            await caller._speech.join()
            spoken_at = time.monotonic()
            records = await _answered(caller, store, spoken_at)
            if not caller._closed.is_set():
                await caller._stop(ws)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    heard = [r.get("caller") or "" for r in records if r.get("kind") == "heard"]
    answers = [r for r in records if r.get("kind") == "answer" and r.get("after") == "speech"]
    return {
        "recognised": "，".join(h for h in heard if h),
        "segments": len(heard),  # 0: nothing recognised within ANSWER_TIMEOUT_S (a timeout, not an empty text)
        "intent": answers[-1].get("intent") if answers else None,
        "bot": answers[-1].get("bot") if answers else None,
        "greeting_s": round(greeted_at - t0, 2),
        "answered_s": round(time.monotonic() - spoken_at, 2),  # end of the caller's audio to the answer's record
    }


async def _greeting(caller: SimulatedCaller, max_wait_s: float = 20.0) -> None:
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s and not caller._closed.is_set():
        spoke = caller._last_agent_audio > started
        if spoke and time.monotonic() - caller._last_agent_audio > GREETING_DONE_S:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("no greeting")


async def _answered(caller: SimulatedCaller, store: CallStore, since: float) -> list[dict[str, Any]]:
    """The call's records once its first spoken turn is answered (or heard as nothing, or timed out)."""
    answered_at = None
    records: list[dict[str, Any]] = []
    while time.monotonic() - since < ANSWER_TIMEOUT_S and not caller._closed.is_set():
        records = await store.turns(caller.call_id)
        heard = [r for r in records if r.get("kind") == "heard"]
        if any(r.get("kind") == "answer" and r.get("after") == "speech" and "intent" in r for r in records):
            answered_at = answered_at or time.monotonic()
            if time.monotonic() - answered_at >= SETTLE_S:
                break
        elif heard and not any(r.get("caller") for r in heard) and time.monotonic() - since > 4.0:
            break  # heard as nothing: no turn, no answer
        await asyncio.sleep(0.2)
    return records


async def measure(
    base_url: str,
    token: str,
    redis_url: str,
    entries: list[dict[str, Any]],
    channels: list[str],
    concurrency: int = 3,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per channel: accuracy, mean CER, empty recognitions and the misses, over `entries`."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    store = CallStore(redis)
    pcm16 = {e["file"]: read_wav(AUDIO / e["file"], channel.RATE) for e in entries}
    talkers = list(pcm16.values())
    slots = asyncio.Semaphore(concurrency)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in channels}

    def rendered(name: str, entry: dict[str, Any]) -> bytes:
        others = [t for f, t in pcm16.items() if f != entry["file"]] or talkers
        return channel.render(name, pcm16[entry["file"]], talkers=others)[0]

    # all rendered before the first call: rendering while calls run would hold up their 20 ms frames
    lines = {(name, e["file"]): rendered(name, e) for name in channels for e in entries}

    async def one(name: str, entry: dict[str, Any]) -> None:
        pcm = lines[name, entry["file"]]
        async with slots:
            try:
                got = await first_turn(caller_for(base_url, token, name), pcm, store)
            except Exception as exc:  # a call that failed counts as a miss, with the reason
                got = {"recognised": "", "segments": 0, "intent": None, "bot": None, "error": repr(exc)[:200]}
        got |= {"file": entry["file"], "text": entry["text"], "expected": entry["intent"]}
        got["cer"] = round(cer(entry["text"], got["recognised"]), 3)
        results[name].append(got)
        if progress:
            mark = "ok  " if got["intent"] == entry["intent"] else "MISS"
            print(f"{name:12} {mark} {entry['file']:40} {got['recognised']!r} -> {got['intent']}", file=sys.stderr)

    try:
        await asyncio.gather(*(one(name, entry) for name in channels for entry in entries))
    finally:
        await redis.aclose()
    return {name: summarise(rows) for name, rows in results.items()}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    right = [r for r in rows if r["intent"] == r["expected"]]
    return {
        "files": len(rows),
        "right": len(right),
        "accuracy": round(len(right) / max(len(rows), 1), 3),
        "cer": round(sum(r["cer"] for r in rows) / max(len(rows), 1), 3),
        "empty": sum(1 for r in rows if r["segments"] and not r["recognised"]),
        "timeouts": sum(1 for r in rows if not r["segments"] and not r.get("error")),
        "errors": sum(1 for r in rows if r.get("error")),
        "misses": sorted(
            (
                {k: r.get(k) for k in ("file", "text", "recognised", "intent", "expected", "error")}
                for r in rows
                if r["intent"] != r["expected"]
            ),
            key=lambda r: r["file"],
        ),
        "calls": sorted(rows, key=lambda r: r["file"]),
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"{'channel':13} {'accuracy':>9} {'right':>8} {'CER':>6} {'empty':>6} {'lost':>5}  what"]
    for name, row in report["channels"].items():
        right = f"{row['right']}/{row['files']}"
        what = channel.CHANNELS[name]
        lost = row["timeouts"] + row["errors"]
        lines.append(
            f"{name:13} {row['accuracy']:9.3f} {right:>8} {row['cer']:6.3f} {row['empty']:6d} {lost:5d}  {what}"
        )
    return "\n".join(lines)


def _commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _started(runtime: dict[str, Any]) -> str | None:
    """When the gateway process started (local time), from /proc; None if it cannot be told."""
    try:
        since = Path(f"/proc/{int(runtime['pids']['gateway'])}").stat().st_ctime
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))


def _health(base_url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(base_url.replace("ws", "http", 1) + "/healthz", timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "eval"], default="eval")
    parser.add_argument("--channels", default=",".join(channel.CHANNELS), help="comma-separated (default: all)")
    parser.add_argument("--concurrency", type=int, default=3, help="calls at once (2-4 on 2 cores)")
    parser.add_argument("--limit", type=int, help="only this many recordings of the split, spread over it")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "bench")
    args = parser.parse_args()
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    if unknown := [c for c in channels if c not in channel.CHANNELS]:
        parser.error(f"unknown channels {unknown} (channels: {', '.join(channel.CHANNELS)})")
    runtime = json.loads((Settings.from_env().var_dir / "run" / "hotline.json").read_text())
    base_url = runtime["gateway_url"]
    health = _health(base_url)
    entries = split_entries(args.split, args.limit)
    commit = _commit()  # the tree now; the gateway runs the code it was started with (gateway_started)
    started = time.monotonic()
    print(f"{len(entries)} recordings x {len(channels)} channels, {args.concurrency} calls at once", file=sys.stderr)
    results = asyncio.run(
        measure(base_url, runtime.get("gateway_token", ""), runtime["redis_url"], entries, channels, args.concurrency)
    )
    report = {
        "commit": commit,
        "gateway_started": _started(runtime),
        "split": args.split,
        "engine": health.get("asr", {}),
        "end_silence_ms": health.get("end_silence_ms"),
        "recordings": len(entries),
        "concurrency": args.concurrency,
        "seconds": round(time.monotonic() - started, 1),
        "channels": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"phone-accuracy-{time.strftime('%Y%m%d-%H%M%S')}-{args.split}.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(table(report))
    print(f"report: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
