"""Evaluating a candidate dialogue model against the one in service, and the rule that decides its promotion.

`predict` runs dialogue/scripts/parse_lines.py in the Rasa environment (one process per model, every text on its
stdin); everything else here is pure: scores, the comparison of two models, the verdict, the confusion picture.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import yaml

from voice_gateway.config import Settings
from voice_gateway.rasa_env import RasaEnv, RasaEnvError

NO_INTENT = "(none)"  # what an empty line, or a model that names no intent, predicts
CHANGE_MIN = 0.005  # an intent's F1 moves by at least this much to count as better or worse
TIE = 1e-9  # float noise below this is a tie (macro F1 sums the same values in another order)
PROMOTION_RULE = "新模型在同一测试集上的准确率和宏平均F1都不低于在用模型时才能上线"
_ENTITY = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\{[^}]*\})")


@dataclass(frozen=True)
class Example:
    text: str
    intent: str


@dataclass(frozen=True)
class Prediction:
    text: str
    intent: str | None
    confidence: float
    ranking: tuple[tuple[str, float], ...] = ()  # the top 3 (name, confidence), best first


def strip_entities(text: str) -> str:
    """The sentence without Rasa's entity markup: `[北京](city)` and `[北京]{"entity": "city"}` become 北京."""
    return _ENTITY.sub(r"\1", text)


def load_test_set(path: Path) -> list[Example]:
    """The examples of a Rasa NLU YAML file, in file order (synonym, regex and lookup blocks are skipped)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    examples = []
    for block in data.get("nlu") or []:
        if "intent" not in block:
            continue
        raw = block.get("examples") or ""
        if isinstance(raw, str):
            texts = [line.strip()[2:] for line in raw.splitlines() if line.strip().startswith("- ")]
        else:  # the long form: a list of {text: ..., metadata: ...}
            texts = [item["text"] if isinstance(item, dict) else str(item) for item in raw]
        examples += [Example(strip_entities(t).strip(), str(block["intent"])) for t in texts if t.strip()]
    return examples


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _prediction(text: str, row: dict[str, Any]) -> Prediction:
    intent = row.get("intent")
    confidence = float(row.get("confidence") or 0.0)
    ranked = row.get("ranking") or row.get("intent_ranking") or []
    ranking = tuple((str(r["name"]), round(float(r.get("confidence") or 0.0), 4)) for r in ranked[:3])
    if not ranking and intent:  # parse_result names the top intent only
        ranking = ((intent, confidence),)
    return Prediction(text, intent, confidence, ranking)


def predict(settings: Settings, model: Path, texts: Sequence[str], *, timeout: float = 1800) -> list[Prediction]:
    """The model's reading of each text: one parse_lines.py process in the Rasa environment, all texts on stdin."""
    rasa = RasaEnv(settings)
    script = settings.dialogue_dir / "scripts" / "parse_lines.py"
    lines = "".join(_one_line(t) + "\n" for t in texts)
    try:
        result = rasa.run(
            [rasa.python, str(script), str(model)],
            input=lines,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise RasaEnvError(f"parse_lines.py took longer than {timeout:.0f} s with {Path(model).name}") from e
    if result.returncode != 0:
        raise RasaEnvError(
            f"parse_lines.py failed with {Path(model).name} (exit {result.returncode}):\n{result.stderr[-2000:]}"
        )
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if len(rows) != len(texts):
        raise RasaEnvError(f"parse_lines.py answered {len(rows)} lines for {len(texts)} texts")
    return [_prediction(text, row) for text, row in zip(texts, rows, strict=True)]


# --- scores ---
@dataclass(frozen=True)
class IntentScore:
    precision: float
    recall: float
    f1: float
    support: int  # how many examples expect it
    predicted: int  # how many times the model said it


@dataclass(frozen=True)
class Outcome:
    text: str
    expected: str
    predicted: str
    confidence: float
    ranking: tuple[tuple[str, float], ...] = ()

    @property
    def correct(self) -> bool:
        return self.expected == self.predicted


@dataclass
class Scores:
    accuracy: float
    macro_f1: float  # over the intents with support
    per_intent: dict[str, IntentScore]
    confusion: dict[str, dict[str, int]]  # expected -> predicted -> count
    outcomes: list[Outcome] = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.outcomes)

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "per_intent": {
                name: {
                    "precision": round(s.precision, 4),
                    "recall": round(s.recall, 4),
                    "f1": round(s.f1, 4),
                    "support": s.support,
                    "predicted": s.predicted,
                }
                for name, s in self.per_intent.items()
            },
            "confusion": {e: dict(row) for e, row in self.confusion.items()},
            "errors": [
                {
                    "text": o.text,
                    "expected": o.expected,
                    "predicted": o.predicted,
                    "confidence": o.confidence,
                    "ranking": [{"name": n, "confidence": c} for n, c in o.ranking],
                }
                for o in self.outcomes
                if not o.correct
            ],
        }


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def score(examples: Sequence[Example], predictions: Sequence[Prediction]) -> Scores:
    """Accuracy, macro F1 over the intents with support, per-intent precision/recall/F1, the confusion counts."""
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    outcomes = []
    for example, prediction in zip(examples, predictions, strict=True):
        if example.text != prediction.text:
            raise ValueError(f"prediction for {prediction.text!r} given for the example {example.text!r}")
        predicted = prediction.intent or NO_INTENT
        outcomes.append(Outcome(example.text, example.intent, predicted, prediction.confidence, prediction.ranking))
    confusion: dict[str, dict[str, int]] = {}
    for o in outcomes:
        row = confusion.setdefault(o.expected, {})
        row[o.predicted] = row.get(o.predicted, 0) + 1
    labels = sorted({o.expected for o in outcomes} | {o.predicted for o in outcomes})
    per_intent = {}
    for label in labels:
        hits = confusion.get(label, {}).get(label, 0)
        support = sum(confusion.get(label, {}).values())
        said = sum(row.get(label, 0) for row in confusion.values())
        precision = hits / said if said else 0.0
        recall = hits / support if support else 0.0
        per_intent[label] = IntentScore(precision, recall, _f1(precision, recall), support, said)
    supported = [s.f1 for s in per_intent.values() if s.support]
    accuracy = sum(o.correct for o in outcomes) / len(outcomes) if outcomes else 0.0
    macro_f1 = sum(supported) / len(supported) if supported else 0.0
    return Scores(accuracy, macro_f1, per_intent, confusion, outcomes)


# --- comparison and the promotion rule ---
@dataclass(frozen=True)
class IntentChange:
    intent: str
    before: float
    after: float

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class Flip:
    text: str
    expected: str
    before: str  # what the model in service said
    after: str  # what the candidate says


@dataclass
class Comparison:
    accuracy_before: float
    accuracy_after: float
    macro_f1_before: float
    macro_f1_after: float
    intents: list[IntentChange]  # every intent with support in either, by name
    better: list[str]
    worse: list[str]
    fixed: list[Flip]  # wrong before, right now
    broken: list[Flip]  # right before, wrong now

    def as_json(self) -> dict[str, Any]:
        return {
            "accuracy": {"before": round(self.accuracy_before, 4), "after": round(self.accuracy_after, 4)},
            "macro_f1": {"before": round(self.macro_f1_before, 4), "after": round(self.macro_f1_after, 4)},
            "intents": [
                {
                    "intent": c.intent,
                    "before": round(c.before, 4),
                    "after": round(c.after, 4),
                    "delta": round(c.delta, 4),
                }
                for c in self.intents
            ],
            "better": self.better,
            "worse": self.worse,
            "fixed": [asdict(f) for f in self.fixed],
            "broken": [asdict(f) for f in self.broken],
        }


def compare(before: Scores, after: Scores) -> Comparison:
    """The candidate (`after`) against the model in service (`before`), on the same examples."""
    if [(o.text, o.expected) for o in before.outcomes] != [(o.text, o.expected) for o in after.outcomes]:
        raise ValueError("the two models were scored on different examples")
    names = sorted({o.expected for o in after.outcomes})  # the intents with support (the same in both)
    zero = IntentScore(0.0, 0.0, 0.0, 0, 0)
    changes = [IntentChange(n, before.per_intent.get(n, zero).f1, after.per_intent.get(n, zero).f1) for n in names]
    flips = [
        (Flip(a.text, a.expected, b.predicted, a.predicted), b.correct, a.correct)
        for b, a in zip(before.outcomes, after.outcomes, strict=True)
    ]
    return Comparison(
        accuracy_before=before.accuracy,
        accuracy_after=after.accuracy,
        macro_f1_before=before.macro_f1,
        macro_f1_after=after.macro_f1,
        intents=changes,
        better=[c.intent for c in changes if c.delta >= CHANGE_MIN],
        worse=[c.intent for c in changes if c.delta <= -CHANGE_MIN],
        fixed=[f for f, was, now in flips if now and not was],
        broken=[f for f, was, now in flips if was and not now],
    )


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str
    reasons: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "rule": self.rule, "reasons": list(self.reasons)}


def _moved(name: str, before: float, after: float) -> tuple[bool, str]:
    lower = after < before - TIE
    points = abs(after - before) * 100
    if lower:
        return True, f"{name}从 {before:.2%} 降到 {after:.2%}（下降 {points:.2f} 个百分点）"
    word = "持平" if abs(after - before) <= TIE else f"上升 {points:.2f} 个百分点"
    return False, f"{name}未下降：{before:.2%} → {after:.2%}（{word}）"


def promotion_verdict(comparison: Comparison | None) -> Verdict:
    """Allowed only when neither accuracy nor macro F1 is lower than the model in service's (ties allowed)."""
    if comparison is None:
        return Verdict(True, PROMOTION_RULE, ["目前没有在用模型，没有可比较的对象，可以上线"])
    acc_lower, acc = _moved("准确率", comparison.accuracy_before, comparison.accuracy_after)
    f1_lower, f1 = _moved("宏平均F1", comparison.macro_f1_before, comparison.macro_f1_after)
    reasons = [acc, f1]
    if comparison.worse:
        reasons.append(f"F1下降的意图（{len(comparison.worse)} 个）：{'、'.join(comparison.worse)}")
    if comparison.broken:
        reasons.append(f"在用模型答对而新模型答错的句子：{len(comparison.broken)} 句")
    return Verdict(not (acc_lower or f1_lower), PROMOTION_RULE, reasons)


# --- the confusion picture ---
def _shade(share: float) -> str:
    """White to dark blue as the row's share goes from 0 to 1."""
    low, high = (255, 255, 255), (8, 69, 148)
    return "#" + "".join(f"{round(lo + (hi - lo) * share):02x}" for lo, hi in zip(low, high, strict=True))


def confusion_svg(scores: Scores, labels: Sequence[str] | None = None, title: str = "意图混淆矩阵") -> str:
    """A standalone SVG of the confusion matrix: rows expected, columns predicted, shade by the row's share."""
    if labels is None:
        used = {e for e, row in scores.confusion.items() for p, n in row.items() if n} | {
            p for row in scores.confusion.values() for p, n in row.items() if n
        }
        labels = sorted(used)
    cell, char = 18, 6.6  # px: a cell, and one character of a 11px label
    names = [f"{label} ({sum(scores.confusion.get(label, {}).values())})" for label in labels]
    left = round(max((len(n) for n in names), default=4) * char) + 30
    top = round(max((len(label) for label in labels), default=4) * char) + 50
    width, height = left + cell * len(labels) + 20, top + cell * len(labels) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        '<text x="10" y="38" fill="#555">列：识别结果 · 行：预期意图 · 颜色：占该行的比例</text>',
    ]
    for i, (label, name) in enumerate(zip(labels, names, strict=True)):
        y = top + i * cell + cell / 2 + 4
        out.append(f'<text x="{left - 6}" y="{y:.0f}" text-anchor="end">{escape(name)}</text>')
        x = left + i * cell + cell / 2 + 4
        out.append(f'<text x="{x:.0f}" y="{top - 6}" transform="rotate(-90 {x:.0f} {top - 6})">{escape(label)}</text>')
    for i, expected in enumerate(labels):
        row = scores.confusion.get(expected, {})
        total = sum(row.values())
        for j, predicted in enumerate(labels):
            count = row.get(predicted, 0)
            share = count / total if total else 0.0
            x, y = left + j * cell, top + i * cell
            tip = escape(f"{expected} → {predicted}: {count} ({share:.0%})")
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_shade(share)}" '
                f'stroke="{"#d62728" if i == j else "#e5e5e5"}" stroke-width="{1.5 if i == j else 0.5}">'
                f"<title>{tip}</title></rect>"
            )
            if count:
                colour = "#fff" if share > 0.5 else "#000"
                out.append(
                    f'<text x="{x + cell / 2:.0f}" y="{y + cell / 2 + 3:.0f}" text-anchor="middle" '
                    f'font-size="9" fill="{colour}">{count}</text>'
                )
    out.append(
        f'<text x="10" y="{height - 12}" fill="#555">准确率 {scores.accuracy:.2%} · 宏平均F1 '
        f"{scores.macro_f1:.4f} · {scores.n} 句</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- the report ---
@dataclass
class Section:
    """One set of examples scored with both models."""

    n: int
    before: Scores | None
    after: Scores
    comparison: Comparison | None

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "before": self.before.as_json() if self.before else None,
            "after": self.after.as_json(),
            "comparison": self.comparison.as_json() if self.comparison else None,
        }


def _section(examples: list[Example], before: list[Prediction] | None, after: list[Prediction]) -> Section:
    scored_before = score(examples, before) if before is not None else None
    scored_after = score(examples, after)
    comparison = compare(scored_before, scored_after) if scored_before else None
    return Section(len(examples), scored_before, scored_after, comparison)


@dataclass
class Report:
    candidate: str  # model file names
    in_service: str | None
    test: Section  # decides the verdict
    extra: Section | None  # the trainer's annotated turns, alone
    combined: Section | None  # the test set and the annotated turns together
    verdict: Verdict
    svg: str  # the candidate's confusion matrix on the test set
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def before(self) -> Scores | None:
        return self.test.before

    @property
    def after(self) -> Scores:
        return self.test.after

    @property
    def comparison(self) -> Comparison | None:
        return self.test.comparison

    @property
    def stem(self) -> str:
        return self.candidate.removesuffix(".tar.gz")

    def summary(self) -> dict[str, Any]:
        """What a model's version record keeps of its report."""
        return {
            "accuracy": round(self.after.accuracy, 4),
            "macro_f1": round(self.after.macro_f1, 4),
            "compared_with": self.in_service,
            "allowed": self.verdict.allowed,
            "reasons": list(self.verdict.reasons),
            "report": f"{self.stem}.report.json",
            "created_at": self.created_at,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "in_service": self.in_service,
            "created_at": self.created_at,
            "verdict": self.verdict.as_json(),
            "test": self.test.as_json(),
            "extra": self.extra.as_json() if self.extra else None,
            "combined": self.combined.as_json() if self.combined else None,
            "confusion_svg": f"{self.stem}.confusion.svg",
        }

    def write(self, folder: Path) -> Path:
        """<model>.report.json and <model>.confusion.svg in `folder`; returns the JSON's path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{self.stem}.confusion.svg").write_text(self.svg, encoding="utf-8")
        path = folder / f"{self.stem}.report.json"
        path.write_text(json.dumps(self.as_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path


def evaluate(
    settings: Settings,
    candidate: Path,
    in_service: Path | None,
    test_set: list[Example],
    extra: Iterable[Example] = (),
) -> Report:
    """Both models on the test set and the trainer's annotated turns (one Rasa process per model); the verdict
    looks at the test set only, since the candidate was trained on the annotated turns."""
    if not test_set:
        raise ValueError("the test set is empty")
    extra = list(extra)
    examples = [*test_set, *extra]
    texts = [e.text for e in examples]
    after = predict(settings, candidate, texts)
    before = None
    if in_service is not None:
        same = Path(in_service).resolve() == Path(candidate).resolve()
        before = after if same else predict(settings, in_service, texts)
    cut = len(test_set)
    test = _section(test_set, before and before[:cut], after[:cut])
    extra_section = _section(extra, before and before[cut:], after[cut:]) if extra else None
    combined = _section(examples, before, after) if extra else None
    return Report(
        candidate=Path(candidate).name,
        in_service=Path(in_service).name if in_service else None,
        test=test,
        extra=extra_section,
        combined=combined,
        verdict=promotion_verdict(test.comparison),
        svg=confusion_svg(test.after),
    )
