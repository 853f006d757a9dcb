"""Retraining as a job the page follows: train on the current data, evaluate against the model in service, record
the version. One job at a time across every console (`LOCK_KEY`); its state is in Redis (`JOB_KEY`) so any
console shows it; the work runs in a thread of the console that started it.

Stages and their share of the progress bar: 准备 (0.05), 训练 (to 0.8: Rasa's "Finished training component"
lines counted against the pipeline and policies), 评估 (to 1.0: both models parse the fixed test set and the
annotated inbox turns). `hotline train` runs the same steps in the terminal.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_sync
import yaml

from voice_gateway.config import Settings
from voice_gateway.rasa_env import RasaEnv, RasaEnvError

log = logging.getLogger("hotline.training")

JOB_KEY = "hotline:training:job"
LOCK_KEY = "hotline:training:lock"
LOCK_S = 30 * 60
LOG_LINES = 12
_FINISHED = re.compile(r"Finished training component '([^']+)'")
_SHOWN = re.compile(r"\bINFO\b|\bERROR\b|model is trained|Training|Finished|Restored")  # what the page's log keeps
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class JobRefused(RuntimeError):
    """Another retraining is running."""


@dataclass
class JobState:
    id: str
    by: str
    state: str = "running"  # running | done | failed
    stage: str = "准备"
    progress: float = 0.0
    log: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    model: str | None = None
    error: str | None = None
    report: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # how long each stage took

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        for name in ("started_at", "finished_at"):
            if body[name] is not None:
                body[name] = datetime.fromtimestamp(body[name], UTC).isoformat(timespec="seconds")
        return body


def read_job(client: redis_sync.Redis) -> dict[str, Any] | None:
    raw = client.get(JOB_KEY)
    return json.loads(raw) if raw else None


def _components(settings: Settings) -> int:
    """How many components a training finishes: the pipeline's, the policies', and Rasa's own few."""
    config = yaml.safe_load((settings.dialogue_dir / "config.yml").read_text(encoding="utf-8"))
    return len(config.get("pipeline") or []) + len(config.get("policies") or []) + 4


def train_with_progress(settings: Settings, on_line: Callable[[str], None]) -> Path:
    """`rasa train` for the current data (a model already trained on it is reused), each output line to
    `on_line`. Unlike `RasaEnv.train` it never copies a model from the outside cache: what is trained here is
    trained here."""
    rasa = RasaEnv(settings)
    target = rasa.model_path()
    if target.exists():
        on_line(f"这份数据的模型已经训练过：{target.name}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(
        rasa.train_args(target),
        cwd=settings.dialogue_dir,
        env=rasa.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            for piece in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
                if piece.strip():
                    on_line(piece.strip())
        code = proc.wait()
    if code != 0 or not target.exists():
        raise RasaEnvError(f"rasa train failed (exit {code})")
    return target


class RetrainJob:
    """One retraining, run with `start()` (a thread) or `run()` (here)."""

    def __init__(
        self,
        settings: Settings,
        client: redis_sync.Redis,
        by: str,
        evaluate: Callable[[Path], dict[str, Any] | None],
    ) -> None:
        self.settings, self.client, self.evaluate = settings, client, evaluate
        self.state = JobState(secrets.token_hex(4), by)
        self._expected = _components(settings)
        self._finished = 0

    def claim(self) -> None:
        if not self.client.set(LOCK_KEY, self.state.id, nx=True, ex=LOCK_S):
            raise JobRefused("已经有一个训练在进行，请等它结束")
        self._save()

    def start(self) -> None:
        self.claim()
        threading.Thread(target=self.run, name=f"retrain-{self.state.id}", daemon=True).start()

    def _save(self) -> None:
        try:
            self.client.set(JOB_KEY, json.dumps(self.state.as_json(), ensure_ascii=False), ex=7 * 86400)
        except redis_sync.RedisError as exc:
            log.warning("retrain %s: state not saved: %s", self.state.id, type(exc).__name__)

    def _line(self, line: str) -> None:
        if _FINISHED.search(line):
            self._finished += 1
            self.state.progress = min(0.8, 0.05 + 0.75 * self._finished / self._expected)
        line = _ANSI.sub("", line)
        if _SHOWN.search(line):
            self.state.log = [*self.state.log, line[:300]][-LOG_LINES:]
        self._save()

    def _stage(self, name: str, progress: float, began: float, previous: str) -> float:
        self.state.seconds[previous] = round(time.monotonic() - began, 1)
        self.state.stage, self.state.progress = name, progress
        self._save()
        return time.monotonic()

    def run(self) -> None:
        began = time.monotonic()
        try:
            self.state.progress = 0.05
            began = self._stage("训练", 0.05, began, "准备")
            model = train_with_progress(self.settings, self._line)
            self.state.model = model.name
            began = self._stage("评估", 0.8, began, "训练")
            self.state.report = self.evaluate(model)
            self.state.seconds["评估"] = round(time.monotonic() - began, 1)
            self.state.state, self.state.stage, self.state.progress = "done", "完成", 1.0
        except Exception as exc:  # the page says what failed; nothing is put into service
            log.exception("retrain %s failed", self.state.id)
            self.state.state, self.state.error = "failed", f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.state.finished_at = time.time()
            self._save()
            if self.client.get(LOCK_KEY) in (self.state.id, self.state.id.encode()):
                self.client.delete(LOCK_KEY)
