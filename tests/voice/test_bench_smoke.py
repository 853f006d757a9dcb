"""`hotline bench`, bounded: two concurrent Twilio calls of one turn each against the session's gateway, so the
benchmark's own code (callers, the usage sampler, the summary, the voice latencies read from Redis, the table)
keeps working between real benchmark runs. The figures are printed, not held to a bound."""

from __future__ import annotations

from tests.voice.conftest import VoiceGateway
from voice_gateway.testing import bench


async def test_a_small_bench_run_reports_turn_gaps_and_the_voice_latency(gateway: VoiceGateway) -> None:
    config = bench.BenchConfig(
        url=gateway.url("/twilio", token=""),
        token=gateway.token,
        calls=2,
        rounds=1,
        turns=1,
        barge_every=0,
        ramp_s=1.0,
        pids={"gateway": gateway.process.proc.pid} if gateway.process.proc else {},
        redis_url=gateway.redis_url,
        warmup=False,
    )
    result = await bench.run(config)
    summary = result["summary"]
    print("\n" + bench.print_table(result))
    assert summary["errors"] == [] and summary["completed"] == 2, summary
    assert summary["turn_gaps_measured"] >= 1 and summary["turn_gap_ms"]["p50"] > 0
    # every answer's first sound is timed after the dialogue's answer: the greeting and each caller turn
    assert summary["voice_first_audio_ms"]["n"] >= 2 and summary["voice_first_audio_ms"]["p50"] > 0, summary
    assert summary["cpu_cores"]["server"] > 0
