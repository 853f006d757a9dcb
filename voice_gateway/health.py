"""What the gateway depends on, checked in the background: /healthz says which part is down, /readyz whether new
calls are taken (not while draining, nor while Redis or the dialogue is down: a new caller would only hear an
apology). Checks run every `every_s` seconds with a short timeout, never on a caller's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("hotline.health")
CHECK_TIMEOUT_S = 1.5


@dataclass
class Dependency:
    name: str
    check: Callable[[], Awaitable[object]]  # raises when the part is down
    required: bool = True  # a new call needs it
    up: bool = True
    error: str = ""
    since: float = field(default_factory=time.time)  # when it last changed

    def report(self) -> dict[str, object]:
        return {"up": self.up, "since": round(self.since, 1), **({"error": self.error} if self.error else {})}


class Health:
    def __init__(self, dependencies: list[Dependency], *, every_s: float = 2.0) -> None:
        self.dependencies = dependencies
        self.every_s = every_s
        self._task: asyncio.Task | None = None

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(d) for d in self.dependencies))

    async def _check(self, dependency: Dependency) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await dependency.check()
            up, error = True, ""
        except Exception as exc:
            up, error = False, f"{type(exc).__name__}: {exc}"[:160]
        if up != dependency.up:
            log.warning("%s is %s%s", dependency.name, "up again" if up else "down", f": {error}" if error else "")
            dependency.since = time.time()
        dependency.up, dependency.error = up, error

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.every_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def down(self) -> list[str]:
        return [d.name for d in self.dependencies if not d.up and d.required]

    def report(self) -> dict[str, object]:
        return {d.name: d.report() for d in self.dependencies}
