"""The action server's configuration, read once from its environment (which `hotline up` writes: stack.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSettings:
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: str | None = None
    db_url: str | None = None  # None: the business database's default SQLite file
    identity_key_file: str | None = None  # seals the caller's ID number in the tracker (actions/caller_id.py)

    @classmethod
    def from_env(cls) -> ActionSettings:
        env = os.environ.get
        return cls(
            redis_host=env("REDIS_HOST", "127.0.0.1"),
            redis_port=int(env("REDIS_PORT", "6379")),
            redis_db=int(env("REDIS_DB", "0")),
            redis_password=env("REDIS_PASSWORD") or None,
            db_url=env("HOTLINE_DB_URL") or None,
            identity_key_file=env("HOTLINE_IDENTITY_KEY_FILE") or None,
        )


SETTINGS = ActionSettings.from_env()
