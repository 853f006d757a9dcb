"""The committed caller audio's splits: the eval sentences are new, cover every intent, and are in the manifest."""

from __future__ import annotations

import difflib
import json

import pytest

from tools import make_test_audio as audio
from voice_gateway.config import PROJECT_ROOT

MANIFEST = json.loads((PROJECT_ROOT / "tests" / "audio" / "manifest.json").read_text(encoding="utf-8"))


def test_no_eval_sentence_is_near_a_training_example_or_a_dev_sentence() -> None:
    examples = audio.training_examples()
    assert len(examples) > 3000 and "我要挂失社保卡" in examples  # the training data was read, not an empty list
    dev = [e["text"] for e in MANIFEST if e.get("split") == "dev"]
    for entry in (e for e in MANIFEST if e.get("split") == "eval"):
        mine = audio.plain(entry["text"])
        nearest = max(difflib.SequenceMatcher(None, mine, audio.plain(t)).ratio() for t in examples + dev)
        assert nearest < 0.85, entry["text"]


def test_the_check_would_catch_a_copied_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    copied = ("eval_card_loss_report_9", "我要挂失社保卡！", "card_loss_report", "eval_intent")
    monkeypatch.setattr(audio, "UTTERANCES", [*audio.UTTERANCES, copied])
    found = audio.near_duplicates()
    assert found and {t for t, _, _, _ in found} == {"我要挂失社保卡！"}
    assert ("我要挂失社保卡！", "我要挂失社保卡", "training", 1.0) in found


def test_the_splits_cover_every_intent_and_only_intent_recordings() -> None:
    dev = [e for e in MANIFEST if e.get("split") == "dev"]
    held_out = [e for e in MANIFEST if e.get("split") == "eval"]
    assert {e["kind"] for e in dev} == {"intent"} and {e["kind"] for e in held_out} == {"eval_intent"}
    intents = {e["intent"] for e in dev}
    assert len(intents) == 39 and {e["intent"] for e in held_out} == intents
    assert all(sum(e["intent"] == i for e in held_out) >= 2 for i in intents)
    assert all(
        e["file"].startswith("eval_") and (PROJECT_ROOT / "tests" / "audio" / e["file"]).exists() for e in held_out
    )
    assert all("split" not in e for e in MANIFEST if e["kind"] not in ("intent", "eval_intent"))


def test_the_manifest_matches_the_generator_and_the_audio_passes_its_checks() -> None:
    assert audio.check() == []
