"""Where the hotline's Redis primary is: one server, or the one that a set of Redis Sentinels names.

Both Python environments read the same idea from their own variables: the gateway `HOTLINE_REDIS_SENTINELS` and
`HOTLINE_REDIS_SENTINEL_MASTER` (beside `REDIS_URL`, which then gives only the database, user and password), the
Rasa side `REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER` (beside `REDIS_HOST`/`REDIS_PORT`/`REDIS_DB`/
`REDIS_PASSWORD`, of which host and port are then unused). An empty sentinel list is a plain Redis, as before.

During a failover the old primary refuses connections and the sentinels name no primary until they have promoted
the replica; a client through Sentinel keeps trying for `FAILOVER_WAIT_S`, every `FAILOVER_RETRY_S`, then fails as
without Sentinel. So the sentinels' `down-after-milliseconds` plus about 1.5 s (agreeing, electing a leader,
promoting: `docs/reliability.md`) must stay under `FAILOVER_WAIT_S`, and that under the gateway's turn timeout (5 s).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

DEFAULT_SENTINEL_PORT = 26379
DEFAULT_MASTER = "hotline"  # the name of the monitored primary in sentinel.conf (`sentinel monitor hotline ...`)
FAILOVER_WAIT_S = 4.0  # how long a command keeps trying while the sentinels promote a replica
FAILOVER_RETRY_S = 0.25  # between tries: a new primary is found this soon after its promotion


@dataclass(frozen=True)
class SentinelVars:
    """The names of the two variables one environment reads."""

    sentinels: str
    master: str


GATEWAY_VARS = SentinelVars("HOTLINE_REDIS_SENTINELS", "HOTLINE_REDIS_SENTINEL_MASTER")
RASA_VARS = SentinelVars("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER")


def parse_address(text: str) -> tuple[str, int]:
    """`host:port`, `host` (port 26379) or `[v6-address]:port` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"a sentinel address needs a host: {text!r}")
    try:
        number = int(port) if port else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise ValueError(f"a sentinel's port is a number: {text!r}") from None
    if not 0 < number < 65536:
        raise ValueError(f"a sentinel's port is 1-65535: {text!r}")
    return host, number


@dataclass(frozen=True)
class Sentinels:
    """The sentinels that monitor the primary `master`; no addresses: no Sentinel (a plain Redis)."""

    addresses: tuple[tuple[str, int], ...] = ()
    master: str = DEFAULT_MASTER

    def __bool__(self) -> bool:
        return bool(self.addresses)

    @classmethod
    def parse(cls, sentinels: str, master: str = "") -> Sentinels:
        """From `host:port,host:port,...` (spaces allowed, empty: no Sentinel) and the primary's name."""
        addresses = tuple(parse_address(part) for part in sentinels.split(",") if part.strip())
        return cls(addresses, master.strip() or DEFAULT_MASTER)

    @classmethod
    def from_env(cls, env: Mapping[str, str], names: SentinelVars) -> Sentinels:
        return cls.parse(env.get(names.sentinels, ""), env.get(names.master, ""))

    def environ(self, names: SentinelVars) -> dict[str, str]:
        """The two variables for a child process (both empty without Sentinel, so nothing stray is inherited)."""
        listed = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.addresses)
        return {names.sentinels: listed, names.master: self.master if self else ""}


NO_SENTINELS = Sentinels()
FAILOVER_RETRIES = round(FAILOVER_WAIT_S / FAILOVER_RETRY_S)


_DEADLINE: ContextVar[float | None] = ContextVar("redis_failover_deadline", default=None)


@contextlib.contextmanager
def failover_deadline() -> Iterator[float]:
    """When the tries of the outermost retry in progress stop: redis-py nests a connection's retries (reconnecting)
    inside its command's (resending), and with a deadline each a Redis that never comes back would hold a caller for
    retries x `FAILOVER_WAIT_S`. Nested retries share the outer one's deadline (per thread, per asyncio task)."""
    current = _DEADLINE.get()
    if current is not None:
        yield current
        return
    deadline = time.monotonic() + FAILOVER_WAIT_S
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


class WithinFailoverWait:
    """Mixed into redis-py's blocking `Retry`: a command tries for `FAILOVER_WAIT_S` in all, then fails."""

    def call_with_retry(self, do: Callable[[], Any], fail: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with failover_deadline() as deadline:

            def fail_in_time(error: Exception, *count: int) -> None:
                fail(error, *count)
                if time.monotonic() > deadline:
                    raise error

            return super().call_with_retry(do, fail_in_time, *args, **kwargs)  # type: ignore[misc]
