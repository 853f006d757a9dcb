"""`hotline bench`, bounded: two concurrent Twilio calls of one round each (intents, then a goodbye; at the default
talk share of 0.4 the callers speak over the answers and take more turns) against the session's gateway, so the
benchmark's own code (callers, the usage sampler, the call records read from Redis, the summary, the table) keeps
working between real benchmark runs. The figures are printed and checked for sense, not held to a bound."""

from __future__ import annotations

import json

from tests.voice.conftest import VoiceGateway
from voice_gateway.testing import bench

TOP_LEVEL = (
    "engine",
    "wire",
    "calls",
    "talk_share",
    "placed",
    "completed",
    "understood_share",
    "turn_gap_ms",
    "barge_in_ms",
    "cpu_cores_per_call",
    "rss_mb_per_call",
    "commit",
    "settings",
    "machine",
    "shared_cores",
)


async def test_a_small_bench_run_reports_understanding_turn_gaps_and_barge_ins(gateway: VoiceGateway) -> None:
    config = bench.BenchConfig(
        url=gateway.url("/twilio", token=""),
        token=gateway.token,
        calls=2,
        rounds=1,
        turns=2,
        barge_every=2,
        ramp_s=1.0,
        pids={"gateway": gateway.process.proc.pid} if gateway.process.proc else {},
        redis_url=gateway.redis_url,
        warmup=False,
    )
    result = await bench.run(config)
    print("\n" + bench.print_table(result))
    print(json.dumps({k: result[k] for k in TOP_LEVEL}, ensure_ascii=False, indent=1))
    summary = result["summary"]
    assert [k for k in TOP_LEVEL if k not in result] == []
    assert summary["errors"] == [] and result["placed"] == 2 and result["calls"] == 2, summary
    assert result["engine"] == "whisper" and result["wire"] == "twilio"
    assert 0 <= result["understood_share"] <= 1
    assert result["placed"] >= result["completed"] >= 0
    barge = result["barge_in_ms"]
    assert barge["attempted"] >= 1 and barge["attempted"] >= barge["stopped"], barge
    assert 0 < result["talk_share"] < 1
    assert result["turn_gap_ms"]["p50"] > 0 and result["cpu_cores_per_call"] > 0
    assert result["commit"].split("+")[0] and len(result["commit"].split("+")[0]) == 40
    assert result["machine"]["cpu_count"] >= 1 and "same machine" in result["shared_cores"]
    assert result["settings"]["bench"]["talk_share"] == 0.4 and "token" not in result["settings"]["bench"]
    assert result["settings"]["gateway"].get("asr", {}).get("name") == "whisper"
    # each spoken turn carries what the gateway recorded for it and the recording's intent
    for call in result["call_list"]:
        keys = ("seconds", "greeting_s", "talk_share", "ended_by", "record")
        timing = [(t["turn_gap_ms"], t["agent_audio_s"], t["barge_in"]) for t in call["turns"]]
        print({k: call.get(k) for k in keys}, timing)
    turns = [t for c in result["call_list"] for t in c["turns"]]
    assert all({"said", "expected", "recognised", "intent", "understood"} <= t.keys() for t in turns), turns
    assert all(t["expected"] for t in turns) and any(t["recognised"] for t in turns), turns
    assert all(len(c["turns"]) >= 2 and c["turns"][-1]["expected"] == "goodbye" for c in result["call_list"])
    # every answer's first sound is timed after the dialogue's answer: the greeting and each caller turn
    assert summary["voice_first_audio_ms"]["n"] >= 2 and summary["voice_first_audio_ms"]["p50"] > 0, summary
