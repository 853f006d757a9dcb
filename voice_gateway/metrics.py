"""Prometheus metrics of the gateway (served at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0)

ACTIVE_CALLS = Gauge("hotline_active_calls", "Calls in progress")
CALLS = Counter("hotline_calls_total", "Calls accepted", ["transport"])
REFUSED = Counter("hotline_connections_refused_total", "Connections refused", ["reason"])
DROPPED_FRAMES = Counter("hotline_dropped_frames_total", "Caller audio frames dropped because a call flooded")
ENGINE_FAILURES = Counter(
    "hotline_engine_failures_total", "Failures of a part a call depends on (the caller was apologised to)", ["part"]
)
STORE_ERRORS = Counter("hotline_store_errors_total", "Call-record writes to Redis that failed (and were retried)")
LOST_WRITES = Counter("hotline_lost_record_writes_total", "Call-record writes given up (queue full or call ended)")
STAGE = Histogram("hotline_stage_seconds", "Per-turn stage latency", ["stage"], buckets=_LATENCY_BUCKETS)
TURN_GAP = Histogram(
    "hotline_turn_gap_seconds", "End of caller speech to first agent audio out", buckets=_LATENCY_BUCKETS
)
BARGE_IN = Histogram(
    "hotline_barge_in_stop_seconds",
    "Caller speech detected to agent audio stopped",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0),
)
LOOP_LAG = Histogram(
    "hotline_event_loop_lag_seconds",
    "How late the gateway's event loop wakes a 100 ms timer (a busy loop delays every call)",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)

TTS_FALLBACKS = Counter(
    "hotline_tts_fallbacks_total",
    "Sentences the neural voice could not speak in time (worker down, error, timeout): espeak-ng spoke them",
    ["reason"],
)


async def watch_event_loop(period_s: float = 0.1) -> None:
    """Measure event-loop lag for as long as the gateway runs."""
    import asyncio
    import time

    while True:
        before = time.monotonic()
        await asyncio.sleep(period_s)
        LOOP_LAG.observe(max(0.0, time.monotonic() - before - period_s))
