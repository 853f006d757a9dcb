"""The Rasa side: its Python 3.10 environment, its commands, and the trained models.

Rasa 3.6 cannot share the gateway's environment (it pins old libraries), so the gateway runs `rasa` and the
action server as child processes of that environment and talks to them over HTTP.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from hotline_domain.redis_spec import RASA_VARS
from voice_gateway.config import Settings

# what a trained model depends on: change any of these and the model is retrained. The components' code is among
# them since the pinyin featurizer is trained on what it computes (Rasa's own training cache does not look at code:
# bump the component's `version` in config.yml too).
_MODEL_INPUTS = ("dialogue/domain.yml", "dialogue/config.yml", "dialogue/dictionary", "dialogue/components", "nlu_data")

# where the project's parts are, for the rasa commands that read them (run from dialogue/)
PROJECT_ARGS = ("--data", "../nlu_data", "--domain", "domain.yml", "--config", "config.yml")


class RasaEnvError(RuntimeError):
    """The Rasa environment is missing or broken."""


class RasaEnv:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.rasa_env is None:
            raise RasaEnvError(
                "HOTLINE_RASA_ENV is not set: run commands through ./hotline, which sets up the Rasa environment"
            )
        self.prefix = settings.rasa_env
        if not (self.prefix / "bin" / "rasa").exists():
            raise RasaEnvError(f"no rasa in {self.prefix}: remove the folder and run ./hotline again")

    @property
    def python(self) -> str:
        return str(self.prefix / "bin" / "python")

    @property
    def rasa(self) -> str:
        return str(self.prefix / "bin" / "rasa")

    def environ(self, redis_url: str | None = None) -> dict[str, str]:
        """Environment for Rasa processes: quiet, offline, our packages importable, endpoints filled in."""
        root = self.settings.root
        env = dict(os.environ)
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(root), str(root / "dialogue")]),
                "RASA_TELEMETRY_ENABLED": "false",
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
                "PYTHONWARNINGS": "ignore",
                "TMPDIR": env.get("TMPDIR", "/tmp"),
                "RASA_CACHE_DIRECTORY": str(self.settings.cache / "rasa-train-cache"),
                "ACTION_SERVER_URL": self.settings.action_server_url,
                "SANIC_HOST": self.settings.actions_host,
            }
        )
        if self.settings.db_url:
            env["HOTLINE_DB_URL"] = self.settings.db_url
        env.update(redis_endpoint_vars(redis_url or self.settings.gateway_redis_url))
        env.update(self.settings.redis_sentinels.environ(RASA_VARS))  # the same Redis, through Sentinel if so
        return env

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        return subprocess.run(args, cwd=self.settings.dialogue_dir, env=self.environ(), **kwargs)

    # --- models ---
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        root = self.settings.root
        for name in _MODEL_INPUTS:
            path = root / name
            files = (
                sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
                if path.is_dir()
                else [path]
            )
            for file in files:
                digest.update(str(file.relative_to(root)).encode())
                digest.update(file.read_bytes())
        return digest.hexdigest()[:12]

    def model_path(self) -> Path:
        return self.settings.models_dir / f"hotline-{self.fingerprint()}.tar.gz"

    def latest_model(self) -> Path | None:
        """The model trained on the current data, else the newest one, else None."""
        current = self.model_path()
        if current.exists():
            return current
        models = sorted(self.settings.models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
        return models[-1] if models else None

    def train_args(self, target: Path) -> list[str]:
        """`rasa train` of the project's data into `target` (run from dialogue/)."""
        name = target.name.removesuffix(".tar.gz")
        return [self.rasa, "train", *PROJECT_ARGS, "--out", str(target.parent), "--fixed-model-name", name]

    def train(self, *, force: bool = False, quiet: bool = False) -> Path:
        """Train a model for the current data unless one exists (or is cached outside the clone)."""
        target = self.model_path()
        cached = self.settings.cache / "models" / target.name
        if target.exists() and not force:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if cached.exists() and not force:
            shutil.copy2(cached, target)
            return target
        result = self.run(
            self.train_args(target),
            stdout=subprocess.DEVNULL if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
        )
        if result.returncode != 0 or not target.exists():
            raise RasaEnvError(f"rasa train failed (exit {result.returncode})")
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, cached)
        return target


def redis_endpoint_vars(url: str) -> dict[str, str]:
    """REDIS_HOST/PORT/DB/PASSWORD for dialogue/endpoints.yml from a redis:// URL."""
    parsed = urlparse(url)
    db = (parsed.path or "/0").lstrip("/") or "0"
    return {
        "REDIS_HOST": parsed.hostname or "127.0.0.1",
        "REDIS_PORT": str(parsed.port or 6379),
        "REDIS_DB": db,
        "REDIS_PASSWORD": parsed.password or "",
    }
