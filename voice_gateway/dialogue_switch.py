"""A new dialogue model into service with no turn failed or held up: blue/green Rasa servers.

Rasa answers nothing while it loads a model, and `PUT /model` reaches one worker only, so a model is never
swapped inside a running server. Instead:

    console  --LPUSH hotline:models:requests-->  ModelSwitcher (in the process that runs the stack)
    1. start a second Rasa server with the new model on a free port; wait until it answers /status
    2. SET hotline:dialogue:active:<first url> {"url", "model"}: each gateway's `follow` moves over (<= 0.25 s)
    3. after SWITCH_GRACE_S (longer than a turn's dialogue timeout) stop the old server

Both servers share the tracker and lock stores in Redis, so a call in the middle of a conversation goes on with
the new model on its next turn. What the switch is doing is in the hash `STATE_KEY` for the page. A new server
that does not come up is stopped and the old one stays in service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis as redis_sync
from redis.asyncio import Redis

from hotline_domain.redis_spec import NO_SENTINELS, Sentinels
from voice_gateway import redis_link

if TYPE_CHECKING:
    from voice_gateway.rasa_client import RasaClient

log = logging.getLogger("hotline.switch")

ACTIVE_PREFIX = "hotline:dialogue:active:"  # + the URL the stack's first Rasa server had: one key per hotline


def active_key(origin: str) -> str:
    """Where the server in service is announced for the gateways configured with `origin` as RASA_URL (a
    gateway pointed elsewhere, say at a stand-in server in a test, follows nothing)."""
    return ACTIVE_PREFIX + origin.rstrip("/")


REQUESTS_KEY = "hotline:models:requests"
STATE_KEY = "hotline:models:switch"
FOLLOW_EVERY_S = 0.25


@dataclass(frozen=True)
class ActiveDialogue:
    url: str
    model: str

    def dumps(self) -> str:
        return json.dumps({"url": self.url, "model": self.model})

    @staticmethod
    def loads(raw: str | bytes | None) -> ActiveDialogue | None:
        try:
            body = json.loads(raw) if raw else None
            return ActiveDialogue(str(body["url"]), str(body.get("model", ""))) if isinstance(body, dict) else None
        except (ValueError, KeyError, TypeError):
            return None


async def follow(redis: Redis, client: RasaClient, every_s: float = FOLLOW_EVERY_S) -> None:
    """Keep `client` pointed at the dialogue server in service (forever; cancel to stop); the URL it starts
    with names the hotline it belongs to."""
    key = active_key(client.base_url)
    while True:
        with contextlib.suppress(Exception):  # Redis away: keep the server we have
            active = ActiveDialogue.loads(await redis.get(key))
            if active is not None and active.url.rstrip("/") != client.base_url:
                log.info("dialogue now at %s (model %s)", active.url, active.model)
                client.base_url = active.url.rstrip("/")
        await asyncio.sleep(every_s)


def request_switch(
    client: redis_sync.Redis, model: str, by: str, *, action: str = "promote", override: bool = False, reason: str = ""
) -> None:
    """Ask the stack to put `model` (a file name in the models folder) into service; `action` (promote or
    rollback), `override` and `reason` go to the version history once it is in service."""
    client.hset(STATE_KEY, mapping={"state": "queued", "model": model, "by": by, "error": "", "at": time.time()})
    request = {"model": model, "by": by, "action": action, "override": override, "reason": reason}
    client.lpush(REQUESTS_KEY, json.dumps(request, ensure_ascii=False))


def switch_state(client: redis_sync.Redis) -> dict[str, str]:
    raw = client.hgetall(STATE_KEY)
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }


class ModelSwitcher:
    """Takes switch requests off Redis and carries them out with `swap(model_path) -> new url` (the stack's)."""

    GRACE_S = 8.0

    def __init__(
        self,
        redis_url: str,
        models_dir: Path,
        swap: Callable[[Path, Callable[[], None]], str],
        on_done: Callable[[dict[str, Any]], None] = lambda request: None,
        sentinels: Sentinels = NO_SENTINELS,
    ) -> None:
        self.client = redis_link.connect_sync(redis_url, sentinels, socket_timeout=5)
        self.models_dir, self.swap, self.on_done = models_dir, swap, on_done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-switcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _state(self, **fields: Any) -> None:
        with contextlib.suppress(redis_sync.RedisError):
            self.client.hset(STATE_KEY, mapping={**{k: str(v) for k, v in fields.items()}, "at": time.time()})

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                popped = self.client.brpop([REQUESTS_KEY], timeout=1)
            except redis_sync.RedisError:
                self._stop.wait(1.0)
                continue
            if popped is None:
                continue
            try:
                request = json.loads(popped[1])
                request["model"] = Path(str(request["model"])).name
            except (ValueError, KeyError, TypeError):
                continue
            self._switch(request)

    def _switch(self, request: dict[str, Any]) -> None:
        name = request["model"]
        path = self.models_dir / name
        if not path.is_file():
            self._state(state="failed", model=name, error=f"没有这个模型：{name}")
            return
        self._state(state="starting", model=name, error="")
        started = time.monotonic()
        try:
            url = self.swap(path, lambda: self._state(state="switching", model=name))
        except Exception as exc:  # the new server did not come up: the old one stays in service
            log.warning("model %s not put in service: %s", name, exc)
            self._state(state="failed", model=name, error=f"新模型没有启动成功，在用模型不变：{type(exc).__name__}")
            return
        try:
            self.on_done(request)
        except Exception:  # in service all the same: the history is what failed
            log.exception("model %s in service, but its version history was not written", name)
        self._state(state="done", model=name, url=url, seconds=round(time.monotonic() - started, 1))
        log.info("model %s in service at %s after %.1f s", name, url, time.monotonic() - started)
