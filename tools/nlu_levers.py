"""The levers of issue 10's text understanding, each trained and measured (run by `tools/nlu_eval.py levers`).

Every lever is a pipeline built from the pipeline the project had before them (BASE below). For the baseline
with C re-chosen, "+ pinyin 1-2" and the stripper levers, C of the logistic regression is chosen on the DEV
split only (the mean of clean and swapped-text dev accuracy over C_GRID; ties go to the smaller C), with Rasa's
training cache on; the other pinyin variants take the C chosen for "+ pinyin 1-2", the first lever C = 5 and the
last the C in dialogue/config.yml. The lever is then trained again with the cache off (the training time
reported; on a shared machine it varies) and measured on dev and on eval. Eval never chooses anything.
Report: reports/nlu-levers.json, each lever replaced as it is measured.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from nlu_eval import REPORTS, ROOT, evaluate, homophone_table, write_report

C_GRID = (2.0, 5.0, 10.0, 20.0)
GREETING_PROBES = [
    "喂你好我是保卡丢了想挂试一下",  # Whisper's hearing of 喂你好我社保卡丢了想挂失一下
    "喂你好我社保卡丢了想挂失一下",
    "喂，你好。",
    "喂您好是12333吗",
]
BASE: list[dict[str, Any]] = [
    {"name": "JiebaTokenizer", "dictionary_path": "dictionary"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3},
    {"name": "components.hotline_entities.HotlineEntityExtractor"},
    {"name": "components.intent_classifier.HotlineIntentClassifier", "C": 5, "max_iter": 1000, "random_state": 12333},
    {"name": "components.language_guard.LanguageGuard"},
    {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.05},
]
STRIPPER = {"name": "components.filler_stripper.LeadingFillerStripper"}


def pinyin(**options: Any) -> dict[str, Any]:
    return {"name": "components.pinyin_featurizer.PinyinFeaturizer", **options}


def _insert(pipeline: list[dict[str, Any]], after: int, component: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pipeline[: after + 1], component, *pipeline[after + 1 :]]


def _levers() -> dict[str, Callable[[], list[dict[str, Any]]]]:
    strip = _insert(BASE, 0, STRIPPER)  # the stripper right after the tokenizer
    return {
        "baseline (C=5 as chosen on the old held-out file)": lambda: BASE,
        "baseline, C chosen on dev": lambda: BASE,
        "+ pinyin 1-2": lambda: _insert(BASE, 2, pinyin(max_ngram=2)),
        "+ pinyin 1-3": lambda: _insert(BASE, 2, pinyin(max_ngram=3)),
        "+ pinyin 1-2 + initials/finals": lambda: _insert(BASE, 2, pinyin(max_ngram=2, initials_finals=True)),
        "+ pinyin 1-2 + accent-merged": lambda: _insert(BASE, 2, pinyin(max_ngram=2, fuzzy=True)),
        "+ leading filler stripper": lambda: strip,
        "+ pinyin 1-2 + stripper": lambda: _insert(strip, 3, pinyin(max_ngram=2)),
        "dialogue/config.yml as committed": lambda: yaml.safe_load(
            (ROOT / "dialogue" / "config.yml").read_text(encoding="utf-8")
        )["pipeline"],  # C as configured
    }


def _fixed_c(label: str, report: dict[str, Any]) -> float | None:
    """The variants of the pinyin features use the C chosen for "+ pinyin 1-2" (one training each, not a grid)."""
    if not label.startswith("+ pinyin 1-") or label == "+ pinyin 1-2" or "stripper" in label:
        return None
    chosen = [r["C"] for r in report["levers"] if r["lever"] == "+ pinyin 1-2"]
    if not chosen:
        raise SystemExit(f"measure '+ pinyin 1-2' before '{label}'")
    return chosen[0]


def _with_c(pipeline: list[dict[str, Any]], c: float | None) -> list[dict[str, Any]]:
    pipeline = copy.deepcopy(pipeline)
    for component in pipeline:
        if component["name"].endswith("HotlineIntentClassifier") and c is not None:
            component["C"] = c
    return pipeline


def train(pipeline: list[dict[str, Any]], workdir: Path, name: str, cache: bool) -> tuple[Path, float]:
    """An NLU-only model of this pipeline on nlu_data/nlu/; (model, seconds)."""
    from rasa.model_training import train_nlu

    config = workdir / f"{name}.yml"
    config.write_text(yaml.safe_dump({"recipe": "default.v1", "language": "zh", "pipeline": pipeline}), "utf-8")
    os.environ["RASA_MAX_CACHE_SIZE"] = "1000" if cache else "0"
    os.environ["RASA_CACHE_DIRECTORY"] = str(workdir / "cache")
    start = time.monotonic()
    model = train_nlu(str(config), str(ROOT / "nlu_data" / "nlu"), str(workdir), fixed_model_name=name)
    if not model:
        raise RuntimeError(f"training {name} failed")
    return Path(model), time.monotonic() - start


def _dev_score(report: dict[str, Any]) -> float:
    return (report["clean"]["accuracy"] + report["swapped"]["accuracy"]) / 2


def measure(label: str, pipeline: list[dict[str, Any]], choose_c: bool, table: dict[str, list[str]]) -> dict:
    with tempfile.TemporaryDirectory(prefix="nlu-lever-") as tmp:
        workdir = Path(tmp)
        grid: dict[str, float] = {}
        chosen = None
        if choose_c:
            for i, c in enumerate(C_GRID):
                model, _ = train(_with_c(pipeline, c), workdir, f"c{i}", cache=True)
                grid[str(c)] = round(_dev_score(evaluate(model, "dev", [], table)), 4)
            chosen = max(C_GRID, key=lambda c: (grid[str(c)], -c))
        model, seconds = train(_with_c(pipeline, chosen), workdir, "final", cache=False)
        dev = evaluate(model, "dev", GREETING_PROBES, table)
        ev = evaluate(model, "eval", [], table)
    c_used = next(x.get("C") for x in _with_c(pipeline, chosen) if x["name"].endswith("HotlineIntentClassifier"))
    return {
        "lever": label,
        "C": c_used,
        "dev_by_C": grid,
        "dev": {
            "clean": dev["clean"]["accuracy"],
            "swapped": dev["swapped"]["accuracy"],
            "prefixed": dev["prefixed"]["accuracy"],
        },
        "eval": {"clean": ev["clean"]["accuracy"], "swapped": ev["swapped"]["accuracy"], "gap": ev["gap"]},
        "training_s": round(seconds, 1),
        "greeting_probes": [{k: p[k] for k in ("text", "intent", "confidence")} for p in dev["probes"]],
        "sentences": {"dev": dev["sentences"], "eval": ev["sentences"]},
        "commit": dev["commit"],
        "pipeline": _with_c(pipeline, chosen),
    }


def run_levers(names: list[str]) -> dict[str, Any]:
    """Measure the levers (all, or those named exactly or by part of the label) into reports/nlu-levers.json.

    Each lever's result replaces that lever's entry in the report as soon as it is measured.
    """
    os.chdir(ROOT / "dialogue")  # the pipeline's dictionary_path is relative to the Rasa project
    table = homophone_table()
    path = REPORTS / "nlu-levers.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"levers": []}
    order = list(_levers())
    exact = [label for label in order if label in names]
    for label, build in _levers().items():
        if names and label not in exact and not any(n in label for n in names if n not in order):
            continue
        c = _fixed_c(label, report)
        choose_c = c is None and (label.startswith("+") or "C chosen" in label)
        result = measure(label, _with_c(build(), c), choose_c, table)
        kept = [r for r in report["levers"] if r["lever"] != label and r["lever"] in order]
        report = {"c_grid": list(C_GRID), "levers": sorted([*kept, result], key=lambda r: order.index(r["lever"]))}
        write_report(path.name, report)
        print(f"{label}: {result['dev']} {result['eval']} {result['training_s']} s", flush=True)
    return {"levers": [{k: r[k] for k in ("lever", "C", "dev", "eval", "training_s")} for r in report["levers"]]}
