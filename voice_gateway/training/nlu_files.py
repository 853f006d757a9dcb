"""The trainers' NLU examples (nlu_data/nlu/*.yml): read them, add one, commit the change.

A new example is written round-trip with ruamel.yaml: comments, ordering, quoting, the literal `examples: |`
blocks and the `version: "3.1"` header stay byte for byte; the write is checked to be exactly the added line(s)
before it replaces the file. Every refusal is an `AnnotationRefused` whose `message` a trainer reads in the page.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import re
import subprocess
import tempfile
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import LiteralScalarString
from ruamel.yaml.util import load_yaml_guess_indent

__all__ = ["AnnotationRefused", "Entity", "IntentSummary", "NluFiles", "commit", "normalise", "write_atomically"]

MAX_EXAMPLE = 200  # characters of plain text
TRAINER_EMAIL_DOMAIN = "trainers.hotline.local"
# Rasa's inline entity markup: [span](entity), [span](entity:value), [span]{"entity": ...}, [span][{...}, ...]
_MARKUP = re.compile(r"\[(?P<text>[^\]]+?)\](?:\([^)]*\)|\{[^}]*\}|\[[^\]]*\])")


class AnnotationRefused(ValueError):
    """An example the data does not take; `message` says why, in Chinese, for the trainer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Entity:
    """An entity in an example: character offsets into its text; `value` only when it differs from the span."""

    start: int
    end: int
    entity: str
    value: str | None = None


@dataclass(frozen=True)
class IntentSummary:
    """A domain intent, the NLU files that hold its examples, and how many there are."""

    name: str
    files: tuple[Path, ...]
    examples: int


def normalise(text: str) -> str:
    """What two examples are compared on: no markup, spaces or punctuation; half-width; lower case."""
    plain = _MARKUP.sub(lambda m: m.group("text"), text)
    plain = unicodedata.normalize("NFKC", plain).lower()
    return "".join(ch for ch in plain if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def markup(text: str, entities: Iterable[Entity] = ()) -> str:
    """The example as Rasa writes it: `[span](entity)`, or `[span]{"entity": ..., "value": ...}`."""
    out, at = [], 0
    for e in sorted(entities, key=lambda e: e.start):
        span = text[e.start : e.end]
        out.append(text[at : e.start])
        if e.value is None or e.value == span:
            out.append(f"[{span}]({e.entity})")
        else:
            out.append(f"[{span}]" + json.dumps({"entity": e.entity, "value": e.value}, ensure_ascii=False))
        at = e.end
    out.append(text[at:])
    return "".join(out)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (a temporary file in the same folder, then os.replace), keeping its mode."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _example_lines(block: Any) -> Iterator[str]:
    """The examples of one `examples:` value, as Rasa reads them (a `- ` list in a string, or `text:` items)."""
    if isinstance(block, str):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("-"):
                line = line[1:].strip()
            if line:
                yield line
    elif isinstance(block, list):
        for item in block:
            text = item.get("text") if isinstance(item, dict) else None
            if isinstance(text, str) and text.strip():
                yield text.strip()


def _names(items: Any) -> list[str]:
    """Names from a domain list whose items are a name or {name: options}."""
    names = []
    for item in items or []:
        names.extend(item.keys() if isinstance(item, dict) else [str(item)])
    return names


class NluFiles:
    """The NLU examples under `data_root`/nlu (the nlu_data folder), checked against the domain at `domain_path`."""

    def __init__(self, data_root: Path, domain_path: Path) -> None:
        self.data_root = Path(data_root)
        self.nlu_dir = self.data_root / "nlu"
        self.domain_path = Path(domain_path)
        self._lock = threading.Lock()

    # --- reading ---
    def _domain(self) -> dict[str, Any]:
        return yaml.safe_load(self.domain_path.read_text(encoding="utf-8")) or {}

    def domain_intents(self) -> list[str]:
        return _names(self._domain().get("intents"))

    def domain_entities(self) -> list[str]:
        return _names(self._domain().get("entities"))

    def _files(self) -> list[Path]:
        return sorted(p for p in self.nlu_dir.rglob("*.yml") if p.is_file())

    def _blocks(self) -> Iterator[tuple[Path, str, list[str]]]:
        """(file, intent, examples) for every intent block of every NLU file, in file order."""
        for file in self._files():
            data = yaml.load(file.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
            for block in data.get("nlu") or []:
                if isinstance(block, dict) and "intent" in block:
                    yield file, str(block["intent"]), list(_example_lines(block.get("examples")))

    def _by_intent(self) -> dict[str, tuple[list[Path], list[str]]]:
        found: dict[str, tuple[list[Path], list[str]]] = {}
        for file, intent, lines in self._blocks():
            files, examples = found.setdefault(intent, ([], []))
            if file not in files:
                files.append(file)
            examples.extend(lines)
        return found

    def intents(self) -> list[IntentSummary]:
        """The domain's intents in its order, each with the file(s) holding its examples and their count."""
        found = self._by_intent()
        return [
            IntentSummary(name, tuple(found.get(name, ([], []))[0]), len(found.get(name, ([], []))[1]))
            for name in self.domain_intents()
        ]

    def examples(self, intent: str) -> list[str]:
        """The examples of one intent, as written (with any entity markup)."""
        if intent not in self.domain_intents():
            raise AnnotationRefused(f"没有这个意图：{intent}")
        return list(self._by_intent().get(intent, ([], []))[1])

    def find(self, text: str) -> list[tuple[str, str]]:
        """(intent, example) for every example that is the same sentence as `text` once normalised."""
        key = normalise(text)
        if not key:
            return []
        return [(intent, ex) for _, intent, lines in self._blocks() for ex in lines if normalise(ex) == key]

    # --- writing ---
    def add_example(self, intent: str, text: str, entities: Sequence[Entity] = ()) -> Path:
        """Add one example at the end of the intent's `examples: |` block; returns the file written."""
        with self._lock:
            line = self._checked(intent, text, entities)
            found = self._by_intent()
            if intent in found and found[intent][0]:
                file = found[intent][0][0]
                _insert(file, intent, line)
            else:
                file = self._file_of_new_intent(intent, found)
                _insert(file, intent, line, new_block=True)
            return file

    def _checked(self, intent: str, text: str, entities: Sequence[Entity]) -> str:
        """The example line to write, or AnnotationRefused."""
        if intent not in self.domain_intents():
            raise AnnotationRefused(f"没有这个意图：{intent}")
        lead = len(text) - len(text.lstrip())
        plain = text.strip()
        if not normalise(plain):
            raise AnnotationRefused("例句不能为空")
        if len(plain) > MAX_EXAMPLE:
            raise AnnotationRefused(f"例句太长了：最多 {MAX_EXAMPLE} 个字，这句有 {len(plain)} 个字")
        if any(unicodedata.category(ch) == "Cc" for ch in plain):
            raise AnnotationRefused("例句里不能有换行或控制字符")
        if "[" in plain or "]" in plain:
            raise AnnotationRefused("例句里不能有方括号 [ ]（那是标实体用的）")
        shifted = [Entity(e.start - lead, e.end - lead, e.entity, e.value) for e in entities]
        known = set(self.domain_entities())
        at = 0
        for e in sorted(shifted, key=lambda e: (e.start, e.end)):
            if not (0 <= e.start < e.end <= len(plain)) or e.start < at:
                raise AnnotationRefused(f"实体位置不对：{e.entity} {e.start + lead}-{e.end + lead}")
            if e.entity not in known:
                raise AnnotationRefused(f"没有这个实体：{e.entity}")
            at = e.end
        for other, example in self.find(plain):
            if other == intent:
                raise AnnotationRefused(f"这句话已经是「{intent}」的训练例句：{example}")
            raise AnnotationRefused(f"这句话已经归在「{other}」下，不能再归到「{intent}」：{example}")
        return markup(plain, shifted)

    def _file_of_new_intent(self, intent: str, found: dict[str, tuple[list[Path], list[str]]]) -> Path:
        """The NLU file of the intent's service domain: where the intents of its group in domain.yml are."""
        group = next((g for g in _intent_groups(self.domain_path.read_text(encoding="utf-8")) if intent in g), [])
        files = Counter(f for name in group if name in found for f in found[name][0])
        if not files:
            raise AnnotationRefused(
                f"不知道「{intent}」该写进哪个文件：domain.yml 里和它同组的意图都还没有例句，请先找工程师建好"
            )
        return files.most_common(1)[0][0]


def _intent_groups(domain_text: str) -> list[list[str]]:
    """The intents of domain.yml grouped by the comment lines that head them (`# 社保卡`, `# control`...)."""
    groups: list[list[str]] = []
    inside = False
    for raw in domain_text.splitlines():
        if not inside:
            inside = raw.rstrip() == "intents:"
            continue
        line = raw.strip()
        if raw and not raw[0].isspace() and not raw.startswith(("#", "-")):
            break  # the next top-level key
        if line.startswith("#") or not groups:
            groups.append([])
        if line.startswith("- "):
            groups[-1].append(line[2:].split("#")[0].split(":")[0].strip().strip("'\""))
    return [g for g in groups if g]


def _yaml_for(text: str) -> YAML:
    """A round-trip YAML with this file's indentation (the mapping indent read off its first examples block)."""
    _, sequence, offset = load_yaml_guess_indent(text)
    mapping = 2
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip().startswith("examples:") and lines[i + 1].strip():
            key_col = len(line) - len(line.lstrip())
            mapping = max(1, len(lines[i + 1]) - len(lines[i + 1].lstrip()) - key_col)
            break
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 1 << 16  # never fold a line
    rt.indent(mapping=mapping, sequence=sequence or 2, offset=offset or 0)
    return rt


def _append(block: str, line: str) -> LiteralScalarString:
    """The literal block with `- line` after its last example, its trailing newlines (and so chomping) kept."""
    body = block.rstrip("\n")
    trail = block[len(body) :] or ("\n" if not body else "")
    return LiteralScalarString(f"{body}\n- {line}{trail}" if body else f"- {line}{trail}")


def _insert(file: Path, intent: str, line: str, *, new_block: bool = False) -> None:
    """Write `line` into `file` round-trip; refuse to write if anything but the added lines would change."""
    raw = file.read_bytes()
    text = raw.decode("utf-8")
    rt = _yaml_for(text)
    data = rt.load(text)
    blocks = data.get("nlu") if isinstance(data, dict) else None
    if blocks is None:
        raise AnnotationRefused(f"{file.name} 不是 NLU 文件（没有 nlu:）")
    if new_block:
        blocks.append(CommentedMap([("intent", intent), ("examples", LiteralScalarString(f"- {line}\n"))]))
    else:
        block = next(b for b in blocks if isinstance(b, dict) and str(b.get("intent")) == intent)
        if not isinstance(block.get("examples"), str):
            raise AnnotationRefused(f"「{intent}」的例句不是 examples: | 的写法，请找工程师改")
        block["examples"] = _append(str(block["examples"]), line)
    out = io.StringIO()
    rt.dump(data, out)
    new = out.getvalue()
    if new.endswith("\n...\n") and not text.rstrip().endswith("..."):
        new = new[: -len("...\n")]  # the document-end marker ruamel adds after a `|+` block: the file had none
    if "\r\n" in text:
        new = new.replace("\r\n", "\n").replace("\n", "\r\n")
    _check_only_added(text, new, line)
    write_atomically(file, new.encode("utf-8"))


def _check_only_added(old: str, new: str, line: str) -> None:
    """The new text is the old one with lines inserted in one place, the example among them."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    changes = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if len(changes) != 1 or changes[0][0] != "insert" or not any(line in s for s in b[changes[0][3] : changes[0][4]]):
        raise RuntimeError("写回文件时会改动别的内容，没有写入：请找工程师看看这个文件的格式")


# --- committing ---
def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=False)


def head(repo: Path) -> str | None:
    """The commit `repo` is at (what a model was trained on); None outside a git work tree."""
    done = _git(Path(repo), "rev-parse", "HEAD")
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def commit(repo: Path, paths: list[Path], message: str, author: str) -> str:
    """`git add` and `git commit` just `paths` in `repo`, authored by the trainer; the new commit's sha."""
    repo = Path(repo)
    if not author.strip() or any(ch in author for ch in "<>\n"):
        raise RuntimeError(f"提交人名字不对：{author!r}")
    probe = _git(repo, "rev-parse", "--is-inside-work-tree") if repo.is_dir() else None
    if probe is None or probe.returncode != 0 or probe.stdout.strip() != "true":
        raise RuntimeError(f"不是 git 仓库，无法提交：{repo}")
    top = Path(_git(repo, "rev-parse", "--show-toplevel").stdout.strip()).resolve()
    rel = []
    for path in paths:
        full = (repo / path).resolve()
        if not full.is_relative_to(top):
            raise RuntimeError(f"文件不在仓库里，无法提交：{path}")
        rel.append(str(full.relative_to(top)))
    if not rel:
        raise RuntimeError("没有要提交的文件")
    email = f"{author}@{TRAINER_EMAIL_DOMAIN}"
    env = dict(os.environ)
    env.setdefault("GIT_COMMITTER_NAME", author)
    env.setdefault("GIT_COMMITTER_EMAIL", email)
    added = _git(top, "add", "--", *rel, env=env)
    if added.returncode != 0:
        raise RuntimeError(f"git add 失败：{(added.stderr or added.stdout).strip()}")
    done = _git(top, "commit", "-m", message, f"--author={author} <{email}>", "--", *rel, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"提交失败：{(done.stderr or done.stdout).strip()}")
    return _git(top, "rev-parse", "HEAD").stdout.strip()
