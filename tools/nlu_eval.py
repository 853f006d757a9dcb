"""Intent accuracy on the honest held-out splits, on clean text and with same-sounding characters swapped in.

    .venv/bin/python tools/nlu_eval.py split                 # tests/data/nlu_holdout.yml -> nlu_dev.yml, nlu_eval.yml
    .venv/bin/python tools/nlu_eval.py evaluate --split eval # the trained model (models/), report in reports/
    .venv/bin/python tools/nlu_eval.py levers                # train each lever's pipeline, measure it (slow)
    .venv/bin/python tools/nlu_eval.py table                 # reports/nlu-levers.json as a Markdown table

`split` drops the held-out sentences that are (nearly) training examples (components.caller_text.leaks), then
puts each remaining sentence in dev or eval by a hash of its text. Dev is for choosing hyperparameters and
levers; eval is only reported. The swapped text replaces one Chinese character in five (deterministic per
sentence and seed) by another common character with the same toneless pinyin (pypinyin's dictionary, inverted).
Evaluation loads the model itself (no server); run from the gateway's .venv it re-runs itself in the Rasa
environment (HOTLINE_RASA_ENV, or the one ./hotline built for requirements/rasa.lock).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "dialogue"))

from components.caller_text import leading_filler_end, leaks  # noqa: E402

DATA = ROOT / "tests" / "data"
SPLITS = {"dev": DATA / "nlu_dev.yml", "eval": DATA / "nlu_eval.yml"}
HOLDOUT = DATA / "nlu_holdout.yml"
TRAINING = ROOT / "nlu_data" / "nlu"
REPORTS = ROOT / "reports"
SWAP_RATE, SEED = 0.2, 12333
# what callers say before a request; "prefixed" puts one (chosen by the sentence) before every request
# (every sentence but the conversation-control ones: a greeting before 对 or 再见 is not a request)
CONTROL_INTENTS = {"greet", "goodbye", "thank", "affirm", "deny", "repeat", "stop"}
GREETING_PREFIXES = ("喂你好", "喂，你好，", "嗯，那个，", "你好，请问", "喂喂，", "喂您好，那个")


def read_examples(path: Path) -> list[tuple[str, str]]:
    """(intent, text) pairs of a Rasa NLU file or folder, in file order."""
    pairs = []
    for file in sorted(path.glob("*.yml")) if path.is_dir() else [path]:
        for block in yaml.safe_load(file.read_text(encoding="utf-8"))["nlu"]:
            lines = [line[2:].strip() for line in block["examples"].splitlines() if line.startswith("- ")]
            pairs.extend((block["intent"], text) for text in lines)
    return pairs


def write_examples(path: Path, pairs: list[tuple[str, str]], comment: str) -> None:
    by_intent: dict[str, list[str]] = {}
    for intent, text in pairs:
        by_intent.setdefault(intent, []).append(text)
    lines = [f"# {line}" for line in comment.splitlines()] + ['version: "3.1"', "nlu:"]
    for intent, texts in by_intent.items():
        lines += [f"- intent: {intent}", "  examples: |", *(f"    - {t}" for t in texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def split_of(text: str) -> str:
    """dev or eval, from the text alone (so a sentence never moves when others are added)."""
    return "dev" if hashlib.sha256(text.encode()).digest()[0] % 2 == 0 else "eval"


def make_splits() -> dict[str, Any]:
    held = read_examples(HOLDOUT)
    training = [text for _, text in read_examples(TRAINING)]
    dropped = leaks([text for _, text in held], training)
    kept = [(i, t) for i, t in held if t not in dropped]
    note = (
        "Made by tools/nlu_eval.py split from tests/data/nlu_holdout.yml: the held-out sentences that are not\n"
        "(nearly) training examples, by a hash of the text. {what} Never copy these into nlu_data/."
    )
    what = {"dev": "DEV: for choosing hyperparameters and levers.", "eval": "EVAL: only reported, never tuned on."}
    for name, path in SPLITS.items():
        write_examples(path, [(i, t) for i, t in kept if split_of(t) == name], note.format(what=what[name]))
    counts = {name: sum(split_of(t) == name for _, t in kept) for name in SPLITS}
    return {"held_out": len(held), "dropped_near_training": len(dropped), **counts}


# --- homophones (Rasa environment: pypinyin) ---
def _cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def homophone_table() -> dict[str, list[str]]:
    """Toneless syllable -> common characters read that way (their first reading): GB2312 level 1 + training."""
    from pypinyin import Style, pinyin

    level1 = (bytes([hi, lo]).decode("gb2312", errors="ignore") for hi in range(0xB0, 0xD8) for lo in range(0xA1, 0xFF))
    common = {c for c in level1 if c and _cjk(c)}
    common |= {c for _, t in read_examples(TRAINING) for c in t if _cjk(c)}
    table: dict[str, list[str]] = {}
    for ch in sorted(common):
        table.setdefault(pinyin(ch, style=Style.NORMAL)[0][0], []).append(ch)
    return table


def swap_homophones(text: str, table: dict[str, list[str]], rate: float = SWAP_RATE, seed: int = SEED) -> str:
    """One Chinese character in five (rounded) replaced by a different one with the same toneless pinyin."""
    from pypinyin import Style, lazy_pinyin

    readings = lazy_pinyin(text, style=Style.NORMAL, errors=lambda chunk: ["-"] * len(chunk))
    if len(readings) != len(text):
        readings = [lazy_pinyin(ch, style=Style.NORMAL)[0] if _cjk(ch) else "-" for ch in text]
    chars = list(text)
    cjk = [i for i, ch in enumerate(chars) if _cjk(ch)]
    options = [i for i in cjk if [c for c in table.get(readings[i], []) if c != chars[i]]]
    rng = random.Random(f"{seed}:{text}")
    for i in rng.sample(options, min(len(options), int(len(cjk) * rate + 0.5))):
        chars[i] = rng.choice([c for c in table[readings[i]] if c != chars[i]])
    return "".join(chars)


def with_greeting(text: str) -> str:
    """The sentence after a greeting or filler prefix, chosen by the sentence's hash."""
    return GREETING_PREFIXES[hashlib.sha256(text.encode()).digest()[1] % len(GREETING_PREFIXES)] + text


# --- evaluation (Rasa environment) ---
def _git_commit() -> str:
    run = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "dialogue", "nlu_data", "tests/data"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return run.stdout.strip() + ("+uncommitted" if dirty else "")


def parse_all(model: Path, texts: list[str]) -> list[dict[str, Any]]:
    import asyncio

    from rasa.core.agent import Agent

    from hotline_domain.nlu import parse_result

    agent = Agent.load(str(model))

    async def run() -> list[dict[str, Any]]:
        return [parse_result(t, await agent.parse_message(t)) for t in texts]

    return asyncio.run(run())


def accuracy(pairs: list[tuple[str, str]], parsed: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    errors = [{**p, "expected": i} for (i, _), p in zip(pairs, parsed, strict=True) if p["intent"] != i]
    return 1 - len(errors) / len(pairs), errors


def evaluate(model: Path, split: str, probes: list[str], table: dict[str, list[str]] | None = None) -> dict:
    pairs = read_examples(SPLITS[split])
    table = table if table is not None else homophone_table()
    swapped = [(i, swap_homophones(t, table)) for i, t in pairs]
    prefixed = [(i, with_greeting(t)) for i, t in pairs if i not in CONTROL_INTENTS and leading_filler_end(t) == 0]
    n, m = len(pairs), len(prefixed)
    parsed = parse_all(model, [t for _, t in pairs + swapped + prefixed] + probes)
    clean_acc, clean_err = accuracy(pairs, parsed[:n])
    swap_acc, swap_err = accuracy(swapped, parsed[n : 2 * n])
    prefix_acc, prefix_err = accuracy(prefixed, parsed[2 * n : 2 * n + m])
    return {
        "split": split,
        "sentences": len(pairs),
        "model": model.name,
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()[:16],
        "commit": _git_commit(),
        "clean": {"accuracy": round(clean_acc, 4), "errors": clean_err},
        "swapped": {"accuracy": round(swap_acc, 4), "swap_rate": SWAP_RATE, "seed": SEED, "errors": swap_err},
        "gap": round(clean_acc - swap_acc, 4),
        "prefixed": {"accuracy": round(prefix_acc, 4), "sentences": m, "errors": prefix_err},
        "probes": parsed[2 * n + m :],
    }


def quiet() -> None:
    """Rasa logs debug lines through structlog to stdout unless told otherwise."""
    import logging

    import structlog

    logging.disable(logging.WARNING)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def _in_rasa_env() -> None:
    """Re-run this command in the Rasa environment if it is not the one running."""
    try:
        import rasa  # noqa: F401
    except ImportError:
        pass
    else:
        return
    prefix = os.environ.get("HOTLINE_RASA_ENV")
    if not prefix:
        lock = hashlib.sha256((ROOT / "requirements" / "rasa.lock").read_bytes()).hexdigest()[:12]
        cache = Path(os.environ.get("HOTLINE_CACHE") or Path.home() / ".cache" / "hotline")
        prefix = str(cache / f"rasa-{lock}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "dialogue")]),
               RASA_TELEMETRY_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")  # fmt: skip
    os.execve(f"{prefix}/bin/python", [f"{prefix}/bin/python", __file__, *sys.argv[1:]], env)


def latest_model() -> Path:
    models = sorted((ROOT / "models").glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise SystemExit("no trained model in models/: run ./hotline train")
    return models[-1]


def write_report(name: str, report: dict[str, Any]) -> Path:
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / name
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def lever_table(report: dict[str, Any]) -> str:
    """The lever-by-lever table of a `levers` report, in Markdown."""
    rows = [
        "| lever | C | dev clean / swapped | dev after a greeting | eval clean / swapped (gap) | training |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["levers"]:
        dev, ev = r["dev"], r["eval"]
        prefixed = f"{dev['prefixed']:.3f}" if "prefixed" in dev else "-"
        rows.append(
            f"| {r['lever']} | {r['C']:g} | {dev['clean']:.3f} / {dev['swapped']:.3f} | {prefixed} | "
            f"{ev['clean']:.3f} / {ev['swapped']:.3f} ({ev['gap'] * 100:.1f} pt) | {r['training_s']:.0f} s |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("split", help="write tests/data/nlu_dev.yml and nlu_eval.yml from nlu_holdout.yml")
    ev = sub.add_parser("evaluate", help="clean and swapped-text intent accuracy of a trained model")
    ev.add_argument("--split", choices=tuple(SPLITS), default="dev")
    ev.add_argument("--model", type=Path, help="model .tar.gz (default: the newest in models/)")
    ev.add_argument("--probe", action="append", default=[], help="also parse this text (repeatable)")
    ev.add_argument("--out", help="report file name in reports/ (default nlu-eval-SPLIT.json)")
    lv = sub.add_parser("levers", help="train and measure each lever (see tools/nlu_levers.py)")
    lv.add_argument("names", nargs="*", help="only these levers")
    sub.add_parser("table", help="reports/nlu-levers.json as a Markdown table")
    args = parser.parse_args()
    if args.command == "split":
        print(json.dumps(make_splits()))
        return 0
    if args.command == "table":
        print(lever_table(json.loads((REPORTS / "nlu-levers.json").read_text(encoding="utf-8"))))
        return 0
    _in_rasa_env()
    quiet()
    if args.command == "levers":
        sys.path.insert(0, str(ROOT / "tools"))
        from nlu_levers import run_levers

        print(json.dumps(run_levers(args.names), ensure_ascii=False, indent=1))
        return 0
    report = evaluate((args.model or latest_model()).resolve(), args.split, args.probe)
    path = write_report(args.out or f"nlu-eval-{args.split}.json", report)
    summary = {k: report[k] for k in ("split", "sentences", "model", "commit", "gap")}
    print(json.dumps({**summary, "clean": report["clean"]["accuracy"], "swapped": report["swapped"]["accuracy"],
                      "report": str(path)}, ensure_ascii=False))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
