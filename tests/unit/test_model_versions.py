"""Model versions: records beside the model files, the model in service, promotions, roll-backs, the table."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest

from voice_gateway.training import versions as versions_module
from voice_gateway.training.evaluation import Example, Prediction, Report, Section, compare, promotion_verdict, score
from voice_gateway.training.versions import ModelVersions, PromotionRefused, VersionError, table

T0 = 1_760_000_000  # file times: A oldest, C newest


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for i, fp in enumerate(["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]):
        path = folder / f"hotline-{fp}.tar.gz"
        path.write_bytes(b"\x1f\x8b not really a model")
        os.utime(path, (T0 + i * 60, T0 + i * 60))
    return folder


A, B, C = "hotline-aaaaaaaaaaaa.tar.gz", "hotline-bbbbbbbbbbbb.tar.gz", "hotline-cccccccccccc.tar.gz"


def report(candidate: str, in_service: str | None, worse: bool = False) -> Report:
    """A report whose verdict allows the candidate, or (worse) refuses it."""
    cases = [Example("一", "x"), Example("二", "y")]
    good = score(cases, [Prediction("一", "x", 0.9), Prediction("二", "y", 0.9)])
    bad = score(cases, [Prediction("一", "x", 0.9), Prediction("二", "x", 0.9)])
    after = bad if worse else good
    comparison = compare(good, after) if in_service else None
    test = Section(2, good if in_service else None, after, comparison)
    return Report(candidate, in_service, test, None, None, promotion_verdict(comparison), "<svg/>")


def test_without_a_state_file_the_rule_of_latest_model_names_the_model_in_service(models: Path) -> None:
    assert ModelVersions(models).in_service() == models / C  # the newest
    assert ModelVersions(models, fingerprint="aaaaaaaaaaaa").in_service() == models / A  # the current data's
    assert ModelVersions(models, fingerprint="ffffffffffff").in_service() == models / C
    assert ModelVersions(models / "none").in_service() is None
    assert not (models / "service.json").exists()  # reading writes nothing


def test_versions_list_records_newest_first_and_mark_the_one_in_service(models: Path) -> None:
    store = ModelVersions(models)
    sidecar = store.record_trained(models / A, "王老师", "1dfa7cf", report(A, C))
    assert sidecar == models / "hotline-aaaaaaaaaaaa.json"
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    assert record["trained_by"] == "王老师" and record["commit"] == "1dfa7cf"
    assert record["report"]["accuracy"] == 1.0 and record["report"]["allowed"] is True
    listed = store.versions()
    assert [v.name for v in listed] == [A, C, B]  # A's record is from now; the others go by file time
    a, _, b = listed
    assert (a.version, a.trained_by, a.commit, a.accuracy, a.macro_f1, a.allowed) == (
        "aaaaaaaaaaaa",
        "王老师",
        "1dfa7cf",
        1.0,
        1.0,
        True,
    )
    assert a.recorded and not b.recorded and b.accuracy is None
    assert [v.in_service for v in listed] == [False, True, False]
    assert json.loads(json.dumps(a.as_json()))["trained_by"] == "王老师"


def test_a_promotion_the_report_allows_is_recorded_and_the_started_model_kept(models: Path) -> None:
    store = ModelVersions(models)
    store.record_trained(A, "王老师", "abc", report(A, C))
    assert store.mark_promoted(A, "李组长") == models / A
    assert store.in_service() == models / A and store.previous() == models / C
    state = json.loads((models / "service.json").read_text(encoding="utf-8"))
    assert state["in_service"] == A
    assert [(h["name"], h["action"], h["by"], h["override"]) for h in state["history"]] == [
        (C, "started", "李组长", False),
        (A, "promoted", "李组长", False),
    ]
    assert [f.name for f in models.iterdir() if f.name.endswith(".tmp")] == []
    with pytest.raises(VersionError, match="already in service"):
        store.mark_promoted(A, "李组长")


def test_the_rule_refuses_a_worse_a_stale_or_an_unevaluated_model_unless_overridden(models: Path) -> None:
    store = ModelVersions(models)
    store.record_trained(A, "王老师", "abc", report(A, C, worse=True))
    with pytest.raises(PromotionRefused, match="may not go into service") as refused:
        store.mark_promoted(A, "李组长")
    assert refused.value.reasons[0].startswith("准确率从 100.00% 降到 50.00%")
    with pytest.raises(PromotionRefused, match="没有评估报告"):
        store.mark_promoted(B, "李组长")
    store.record_trained(B, "王老师", "abc", report(B, A))  # compared with A, but C is in service
    with pytest.raises(PromotionRefused, match="需要重新评估"):
        store.mark_promoted(B, "李组长")
    with pytest.raises(VersionError, match="needs a reason"):
        store.mark_promoted(A, "李组长", override=True, reason="  ")
    assert not (models / "service.json").exists()  # nothing was written by the refusals
    store.mark_promoted(A, "李组长", override=True, reason="投诉类句子必须先修好")
    last = store.history()[-1]
    assert (last["name"], last["override"], last["reason"]) == (A, True, "投诉类句子必须先修好")


def test_unknown_names_are_refused_clearly(models: Path) -> None:
    store = ModelVersions(models)
    for name in ["hotline-ffffffffffff.tar.gz", "../hotline-aaaaaaaaaaaa.json", "service.json"]:
        with pytest.raises(VersionError, match="no model"):
            store.mark_promoted(name, "李组长", override=True, reason="试一下")
    with pytest.raises(VersionError, match=r"known: hotline-aaaaaaaaaaaa\.tar\.gz"):
        store.record_trained("nope.tar.gz", "王老师", None)


def test_roll_backs_walk_back_through_the_promotions(models: Path) -> None:
    store = ModelVersions(models)
    assert store.previous() is None
    with pytest.raises(VersionError, match="nothing to roll back to"):
        store.mark_rolled_back("李组长")
    assert store.pin("hotline up") == models / C
    for name, before in [(A, C), (B, A)]:
        store.record_trained(name, "王老师", "abc", report(name, before))
        store.mark_promoted(name, "李组长")
    assert store.in_service() == models / B and store.previous() == models / A
    assert store.mark_rolled_back("李组长") == models / A
    assert store.in_service() == models / A and store.previous() == models / C
    assert store.mark_rolled_back("李组长", reason="夜里误识别多") == models / C
    assert store.previous() is None
    with pytest.raises(VersionError, match="nothing to roll back to"):
        store.mark_rolled_back("李组长")
    actions = [(h["name"], h["action"]) for h in store.history()]
    assert actions == [
        (C, "started"),
        (A, "promoted"),
        (B, "promoted"),
        (A, "rolled_back"),
        (C, "rolled_back"),
    ]
    assert store.history()[-1]["reason"] == "夜里误识别多" and store.history()[-2]["reason"] == f"回滚：撤下 {B}"


def test_pin_keeps_the_started_model_when_a_model_for_new_data_appears(models: Path) -> None:
    assert ModelVersions(models).pin() == models / C
    new = ModelVersions(models, fingerprint="aaaaaaaaaaaa")  # the data changed and A is trained on it
    assert new.in_service() == models / C
    assert new.pin() == models / C and len(new.history()) == 1  # pinning twice changes nothing


def test_a_failed_write_leaves_the_old_state_and_no_temporary_file(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelVersions(models)
    store.pin()
    before = (models / "service.json").read_bytes()
    store.record_trained(A, "王老师", "abc", report(A, C))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(versions_module.json, "dump", broken)
    with pytest.raises(OSError, match="disk full"):
        store.mark_promoted(A, "李组长")
    assert (models / "service.json").read_bytes() == before
    assert sorted(p.name for p in models.iterdir() if p.name.startswith(".service.json")) == []


def test_table_marks_the_model_in_service(models: Path) -> None:
    store = ModelVersions(models)
    store.record_trained(A, "王老师", "abc", report(A, C))
    lines = table(store.versions()).splitlines()
    assert lines[0].split() == ["version", "trained", "by", "accuracy", "macro", "F1", "verdict"]
    assert lines[1].split()[0] == "aaaaaaaaaaaa" and "王老师" in lines[1] and "1.0000" in lines[1]
    assert lines[2].startswith("*") and "cccccccccccc" in lines[2]
    assert lines[3].split()[0] == "bbbbbbbbbbbb" and lines[3].split()[-3:] == ["-", "-", "-"]
    column = lines[0].index("accuracy")  # the columns line up on screen, wide characters and all
    shown = lines[1][: lines[1].index("1.0000")]
    assert sum(2 if unicodedata.east_asian_width(c) == "W" else 1 for c in shown) == column
    assert lines[3][column] == "-"
    assert table([]).endswith("(no models)\n")
