"""The Rasa side's Redis clients (tracker store, lock store, event broker, the action server's keypad store).

With `REDIS_SENTINELS` set (`host:port,...`; read once per process, hotline_domain/redis_spec.py) a client talks
to the primary that those sentinels name as `REDIS_SENTINEL_MASTER`, and each store's host and port go unused.
A command that finds the old primary gone is tried again every `FAILOVER_RETRY_S` for about `FAILOVER_WAIT_S`
while the sentinels promote the replica, so a turn in a failover is answered late instead of failing (Rasa's
lock store fails the turn on a Redis error; its tracker store would start the conversation afresh). A Redis
that times out is not tried again. Without `REDIS_SENTINELS` every client is what it was before.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from redis.sentinel import Sentinel

from hotline_domain.redis_spec import FAILOVER_RETRIES, FAILOVER_RETRY_S, RASA_VARS, Sentinels, WithinFailoverWait

SENTINELS = Sentinels.from_env(os.environ, RASA_VARS)
SENTINEL_TIMEOUT_S = 0.5  # asking one sentinel for the primary: a dead or hung one is passed over this soon


class _FailoverRetry(WithinFailoverWait, Retry):
    """A lost connection tried again every `FAILOVER_RETRY_S`, for `FAILOVER_WAIT_S` at most."""


def primary(
    sentinels: Sentinels = SENTINELS,
    *,
    db: int = 0,
    password: str | None = None,
    username: str | None = None,
    **connection: Any,
) -> redis.Redis:
    """A client of the primary the sentinels name; `connection`: socket timeouts, decode_responses and the like."""
    timeouts = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S}
    finder = Sentinel(list(sentinels.addresses), sentinel_kwargs=timeouts)
    return finder.master_for(
        sentinels.master,
        db=int(db),
        password=password or None,
        username=username or None,
        retry=_FailoverRetry(ConstantBackoff(FAILOVER_RETRY_S), FAILOVER_RETRIES, (RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
        **connection,
    )


def client(host: str, port: int, *, sentinels: Sentinels = SENTINELS, **connection: Any) -> redis.Redis:
    """`redis.Redis(host, port, **connection)`, or with sentinels the primary they name."""
    if sentinels:
        return primary(sentinels, **connection)
    return redis.Redis(host=host, port=port, **connection)
