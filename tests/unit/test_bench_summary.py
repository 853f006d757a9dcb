"""The bench's figures from hand-made call records: turns matched to the record, understood share, the completed
rule, every barge-in counted, the talk-share pauses, percentiles, and the report's top-level fields."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from voice_gateway.testing import bench_report as report
from voice_gateway.testing.bench import BenchConfig, script
from voice_gateway.testing.bench_report import (
    MAX_PAUSE_S,
    MIN_PAUSE_S,
    Pacer,
    barge_ins,
    barged_answers,
    call_completed,
    match_turns,
    percentile,
    plan,
    understood_share,
)

EXPECTED = {"a.wav": "card_loss_report", "b.wav": "job_search", "bye.wav": "goodbye"}


def heard(seq: int, text: str) -> dict[str, Any]:
    return {"kind": "heard", "seq": seq, "caller": text, "confidence": 0.9, "engine": "whisper"}


def answer(seq: int, intent: str, bot: str = "好的", after: str = "speech") -> dict[str, Any]:
    return {"kind": "answer", "after": after, "seq": seq, "bot": bot, "intent": intent, "dialogue_ms": 80.0}


def turn(said: str, *, barge: bool = False, stop_ms: float | None = None) -> dict[str, Any]:
    return {"said": said, "turn_gap_ms": 900.0, "barge_in_stop_ms": stop_ms, "barge_in": barge}


def test_turns_take_text_intent_and_answer_from_the_record_in_order() -> None:
    turns = [turn("a.wav"), turn("b.wav"), turn("bye.wav")]
    records = [
        answer(0, "greet", "您好", after="greeting"),
        heard(1, "社保卡丢了"),
        answer(1, "card_loss_report", "请说身份证号"),
        heard(2, "找工作"),
        answer(2, "out_of_scope", "没听懂"),  # a sentence the gateway joined is asked again: the last answer counts
        answer(2, "job_search", "可以去人才市场"),
        heard(3, "拜拜"),
        answer(3, "goodbye", "再见"),
    ]
    assert match_turns(turns, records, EXPECTED) == 0
    assert [t["recognised"] for t in turns] == ["社保卡丢了", "找工作", "拜拜"]
    assert [t["intent"] for t in turns] == ["card_loss_report", "job_search", "goodbye"]
    assert [t["bot"] for t in turns] == ["请说身份证号", "可以去人才市场", "再见"]
    assert [t["expected"] for t in turns] == ["card_loss_report", "job_search", "goodbye"]
    assert all(t["understood"] for t in turns)


def test_a_turn_the_gateway_never_heard_is_not_understood_and_extra_utterances_are_counted() -> None:
    turns = [turn("a.wav"), turn("b.wav")]
    assert match_turns(turns, [heard(1, "社保卡丢了"), answer(1, "card_loss_report")], EXPECTED) == 0
    assert turns[1]["recognised"] is None and turns[1]["understood"] is False
    more = [turn("a.wav")]
    assert match_turns(more, [heard(1, "社保"), answer(1, "x"), heard(2, "卡丢了"), answer(2, "y")], EXPECTED) == 1
    assert more[0]["understood"] is False


def test_understood_share_is_over_every_spoken_turn() -> None:
    turns = [
        {"said": "a.wav", "understood": True},
        {"said": "b.wav", "understood": False},
        {"said": "bye.wav", "understood": True},
        {"said": "c.wav"},  # never matched: not understood
        {"said": "[按键 1]", "understood": True},  # keys are not spoken turns
    ]
    assert understood_share(turns) == 0.5
    assert understood_share([]) is None


def completed_call(**changes: Any) -> dict[str, Any]:
    call = {
        "scripted_turns": 2,
        "turns": [
            {"said": "a.wav", "expected": "job_search", "intent": "job_search"},
            {"said": "bye.wav", "expected": "goodbye", "intent": "goodbye"},
        ],
        "record": {"reason": "caller_hung_up", "detail": ""},
    }
    return {**call, **changes}


def test_a_call_is_completed_only_at_its_last_turn_with_the_goodbye_heard() -> None:
    assert call_completed(completed_call())
    short = completed_call(turns=completed_call()["turns"][:1])
    assert not call_completed(short)  # did not reach its last turn
    misheard = completed_call(turns=[completed_call()["turns"][0], {"said": "bye.wav", "expected": "goodbye"}])
    assert not call_completed(misheard)  # the goodbye was not understood, and the dialogue did not end the call
    ended = completed_call(turns=misheard["turns"], record={"reason": "completed", "detail": "caller_done"})
    assert call_completed(ended)  # ...unless the dialogue ended it with its goodbye
    on_hold_goodbye = completed_call(turns=misheard["turns"], record={"reason": "completed", "detail": "queue_limit"})
    assert not call_completed(on_hold_goodbye)
    no_goodbye = completed_call(turns=[completed_call()["turns"][0]] * 2)
    assert not call_completed(no_goodbye)  # the script's last turn must be the goodbye
    assert not call_completed({**completed_call(), "error": "ConnectionRefusedError"})


def test_every_attempted_barge_in_is_counted_and_unmeasured_ones_are_not_stopped() -> None:
    turns = [
        turn("a.wav"),
        turn("b.wav", barge=True, stop_ms=50.0),
        turn("a.wav", barge=True, stop_ms=None),  # not measured: a failure
        turn("b.wav", barge=True, stop_ms=150.0),
        turn("bye.wav", stop_ms=999.0),  # not a barge-in turn
    ]
    assert barge_ins(turns) == {"p50": 100.0, "p95": 145.0, "attempted": 3, "stopped": 2}
    assert barge_ins([turn("a.wav", barge=True)]) == {"p50": None, "p95": None, "attempted": 1, "stopped": 0}


def test_the_pause_reaches_the_talk_share_first() -> None:
    # 2 turns of 2 s at 0.4: the call is 10 s; greeting 1 + full answer 1 + closing 1 leave 1.5 s per pause
    pacer = Pacer(greeting_s=1.0, full_s=1.0, barged_s=0.5, closing_s=1.0)
    assert plan(0.4, [2.0, 2.0], 2.0, pacer, barge_every=0, max_turns=8) == (0, 0, 1.5, True)
    assert round(4.0 / (4.0 + 3.0 + 2 * 1.5), 3) == 0.4
    quiet = plan(0.1, [2.0, 2.0], 2.0, pacer, barge_every=0, max_turns=8)
    assert quiet == (0, 0, MAX_PAUSE_S, True)  # never longer than the no-input prompt allows


def test_long_answers_are_spoken_over_then_turns_are_added_up_to_the_most() -> None:
    # answers of 8 s: even the shortest pause is too long, barging in after 1 s is not (other = 4 + 1 + 1 = 6 s)
    pacer = Pacer(greeting_s=4.0, full_s=8.0, barged_s=1.0, closing_s=1.0)
    extra, every, pause, reachable = plan(0.4, [2.5, 2.5], 2.5, pacer, barge_every=0, max_turns=8)
    assert (extra, every, reachable) == (0, 1, True) and MIN_PAUSE_S <= pause == 1.5
    # a long greeting: more turns amortise it (each turn 2.5 s speech + 1 s barged answer + a pause)
    slow = Pacer(greeting_s=12.0, full_s=8.0, barged_s=1.0, closing_s=1.0)
    extra, every, pause, reachable = plan(0.4, [2.5, 2.5], 2.5, slow, barge_every=0, max_turns=8)
    assert every == 1 and reachable and 0 < extra <= 6 and pause >= MIN_PAUSE_S
    hopeless = Pacer(greeting_s=60.0, full_s=8.0, barged_s=9.0, closing_s=1.0)
    assert plan(0.4, [2.5, 2.5], 2.5, hopeless, barge_every=0, max_turns=8) == (6, 1, MIN_PAUSE_S, False)


def test_barged_answers_never_the_greeting() -> None:
    assert barged_answers(4, 1) == 3 and barged_answers(4, 2) == 2 and barged_answers(4, 0) == 0


def test_the_pacer_learns_greeting_answers_and_barged_answers_from_calls_placed() -> None:
    pacer = Pacer(greeting_s=6.0, full_s=8.0, barged_s=2.5, closing_s=3.0)
    assert pacer.other_s(turns=3, barged=1) == 6.0 + 2.5 + 8.0 + 3.0
    call = [
        {"turn_gap_ms": 1000.0, "agent_audio_s": 5.0, "barge_in": False},  # heard in full: 1 + 5 + 0.9
        {"turn_gap_ms": 1000.0, "agent_audio_s": 0.1, "barge_in": False},  # spoken over by the next: 1 + 1
        {"turn_gap_ms": 500.0, "agent_audio_s": 1.5, "barge_in": True},  # the goodbye's answer: 0.5 + 1.5
    ]
    for _ in range(3):
        pacer.learn(4.0, call)
    assert pacer.other_s(turns=3, barged=1) == 4.0 + 2.0 + 6.9 + 2.0


def test_the_script_ends_with_a_goodbye_and_barges_in_when_the_share_needs_it() -> None:
    from voice_gateway.testing.bench import intent_wavs, manifest_intents

    wavs, intents = intent_wavs(600), manifest_intents()
    config = BenchConfig(url="ws://x/twilio", turns=3, barge_every=0, talk_share=0.4)
    turns = script(config, random.Random(1), wavs, Pacer(greeting_s=1.0, full_s=0.5, closing_s=0.5))
    assert len(turns) == 3 and intents[turns[-1].wav.rsplit("/", 1)[1]] == "goodbye"
    assert all(intents[t.wav.rsplit("/", 1)[1]] != "goodbye" for t in turns[:-1])
    assert not any(t.barge_in for t in turns)  # short answers: the pauses reach the share
    long = script(config, random.Random(1), wavs, Pacer(greeting_s=4.0, full_s=20.0, barged_s=1.0))
    assert [t.barge_in for t in long] == [False, True, True]
    slow = script(config, random.Random(1), wavs, Pacer(greeting_s=60.0, barged_s=5.0))
    assert len(slow) == 8 and intents[slow[-1].wav.rsplit("/", 1)[1]] == "goodbye"
    fixed = script(BenchConfig(url="ws://x/twilio", turns=2, talk_share=0), random.Random(1), wavs)
    assert len(fixed) == 2 and [t.barge_in for t in fixed] == [False, True]


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 95) == 48.0


def test_the_report_has_its_top_level_fields(tmp_path: Path) -> None:
    calls = [
        {**completed_call(), "talk_share": 0.35, "call_id": "c1"},
        {**completed_call(turns=completed_call()["turns"][:1]), "talk_share": 0.45, "call_id": "c2"},
    ]
    calls[0]["turns"][0].update(turn("a.wav"), understood=True)
    calls[0]["turns"][1].update(turn("bye.wav", barge=True), understood=True)
    usage = {
        "gateway": {"cpu_cores": 0.5, "rss_mb_before": 100.0, "rss_mb_peak": 130.0},
        "redis": {"cpu_cores": 0.1, "rss_mb_before": 10.0, "rss_mb_peak": 12.0},
        "bench": {"cpu_cores": 0.2, "rss_mb_before": 50.0, "rss_mb_peak": 500.0},
    }
    out = report.summarise({"calls": 2, "talk_share": 0.4}, calls, usage, wall=10.0, machine_cores=1.0)
    assert out["calls"] == 2 and out["placed"] == 2 and out["completed"] == 1
    assert out["talk_share"] == 0.4 and out["understood_share"] == round(2 / 3, 3)
    assert out["barge_in_ms"] == {"p50": None, "p95": None, "attempted": 1, "stopped": 0}
    assert out["cpu_cores_per_call"] == 0.3 and out["rss_mb_per_call"] == 16.0  # the bench's own memory left out
    assert "0.20 cores" in out["shared_cores"] and "everything else on the machine 0.20" in out["shared_cores"]
    assert out["machine"]["cpu_count"] and out["machine"]["python"]
    table = report.print_table({**out, "engine": "whisper", "wire": "twilio", "commit": "abc"})
    assert "2 / 1" in table and "(0 of 1)" in table, table
    report.chart(out, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 0


async def test_memory_is_sampled_before_the_warm_up_and_cpu_counted_after_it(monkeypatch: Any) -> None:
    from voice_gateway.testing import bench

    events: list[str] = []

    class FakeUsage:
        def __init__(self, pids: dict[str, int]) -> None:
            events.append("memory baseline")

        async def sample(self) -> None:
            await asyncio.sleep(3600)

        def restart_cpu(self) -> None:
            events.append("cpu baseline")

        def report(self) -> dict[str, dict[str, float]]:
            return {"bench": {"cpu_cores": 0.1, "rss_mb_before": 1.0, "rss_mb_peak": 2.0}}

    async def fake_slot(config: Any, index: int, *args: Any) -> list[dict[str, Any]]:
        events.append(f"{'warm-up' if config.rounds == 1 and not config.warmup else 'counted'} call {index}")
        return [{"index": index, "error": "none placed"}]

    monkeypatch.setattr(bench, "Usage", FakeUsage)
    monkeypatch.setattr(bench, "slot", fake_slot)
    monkeypatch.setattr(bench, "intent_wavs", lambda ms: [])
    config = bench.BenchConfig(url="ws://127.0.0.1:9/twilio", calls=1, rounds=2, warmup=True)
    result = await bench.run(config, gateway={"asr": {"name": "vosk"}})
    assert events == ["memory baseline", "warm-up call 0", "cpu baseline", "counted call 0"]
    assert result["placed"] == 1 and result["engine"] == "vosk" and result["wire"] == "twilio"


def test_the_memory_baseline_survives_the_cpu_restart() -> None:
    from voice_gateway.testing.bench import Usage

    usage = Usage({})
    before = usage.start["bench"][1]
    ballast = b"\x01" * (64 << 20)  # 64 MiB more, touched: the process grew after the baseline
    usage.restart_cpu()
    assert usage.report()["bench"]["rss_mb_before"] == round(before, 1) and len(ballast)
