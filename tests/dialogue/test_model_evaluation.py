"""The trainer's evaluation reads sentences with the real model, in one Rasa-environment process."""

from __future__ import annotations

from pathlib import Path

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.rasa_env import RasaEnv
from voice_gateway.training.evaluation import load_test_set, predict, score


def test_predict_with_the_trained_model_gets_most_dev_sentences_right(rasa_env: RasaEnv, model: Path) -> None:
    dev = load_test_set(PROJECT_ROOT / "tests" / "data" / "nlu_dev.yml")[::18]  # 10 sentences, 10 intents
    texts = [e.text for e in dev]
    got = predict(rasa_env.settings, model, [*texts, "", "你好\n再见"])
    assert [p.text for p in got] == [*texts, "", "你好\n再见"]  # one answer per text, in order
    assert got[-2].intent is None and got[-1].intent is not None  # an empty line; a text with a line break in it
    for p in got[:-2]:
        assert p.intent and 0.0 < p.confidence <= 1.0
        assert p.ranking and p.ranking[0] == (p.intent, p.confidence)
    scores = score(dev, got[:-2])
    assert len({e.intent for e in dev}) == len(dev) == 10
    assert scores.accuracy >= 0.8, [(o.text, o.expected, o.predicted) for o in scores.outcomes if not o.correct]
