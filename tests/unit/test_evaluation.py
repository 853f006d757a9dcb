"""Model evaluation: scores worked out by hand, the comparison of two models, the promotion rule, the picture."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.rasa_env import RasaEnvError
from voice_gateway.training import evaluation
from voice_gateway.training.evaluation import (
    NO_INTENT,
    PROMOTION_RULE,
    Example,
    Prediction,
    compare,
    confusion_svg,
    load_test_set,
    promotion_verdict,
    score,
)

SVG = "{http://www.w3.org/2000/svg}"


def examples(*intents: str) -> list[Example]:
    return [Example(f"句子{i}", intent) for i, intent in enumerate(intents)]


def said(cases: list[Example], *intents: str | None) -> list[Prediction]:
    return [Prediction(e.text, i, 0.9, ((i, 0.9),) if i else ()) for e, i in zip(cases, intents, strict=True)]


def test_test_set_strips_entity_markup_and_skips_other_blocks(tmp_path: Path) -> None:
    path = tmp_path / "nlu.yml"
    path.write_text(
        'version: "3.1"\nnlu:\n- intent: card_loss_report\n  examples: |\n'
        "    - 我的[社保卡](card_type)丢了\n"
        '    - 我在[北京]{"entity": "city", "value": "北京市"}办的卡\n'
        "- synonym: 北京市\n  examples: |\n    - 北京\n"
        "- intent: greet\n  examples: |\n    - 你好\n",
        encoding="utf-8",
    )
    assert load_test_set(path) == [
        Example("我的社保卡丢了", "card_loss_report"),
        Example("我在北京办的卡", "card_loss_report"),
        Example("你好", "greet"),
    ]
    dev = load_test_set(PROJECT_ROOT / "tests/data/nlu_dev.yml")
    assert len(dev) == 177 and dev[0] == Example("你好，请问这是一二三三社保热线吧", "greet")


def test_a_known_confusion_gives_the_f1_worked_out_by_hand() -> None:
    cases = examples("A", "A", "A", "B", "B", "C")
    scores = score(cases, said(cases, "A", "A", "B", "B", "B", "A"))
    # A: 2 of 3 found, 2 of 3 "A" right -> P = R = F1 = 2/3; B: P 2/3, R 1 -> F1 0.8; C: never found -> 0
    a, b, c = (scores.per_intent[n] for n in "ABC")
    assert (a.precision, a.recall, a.f1, a.support, a.predicted) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3, 3))
    assert (b.precision, b.recall, b.f1, b.support) == pytest.approx((2 / 3, 1.0, 0.8, 2))
    assert (c.precision, c.recall, c.f1, c.support, c.predicted) == (0.0, 0.0, 0.0, 1, 0)
    assert scores.accuracy == pytest.approx(4 / 6)
    assert scores.macro_f1 == pytest.approx(22 / 45)  # (2/3 + 4/5 + 0) / 3
    assert scores.confusion == {"A": {"A": 2, "B": 1}, "B": {"B": 2}, "C": {"A": 1}}
    assert [o.text for o in scores.outcomes if not o.correct] == ["句子2", "句子5"]


def test_macro_f1_counts_only_intents_with_support_and_no_intent_is_a_label() -> None:
    cases = examples("A", "A", "B")
    scores = score(cases, said(cases, "A", "D", None))
    assert scores.per_intent["D"].support == 0 and scores.per_intent[NO_INTENT].predicted == 1
    assert scores.macro_f1 == pytest.approx((2 / 3 + 0) / 2)  # A (P 1, R 1/2) and B; not D nor (none)
    assert scores.confusion["B"] == {NO_INTENT: 1}


def test_score_refuses_predictions_of_other_texts() -> None:
    cases = examples("A", "B")
    with pytest.raises(ValueError, match="2 examples but 1"):
        score(cases, said(cases[:1], "A"))
    with pytest.raises(ValueError, match="given for the example"):
        score(cases, [Prediction("别的", "A", 1.0), Prediction(cases[1].text, "B", 1.0)])


def big_case() -> tuple[list[Example], list[Prediction], list[Prediction]]:
    cases = examples(*["A"] * 200, "B", "C")
    before = said(cases, *["A"] * 200, "B", "A")  # C wrong
    after = said(cases, "B", *["A"] * 199, "B", "C")  # C fixed, one A said as B
    return cases, before, after


def test_compare_lists_changes_beyond_half_a_point_and_the_flipped_sentences() -> None:
    cases = examples(*["A"] * 200, "B", "C", "E")
    before = score(cases, said(cases, *["A"] * 200, "B", "B", "E"))  # C said as B
    after = score(cases, said(cases, "D", *["A"] * 199, "B", "C", "C"))  # an A as D, C fixed, E said as C
    comparison = compare(before, after)
    changes = {c.intent: c for c in comparison.intents}
    assert set(changes) == {"A", "B", "C", "E"}  # D has no support
    # A: F1 from 1 to 398/399 (P 1, R 199/200): -0.0025, too small to count as worse
    assert (changes["A"].before, changes["A"].after) == pytest.approx((1.0, 398 / 399))
    assert changes["A"].delta == pytest.approx(-0.0025, abs=1e-4)
    assert changes["B"].delta == pytest.approx(1 - 2 / 3) and changes["C"].delta == pytest.approx(2 / 3)
    assert comparison.better == ["B", "C"] and comparison.worse == ["E"]
    assert [(f.text, f.before, f.after) for f in comparison.fixed] == [("句子201", "B", "C")]
    assert [(f.text, f.expected, f.after) for f in comparison.broken] == [("句子0", "A", "D"), ("句子202", "E", "C")]
    assert (comparison.accuracy_before, comparison.accuracy_after) == pytest.approx((202 / 203, 201 / 203))
    with pytest.raises(ValueError, match="different examples"):
        compare(before, score(cases[:2], said(cases[:2], "A", "A")))


def test_a_worse_candidate_is_refused_and_says_why_in_chinese() -> None:
    cases = examples("A", "A", "B", "B")
    in_service = score(cases, said(cases, "A", "A", "B", "B"))
    worse = score(cases, said(cases, "A", "B", "B", "B"))
    verdict = promotion_verdict(compare(in_service, worse))
    assert not verdict.allowed and verdict.rule == PROMOTION_RULE
    assert verdict.reasons[0] == "准确率从 100.00% 降到 75.00%（下降 25.00 个百分点）"
    assert verdict.reasons[1].startswith("宏平均F1从 100.00% 降到")
    assert any("A" in r and "F1下降的意图" in r for r in verdict.reasons)
    assert promotion_verdict(compare(worse, in_service)).allowed  # the other way round is better


def test_equal_scores_are_allowed_and_either_drop_refuses() -> None:
    cases, before, after = big_case()
    same = promotion_verdict(compare(score(cases, before), score(cases, before)))
    assert same.allowed and "持平" in same.reasons[0] and "持平" in same.reasons[1]
    # big_case: the same accuracy; C's F1 rises by 1, B's falls by 1/3, so the macro F1 rises
    mixed = compare(score(cases, before), score(cases, after))
    assert mixed.macro_f1_after > mixed.macro_f1_before and promotion_verdict(mixed).allowed
    f1_drop = compare(score(cases, after), score(cases, before))  # the same accuracy, a lower macro F1
    assert f1_drop.accuracy_after == f1_drop.accuracy_before
    verdict = promotion_verdict(f1_drop)
    assert not verdict.allowed and verdict.reasons[0].startswith("准确率未下降") and "宏平均F1从" in verdict.reasons[1]


def test_nothing_in_service_allows_the_first_model() -> None:
    verdict = promotion_verdict(None)
    assert verdict.allowed and verdict.rule == PROMOTION_RULE and "没有在用模型" in verdict.reasons[0]


def test_the_confusion_svg_parses_escapes_names_and_shows_only_intents_in_play() -> None:
    cases = [Example("a", "x<&>\"'"), Example("b", "x<&>\"'"), Example("c", "plain"), Example("d", "plain")]
    scores = score(cases, said(cases, "x<&>\"'", "plain", "plain", "plain"))
    svg = confusion_svg(scores)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "x<&>\"' (2)" in texts and "x<&>\"'" in texts and "plain (2)" in texts  # a row label and a column one
    assert "<&>" not in svg  # escaped in the source
    counts = sorted(t for t in texts if t and t.isdigit())
    assert counts == ["1", "1", "2"]
    rotated = [t for t in root.iter(f"{SVG}text") if "rotate(-90" in t.get("transform", "")]
    assert [t.text for t in rotated] == ["plain", "x<&>\"'"]
    assert len(list(root.iter(f"{SVG}rect"))) == 1 + 4  # the background and a 2 x 2 grid
    wider = ET.fromstring(confusion_svg(scores, labels=["plain", "x<&>\"'", "unused"]))
    assert len(list(wider.iter(f"{SVG}rect"))) == 1 + 9


class FakeRasa:
    """RasaEnv's interface for predict: answers the lines it is given as parse_lines.py would."""

    python = "python"

    def __init__(self, settings: Settings, answers: dict[str, dict] | None = None) -> None:
        self.answers = answers or {}
        self.stdin = ""

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        self.stdin = kwargs["input"]
        rows = [
            self.answers.get(line, {"text": line, "intent": None, "confidence": 0.0, "entities": []})
            for line in kwargs["input"].splitlines()
        ]
        out = "debug noise\n" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")


def test_predict_sends_one_line_per_text_and_reads_rankings(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "你好": {"text": "你好", "intent": "greet", "confidence": 0.97, "entities": []},
        "丢了 卡": {
            "text": "丢了 卡",
            "intent": "card_loss_report",
            "confidence": 0.8,
            "ranking": [
                {"name": "card_loss_report", "confidence": 0.8},
                {"name": "a", "confidence": 0.1},
                {"name": "b", "confidence": 0.05},
                {"name": "c", "confidence": 0.01},
            ],
        },
    }
    fake = FakeRasa(Settings(), answers)
    monkeypatch.setattr(evaluation, "RasaEnv", lambda settings: fake)
    got = evaluation.predict(Settings(), Path("m.tar.gz"), ["你好", "丢了\n卡", ""])
    assert fake.stdin == "你好\n丢了 卡\n\n"
    assert got[0] == Prediction("你好", "greet", 0.97, (("greet", 0.97),))
    assert got[1].text == "丢了\n卡" and [n for n, _ in got[1].ranking] == ["card_loss_report", "a", "b"]
    assert got[2] == Prediction("", None, 0.0, ())


def test_predict_fails_loudly_when_lines_go_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    class Short(FakeRasa):
        def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
            done = super().run(args, **kwargs)
            return subprocess.CompletedProcess(args, 0, stdout=done.stdout.rsplit("{", 1)[0], stderr="")

    monkeypatch.setattr(evaluation, "RasaEnv", lambda settings: Short(settings))
    with pytest.raises(RasaEnvError, match="answered 1 lines for 2 texts"):
        evaluation.predict(Settings(), Path("m.tar.gz"), ["一", "二"])


def test_evaluate_reports_the_test_set_and_the_annotated_turns_apart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    readings = {  # model -> text -> intent
        "new.tar.gz": {"t1": "A", "t2": "B", "t3": "B", "e1": "C"},
        "old.tar.gz": {"t1": "A", "t2": "B", "t3": "A", "e1": "A"},
    }
    calls = []

    def fake_predict(settings: Settings, model: Path, texts: list[str]) -> list[Prediction]:
        calls.append((model.name, list(texts)))
        return [Prediction(t, readings[model.name][t], 0.9) for t in texts]

    monkeypatch.setattr(evaluation, "predict", fake_predict)
    test_set = [Example("t1", "A"), Example("t2", "B"), Example("t3", "B")]
    extra = [Example("e1", "C")]
    report = evaluation.evaluate(Settings(), tmp_path / "new.tar.gz", tmp_path / "old.tar.gz", test_set, extra)
    assert [c[0] for c in calls] == ["new.tar.gz", "old.tar.gz"]  # one process per model, all texts at once
    assert calls[0][1] == ["t1", "t2", "t3", "e1"]
    assert report.before is not None and report.before.accuracy == pytest.approx(2 / 3)
    assert report.after.accuracy == 1.0 and report.verdict.allowed
    assert report.extra is not None and report.extra.n == 1 and report.extra.after.accuracy == 1.0
    assert report.combined is not None and report.combined.n == 4
    assert report.comparison is not None and [f.text for f in report.comparison.fixed] == ["t3"]
    page = report.as_json()
    assert json.loads(json.dumps(page)) == page  # plain types only
    assert page["verdict"]["allowed"] and page["test"]["after"]["n"] == 3 and page["extra"]["n"] == 1
    written = report.write(tmp_path / "out")
    assert written.name == "new.report.json" and json.loads(written.read_text(encoding="utf-8")) == page
    ET.fromstring((tmp_path / "out" / "new.confusion.svg").read_text(encoding="utf-8"))
    assert report.summary()["compared_with"] == "old.tar.gz" and report.summary()["accuracy"] == 1.0

    first = evaluation.evaluate(Settings(), tmp_path / "new.tar.gz", None, test_set, [])
    assert first.before is None and first.comparison is None and first.extra is None and first.verdict.allowed
    assert first.as_json()["test"]["before"] is None
