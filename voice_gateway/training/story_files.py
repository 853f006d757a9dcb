"""The trainers' stories and rules (nlu_data/stories/*.yml, nlu_data/rules/*.yml): list, read, save validated.

A save is checked in order: the path is one of the listed files; the text is YAML with a top-level `stories:` or
`rules:` list; the project validates (`rasa data validate --fail-on-warnings`) with the edited file in place, on a
temporary copy. Only then is the file replaced (atomically). The validator is a callable, so tests can fake it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from voice_gateway.config import Settings
from voice_gateway.rasa_env import RasaEnv
from voice_gateway.training.nlu_files import write_atomically

__all__ = [
    "EDITABLE_FOLDERS",
    "NotEditable",
    "StoryFiles",
    "Validation",
    "ValidationFailed",
    "Validator",
    "check_shape",
    "rasa_validator",
    "useful_lines",
]

EDITABLE_FOLDERS = ("stories", "rules")
OUTPUT_LINES = 40  # of the validator's output, kept for the trainer
# One real validation of this project on the 2 shared cores takes 6.3-9.8 s, 7 s typical (2026-12-01, six runs of
# `rasa data validate --fail-on-warnings` on a temporary copy): the checks log within one second, the rest is
# starting Rasa and TensorFlow. The current data passes --fail-on-warnings, so a warning (an utterance or intent
# missing from the domain, a story conflict) refuses a save.
VALIDATE_TIMEOUT_S = 300.0


class NotEditable(ValueError):
    """The path is not one of the editable story/rule files."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(ValueError):
    """The edit does not validate: `message` for the trainer (Chinese), `output` the checker's own words."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.output = output


@dataclass(frozen=True)
class Validation:
    ok: bool
    output: str = ""


# checks a project laid out as <root>/domain.yml, <root>/config.yml, <root>/nlu_data/
Validator = Callable[[Path], Validation]


class StoryFiles:
    """The editable story and rule files of the nlu_data folder at `data_root`, with the project's domain and config."""

    def __init__(self, data_root: Path, domain_path: Path, config_path: Path) -> None:
        self.data_root = Path(data_root)
        self.domain_path = Path(domain_path)
        self.config_path = Path(config_path)
        self._lock = threading.Lock()

    def files(self) -> list[str]:
        """Every *.yml under stories/ and rules/, as POSIX paths relative to the data root."""
        found = []
        for folder in EDITABLE_FOLDERS:
            base = self.data_root / folder
            for path in sorted(base.rglob("*.yml")) if base.is_dir() else []:
                if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(base.resolve()):
                    found.append(path.relative_to(self.data_root).as_posix())
        return found

    def path_of(self, rel_path: str) -> Path:
        """The file behind one listed path; NotEditable for anything else (traversal, new files, other folders)."""
        if rel_path not in self.files():
            raise NotEditable(f"不能编辑这个文件：{rel_path}（只能改 stories/ 和 rules/ 下已有的 .yml 文件）")
        return self.data_root / rel_path

    def read(self, rel_path: str) -> str:
        return self.path_of(rel_path).read_bytes().decode("utf-8")

    def save(self, rel_path: str, text: str, validate: Validator) -> Path:
        """Validate the edit of one file and write it; ValidationFailed (nothing written) if it does not hold."""
        path = self.path_of(rel_path)
        text = text.replace("\r\n", "\n")  # a browser's textarea sends CRLF
        check_shape(text)
        with self._lock, tempfile.TemporaryDirectory(prefix="hotline-validate-") as tmp:
            root = Path(tmp)
            shutil.copy2(self.domain_path, root / "domain.yml")
            shutil.copy2(self.config_path, root / "config.yml")
            shutil.copytree(self.data_root, root / "nlu_data", symlinks=False)
            (root / "nlu_data" / rel_path).write_text(text, encoding="utf-8")
            result = validate(root)
            if not result.ok:
                raise ValidationFailed("校验没有通过，文件没有保存：请看下面的提示改好再存", result.output)
            write_atomically(path, text.encode("utf-8"))
        return path


def check_shape(text: str) -> None:
    """YAML whose top level has a `stories:` or `rules:` list; ValidationFailed otherwise."""
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as e:
        raise ValidationFailed("YAML 格式不对（缩进、冒号或引号）", str(e)) from None
    if not isinstance(data, dict) or not any(isinstance(data.get(key), list) for key in EDITABLE_FOLDERS):
        raise ValidationFailed("文件最外层要有 stories: 或 rules: 列表", "")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WARNING_AT = re.compile(r"^\S+\.py:\d+: (\w+(?:Warning|Error)): ")
_NOISE = (
    re.compile(r"DeprecationWarning"),
    re.compile(r"^\s+(import pkg_resources|declare_namespace\(|from jax import)"),
    re.compile(r"^Implementing implicit namespace packages"),
    re.compile(r"^\s*Processed (story|rule) blocks"),
    re.compile(r"^\s*More info at https://"),
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO "),
)


def useful_lines(output: str, limit: int = OUTPUT_LINES) -> str:
    """The validator's output without colour codes, library deprecation noise and progress bars; the last lines."""
    kept = []
    for raw in _ANSI.sub("", output).replace("\r", "\n").splitlines():
        if not raw.strip() or any(p.search(raw) for p in _NOISE):
            continue
        kept.append(_WARNING_AT.sub(r"\1: ", raw))
    return "\n".join(kept[-limit:])


def rasa_validator(settings: Settings) -> Validator:
    """The real check: `rasa data validate --fail-on-warnings` in the Rasa environment, on a copied project."""
    env = RasaEnv(settings)

    def validate(root: Path) -> Validation:
        # PROJECT_ARGS' shape, pointed at the copy (run from dialogue/, so config.yml's paths still resolve)
        project = ["--data", str(root / "nlu_data"), "--domain", str(root / "domain.yml")]
        args = [env.rasa, "data", "validate", *project, "--config", str(root / "config.yml"), "--fail-on-warnings"]
        try:
            done = env.run(
                args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=VALIDATE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return Validation(False, f"rasa data validate took longer than {VALIDATE_TIMEOUT_S:.0f} s")
        # the copy's paths read as the trainer's: nlu_data/stories/...
        return Validation(done.returncode == 0, useful_lines(done.stdout.replace(f"{root}{os.sep}", "")))

    return validate
