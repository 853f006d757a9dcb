"""The dialogue model versions in models/: what each was trained on and scored, which one is in service, and the
history of promotions and roll-backs.

Models are `hotline-<fingerprint>.tar.gz` (RasaEnv.model_path); each may have a sidecar `hotline-<fingerprint>.json`
(`record_trained`). The model in service is kept in `service.json`:
{"in_service": name, "history": [{"name", "at", "by", "override", "reason", "action"}]}. Without that file the model
in service is the one `hotline up` starts (RasaEnv.latest_model's rule): call `pin()` when the hotline starts, before
a new model for the current data exists, or that rule names the new model. This module records state only: putting
a model into the running Rasa is someone else's job.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voice_gateway.config import Settings
from voice_gateway.rasa_env import RasaEnv, RasaEnvError

if TYPE_CHECKING:
    from voice_gateway.training.evaluation import Report

SERVICE_FILE = "service.json"
_LOCK_FILE = ".service.lock"


class VersionError(ValueError):
    """An unknown model, or a change of service that does not make sense."""


class PromotionRefused(VersionError):
    """The promotion rule says no (or cannot say yes), and no override was given."""

    def __init__(self, name: str, reasons: list[str]) -> None:
        super().__init__(f"{name} may not go into service: {'; '.join(reasons)}")
        self.reasons = reasons


@dataclass(frozen=True)
class ModelVersion:
    name: str  # hotline-<fingerprint>.tar.gz
    path: Path
    trained_at: datetime  # from the record, else the file's modification time
    trained_by: str | None
    commit: str | None  # the training data's commit
    accuracy: float | None  # on the test set, from the report summary
    macro_f1: float | None
    allowed: bool | None  # the promotion verdict of that report
    in_service: bool
    recorded: bool  # a sidecar record exists

    @property
    def version(self) -> str:
        return self.name.removesuffix(".tar.gz").removeprefix("hotline-")

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "trained_at": self.trained_at.isoformat(timespec="seconds"),
            "trained_by": self.trained_by,
            "commit": self.commit,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "allowed": self.allowed,
            "in_service": self.in_service,
            "recorded": self.recorded,
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a temporary file in the same folder, then os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelVersions:
    def __init__(self, models_dir: Path, fingerprint: str | None = None) -> None:
        """`fingerprint`: the current data's (RasaEnv.fingerprint), for the rule used when service.json is absent."""
        self.models_dir = Path(models_dir)
        self.fingerprint = fingerprint

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelVersions:
        try:
            fingerprint: str | None = RasaEnv(settings).fingerprint()
        except RasaEnvError:
            fingerprint = None
        return cls(settings.models_dir, fingerprint)

    @property
    def service_file(self) -> Path:
        return self.models_dir / SERVICE_FILE

    # --- reading ---
    def _models(self) -> list[Path]:
        return sorted(self.models_dir.glob("*.tar.gz"))

    def _path(self, name: str | Path) -> Path:
        """The model file of a name (or path) in models_dir; VersionError for anything else."""
        name = Path(name).name
        path = self.models_dir / name
        if not name.endswith(".tar.gz") or not path.is_file():
            known = ", ".join(p.name for p in self._models()) or "none"
            raise VersionError(f"no model {name!r} in {self.models_dir} (known: {known})")
        return path

    def _sidecar(self, model: Path) -> Path:
        return model.with_name(model.name.removesuffix(".tar.gz") + ".json")

    def record(self, name: str | Path) -> dict[str, Any]:
        """A model's sidecar record ({} when it has none)."""
        sidecar = self._sidecar(self._path(name))
        return json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else {}

    def _state(self) -> dict[str, Any] | None:
        if not self.service_file.exists():
            return None
        return json.loads(self.service_file.read_text(encoding="utf-8"))

    def _fallback(self) -> Path | None:
        """RasaEnv.latest_model's rule: the model of the current data, else the newest."""
        if self.fingerprint:
            current = self.models_dir / f"hotline-{self.fingerprint}.tar.gz"
            if current.exists():
                return current
        models = sorted(self._models(), key=lambda p: p.stat().st_mtime)
        return models[-1] if models else None

    def in_service(self) -> Path | None:
        state = self._state()
        if state is None:
            return self._fallback()
        return self.models_dir / state["in_service"] if state.get("in_service") else None

    def history(self) -> list[dict[str, Any]]:
        return list((self._state() or {}).get("history", []))

    def _stack(self, history: list[dict[str, Any]]) -> list[str]:
        """The models put into service, each below the one that replaced it; a roll-back takes the top one off."""
        stack: list[str] = []
        for entry in history:
            if entry.get("action") == "rolled_back":
                stack = stack[:-1]
                if not stack or stack[-1] != entry["name"]:
                    stack.append(entry["name"])
            else:
                stack.append(entry["name"])
        return stack

    def previous(self) -> Path | None:
        """What a roll-back returns to: the model that was in service before the current one."""
        stack = self._stack(self.history())
        return self.models_dir / stack[-2] if len(stack) >= 2 else None

    def versions(self) -> list[ModelVersion]:
        """Every model file with its record, newest first."""
        serving = self.in_service()
        out = []
        for path in self._models():
            record = self.record(path.name)
            report = record.get("report") or {}
            at = record.get("trained_at")
            trained_at = (
                datetime.fromisoformat(at) if at else datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
            )
            out.append(
                ModelVersion(
                    name=path.name,
                    path=path,
                    trained_at=trained_at,
                    trained_by=record.get("trained_by"),
                    commit=record.get("commit"),
                    accuracy=report.get("accuracy"),
                    macro_f1=report.get("macro_f1"),
                    allowed=report.get("allowed"),
                    in_service=serving is not None and path.name == serving.name,
                    recorded=bool(record),
                )
            )
        return sorted(out, key=lambda v: v.trained_at, reverse=True)

    # --- writing ---
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (the console and the CLI may both change service)."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with open(self.models_dir / _LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _entry(self, name: str, by: str, action: str, override: bool = False, reason: str = "") -> dict[str, Any]:
        return {"name": name, "at": _now(), "by": by, "override": override, "reason": reason, "action": action}

    def _save(self, in_service: str, history: list[dict[str, Any]]) -> None:
        _write_json(self.service_file, {"in_service": in_service, "history": history})

    def pin(self, by: str = "hotline") -> Path | None:
        """Write service.json from the fallback rule if it does not exist yet; returns the model in service."""
        with self._locked():
            if self._state() is None and (fallback := self._fallback()) is not None:
                self._save(fallback.name, [self._entry(fallback.name, by, "started", reason="启动时的模型")])
        return self.in_service()

    def started(self, model: str | Path, by: str = "hotline") -> Path:
        """Record that a stack started `model` (a no-op when it is already the one in service)."""
        path = self._path(model)
        with self._locked():
            state = self._state()
            if state is None or state.get("in_service") != path.name:
                history = list(state["history"]) if state else []
                history.append(self._entry(path.name, by, "started", reason="启动时的模型"))
                self._save(path.name, history)
        return path

    def check_promotion(self, name: str | Path, *, override: bool = False, reason: str = "") -> Path:
        """What `mark_promoted` would refuse (PromotionRefused, VersionError), checked without recording anything:
        the console asks before it has the stack start the model."""
        path = self._path(name)
        current = self.in_service()
        if current is not None and path.name == current.name:
            raise VersionError(f"{path.name} 已经在用")
        refusals = self._refusals(path.name, current.name if current else None)
        if refusals and not override:
            raise PromotionRefused(path.name, refusals)
        if override and not reason.strip():
            raise VersionError("强制上线要填写理由")
        return path

    def record_trained(self, model: str | Path, by: str, commit: str | None, report: Report | None = None) -> Path:
        """Write the model's sidecar: when and by whom it was trained, on which commit, and its report's summary."""
        path = self._path(model)
        record = {
            "name": path.name,
            "trained_at": _now(),
            "trained_by": by,
            "commit": commit,
            "report": report.summary() if report is not None else None,
        }
        sidecar = self._sidecar(path)
        with self._locked():
            _write_json(sidecar, record)
        return sidecar

    def _refusals(self, name: str, current: str | None) -> list[str]:
        """Why the promotion rule does not let `name` in (empty when it does)."""
        report = self.record(name).get("report")
        if not report:
            return ["没有评估报告，无法判断是否符合上线规则"]
        if report.get("compared_with") != current:
            was = report.get("compared_with") or "无"
            return [f"评估时比较的在用模型是 {was}，现在在用的是 {current or '无'}，需要重新评估"]
        if not report.get("allowed"):
            return list(report.get("reasons") or ["评估结论为不允许上线"])
        return []

    def mark_promoted(self, name: str | Path, by: str, override: bool = False, reason: str = "") -> Path:
        """Record `name` as the model in service. Refused (PromotionRefused) when its report does not allow it,
        unless `override` with a reason."""
        path = self._path(name)
        with self._locked():
            state = self._state()
            current = state.get("in_service") if state else (fb.name if (fb := self._fallback()) else None)
            if path.name == current:
                raise VersionError(f"{path.name} is already in service")
            refusals = self._refusals(path.name, current)
            if refusals and not override:
                raise PromotionRefused(path.name, refusals)
            if override and not reason.strip():
                raise VersionError("an override needs a reason")
            history = list(state["history"]) if state else []
            if state is None and current is not None:  # the model started without a record: keep it to roll back to
                history.append(self._entry(current, by, "started", reason="启动时的模型"))
            history.append(self._entry(path.name, by, "promoted", override=override, reason=reason.strip()))
            self._save(path.name, history)
        return path

    def mark_rolled_back(self, by: str, reason: str = "") -> Path:
        """Record the roll-back to `previous()`; returns that model."""
        with self._locked():
            state = self._state()
            history = list(state["history"]) if state else []
            stack = self._stack(history)
            if len(stack) < 2:
                raise VersionError("nothing to roll back to: no model was in service before the current one")
            target = self._path(stack[-2])
            note = reason.strip() or f"回滚：撤下 {stack[-1]}"
            history.append(self._entry(target.name, by, "rolled_back", reason=note))
            self._save(target.name, history)
        return target


# --- `hotline models list` ---
def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def table(versions: Sequence[ModelVersion]) -> str:
    """The versions as a text table; the model in service is marked with *."""
    heads = ("", "version", "trained", "by", "accuracy", "macro F1", "verdict")
    verdicts = {True: "allowed", False: "refused", None: "-"}
    rows = [
        (
            "*" if v.in_service else "",
            v.version,
            v.trained_at.astimezone().strftime("%Y-%m-%d %H:%M"),
            v.trained_by or "-",
            f"{v.accuracy:.4f}" if v.accuracy is not None else "-",
            f"{v.macro_f1:.4f}" if v.macro_f1 is not None else "-",
            verdicts[v.allowed],
        )
        for v in versions
    ]
    widths = [max(_width(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    lines = ["  ".join(_pad(cell, w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [heads, *rows]]
    if not rows:
        lines.append("(no models)")
    return "\n".join(lines) + "\n"
