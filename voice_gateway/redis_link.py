"""The gateway's Redis clients, all made here: one plain server (`REDIS_URL`), or the primary that the configured
sentinels name (`HOTLINE_REDIS_SENTINELS`, hotline_domain/redis_spec.py).

Without sentinels a client is `Redis.from_url(url, ...)`, as it always was. With them the URL gives only the
database, user and password; each connection asks the sentinels for the primary's address, and a command that
finds the old primary gone (refused, reset, demoted to a replica, or no primary named yet) is tried again every
`FAILOVER_RETRY_S` for about `FAILOVER_WAIT_S`, so a failover makes a command late, not failed. A Redis that times
out is not tried again: it costs what it costs without Sentinel.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelManagedConnection as AsyncSentinelConnection
from redis.backoff import ConstantBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from hotline_domain.redis_spec import (
    FAILOVER_RETRIES,
    FAILOVER_RETRY_S,
    FAILOVER_WAIT_S,
    Sentinels,
    WithinFailoverWait,
    failover_deadline,
)

SENTINEL_TIMEOUT_S = 0.5  # asking one sentinel for the primary: a dead or hung one is passed over this soon
FAILOVER_WRITE_S = FAILOVER_WAIT_S + 1.0  # a call-record write through Sentinel: a failover's wait, then the write


class _FailoverRetry(WithinFailoverWait, Retry):
    """A lost connection tried again every `FAILOVER_RETRY_S`, for `FAILOVER_WAIT_S` at most."""


class _AsyncFailoverRetry(AsyncRetry):
    """The same for asyncio."""

    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        with failover_deadline() as deadline:

            async def fail_in_time(error: Exception, *count: int) -> None:
                await fail(error, *count)
                if time.monotonic() > deadline:
                    raise error

            return await super().call_with_retry(do, fail_in_time, *args, **kwargs)


class _FailoverConnection(SentinelManagedConnection):
    """redis-py's Sentinel connection, asking for the primary on every connection attempt: its own reconnect
    inside a command's retries goes back to the old address (redis/redis-py#3874, open in 8.1)."""

    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


class _AsyncFailoverConnection(AsyncSentinelConnection):
    """The same for asyncio."""

    async def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        return await super()._connect()


def _timeouts(socket_timeout: float | None, socket_connect_timeout: float | None) -> dict[str, float]:
    """The timeouts a caller gave (one not given stays redis-py's default, or the URL's)."""
    given = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
    return {k: v for k, v in given.items() if v is not None}


def _primary_kwargs(url: str, timeouts: dict[str, float]) -> dict[str, Any]:
    """What a connection to the primary needs besides its address: the URL's database and credentials, the
    caller's timeouts, and the failover retry."""
    given = redis.connection.parse_url(url)
    auth = {k: given[k] for k in ("db", "username", "password") if given.get(k) is not None}
    return {**auth, **timeouts, "retry_on_error": [RedisConnectionError]}


def _sentinel_kwargs(retry: Retry | AsyncRetry) -> dict[str, Any]:
    """For asking a sentinel: short timeouts, and no retries (the next sentinel is asked instead)."""
    return {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S, "retry": retry}


def connect(
    url: str,
    sentinels: Sentinels,
    *,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = None,
) -> redis.asyncio.Redis:
    """An asyncio client of the primary."""
    timeouts = _timeouts(socket_timeout, socket_connect_timeout)
    if not sentinels:
        return redis.asyncio.Redis.from_url(url, **timeouts)
    retry = _AsyncFailoverRetry(ConstantBackoff(FAILOVER_RETRY_S), FAILOVER_RETRIES, (RedisConnectionError,))
    finder = AsyncSentinel(list(sentinels.addresses), sentinel_kwargs=_sentinel_kwargs(AsyncRetry(NoBackoff(), 0)))
    kwargs = _primary_kwargs(url, timeouts)
    return finder.master_for(sentinels.master, retry=retry, connection_class=_AsyncFailoverConnection, **kwargs)


def connect_sync(
    url: str,
    sentinels: Sentinels,
    *,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = None,
) -> redis.Redis:
    """A blocking client of the primary (threads, the CLI)."""
    timeouts = _timeouts(socket_timeout, socket_connect_timeout)
    if not sentinels:
        return redis.Redis.from_url(url, **timeouts)
    retry = _FailoverRetry(ConstantBackoff(FAILOVER_RETRY_S), FAILOVER_RETRIES, (RedisConnectionError,))
    finder = Sentinel(list(sentinels.addresses), sentinel_kwargs=_sentinel_kwargs(Retry(NoBackoff(), 0)))
    kwargs = _primary_kwargs(url, timeouts)
    return finder.master_for(sentinels.master, retry=retry, connection_class=_FailoverConnection, **kwargs)
