"""Settings from the environment, with embedded defaults that work out of the box."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _cache_dir() -> Path:
    base = os.environ.get("HOTLINE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hotline"
    )
    return Path(base)


@dataclass
class Settings:
    """Where things are and how to reach them. Every field has an environment variable."""

    root: Path = PROJECT_ROOT
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL") or None)
    rasa_url: str = field(default_factory=lambda: os.environ.get("RASA_URL", "http://127.0.0.1:5005"))
    action_server_url: str = field(
        default_factory=lambda: os.environ.get("ACTION_SERVER_URL", "http://127.0.0.1:5055/webhook")
    )
    db_url: str | None = field(default_factory=lambda: os.environ.get("HOTLINE_DB_URL") or None)
    rasa_env: Path | None = field(
        default_factory=lambda: Path(os.environ["HOTLINE_RASA_ENV"]) if os.environ.get("HOTLINE_RASA_ENV") else None
    )
    cache: Path = field(default_factory=_cache_dir)

    @property
    def dialogue_dir(self) -> Path:
        return self.root / "dialogue"

    @property
    def models_dir(self) -> Path:
        return Path(os.environ.get("HOTLINE_MODELS", self.root / "models"))

    @property
    def var_dir(self) -> Path:
        return Path(os.environ.get("HOTLINE_VAR", self.root / "var"))
