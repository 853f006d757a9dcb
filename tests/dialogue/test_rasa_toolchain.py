"""The Rasa project as a trainer uses it: data validation, test stories, NLU cross-validation, held-out callers.

Reports are written to reports/ (per-intent JSON), so a trainer can read what a run measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.rasa_env import PROJECT_ARGS, RasaEnv

REPORTS = PROJECT_ROOT / "reports"
CONTRACT_INTENTS = [
    "greet",
    "goodbye",
    "thank",
    "affirm",
    "deny",
    "request_human",
    "repeat",
    "stop",
    "ask_capabilities",
    "complain",
    "inform",
    "out_of_scope",
    "query_pension_contribution",
    "query_pension_payment",
    "pension_certification",
    "retirement_age",
    "insurance_transfer",
    "unemployment_benefit",
    "work_injury",
    "flexible_employment_insurance",
    "contribution_certificate",
    "card_loss_report",
    "card_application",
    "card_progress",
    "card_activation",
    "electronic_card",
    "job_search",
    "unemployment_registration",
    "vocational_training",
    "entrepreneurship_support",
    "career_guidance",
    "talent_policy",
    "professional_title",
    "skill_certificate",
    "personnel_archive",
    "wage_arrears",
    "labor_arbitration",
    "arbitration_progress",
    "labor_contract",
]
CV_MACRO_F1_FLOOR = 0.88  # measured 0.91 (3 folds); the training data is deliberately harder than callers
HOLDOUT_ACCURACY_FLOOR = 0.95  # the eval split: none of it (nearly) a training example (docs/understanding.md)


def nlu_examples(path: Path) -> dict[str, list[str]]:
    examples: dict[str, list[str]] = {}
    for file in sorted(path.glob("*.yml")) if path.is_dir() else [path]:
        for block in yaml.safe_load(file.read_text(encoding="utf-8"))["nlu"]:
            lines = [line[2:].strip() for line in block["examples"].splitlines() if line.startswith("- ")]
            examples.setdefault(block["intent"], []).extend(lines)
    return examples


def rasa(env: RasaEnv, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    environ = env.environ()
    environ["PYTHONWARNINGS"] = "default"  # warnings are what validation is about
    return subprocess.run(
        [env.rasa, *args], cwd=PROJECT_ROOT / "dialogue", env=environ, capture_output=True, text=True, timeout=timeout
    )


def test_every_catalogue_intent_has_at_least_30_distinct_examples() -> None:
    examples = nlu_examples(PROJECT_ROOT / "nlu_data" / "nlu")
    domain = yaml.safe_load((PROJECT_ROOT / "dialogue" / "domain.yml").read_text(encoding="utf-8"))
    assert set(CONTRACT_INTENTS) <= set(domain["intents"])
    for intent in CONTRACT_INTENTS:
        assert len(set(examples.get(intent, []))) >= 30, intent
    duplicates = [text for text, n in Counter(t for ts in examples.values() for t in ts).items() if n > 1]
    assert not duplicates, f"examples under two intents or twice: {duplicates[:5]}"


def test_data_validates_without_warnings(rasa_env: RasaEnv) -> None:
    result = rasa(rasa_env, "data", "validate", *PROJECT_ARGS, "--fail-on-warnings")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "UserWarning" not in output, output[-3000:]


def test_rasa_test_stories_pass(rasa_env: RasaEnv, model: Path) -> None:
    out = REPORTS / "core"
    result = rasa(
        rasa_env,
        "test",
        "core",
        "--stories",
        "tests/test_stories.yml",
        "--model",
        str(model),
        "--out",
        str(out),
        "--fail-on-prediction-errors",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((out / "story_report.json").read_text())
    assert report["conversation_accuracy"]["accuracy"] == 1.0
    assert report["conversation_accuracy"]["total"] >= 20


def test_nlu_cross_validation_report_and_floor(rasa_env: RasaEnv) -> None:
    """Three trainings: their report is kept outside the clone under the inputs' fingerprint (the training data,
    pipeline config and component code, and the Rasa environment), so a rerun on the same inputs reads it back."""
    out = REPORTS / "nlu-cross-validation"
    kept = rasa_env.settings.cache / "nlu-cross-validation" / f"{rasa_env.fingerprint()}-{rasa_env.prefix.name}"
    if not (kept / "intent_report.json").is_file():
        result = rasa(
            rasa_env,
            "test",
            "nlu",
            "--nlu",
            "../nlu_data/nlu",
            "--config",
            "config.yml",
            "--cross-validation",
            "--folds",
            "3",
            "--out",
            str(out),
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "intent_report.json", kept / "intent_report.json")
    else:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(kept / "intent_report.json", out / "intent_report.json")
    report = json.loads((out / "intent_report.json").read_text())
    macro_f1 = report["macro avg"]["f1-score"]
    print(f"\nNLU 3-fold cross-validation: accuracy {report['accuracy']:.4f}, macro F1 {macro_f1:.4f} ({kept})")
    assert macro_f1 >= CV_MACRO_F1_FLOOR


def test_held_out_callers_through_hotline_nlu_parse(rasa_env: RasaEnv, model: Path) -> None:
    """The eval split of the held-out callers (tools/nlu_eval.py split), parsed the way outside evaluation does it."""
    examples = nlu_examples(PROJECT_ROOT / "tests" / "data" / "nlu_eval.yml")
    texts = [(intent, text) for intent, lines in examples.items() for text in lines]
    stdin = "\n".join(text for _, text in texts) + "\n"
    env = dict(os.environ, HOTLINE_MODEL=str(model))
    result = subprocess.run(
        [sys.executable, "-m", "voice_gateway.cli", "nlu", "parse", "--offline"],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(texts)
    assert all(set(line) == {"text", "intent", "confidence", "ranking", "entities"} for line in lines)
    right = Counter(intent for (intent, _), line in zip(texts, lines, strict=True) if line["intent"] == intent)
    total = Counter(intent for intent, _ in texts)
    accuracy = sum(right.values()) / len(texts)
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "nlu-holdout.json").write_text(
        json.dumps(
            {
                "accuracy": accuracy,
                "per_intent": {i: right[i] / total[i] for i in sorted(total)},
                "errors": [
                    {**line, "expected": intent}
                    for (intent, _), line in zip(texts, lines, strict=True)
                    if line["intent"] != intent
                ],
            },
            ensure_ascii=False,
            indent=1,
        )
    )
    print(f"\nheld-out accuracy {accuracy:.4f} on {len(texts)} utterances (reports/nlu-holdout.json)")
    assert accuracy >= HOLDOUT_ACCURACY_FLOOR
