"""Rasa's Redis lock store, through Sentinel when `REDIS_SENTINELS` is set (Rasa 3.6 has no Sentinel support).

Configured in endpoints.yml as `type: sentinel_lock_store.SentinelRedisLockStore` with the settings of
`type: redis`. Rasa makes a custom lock store with `Class(endpoint_config=...)`; this one builds Rasa's own
`RedisLockStore` from that configuration and, with sentinels, swaps its client for one of the primary they name
(redis_link.py), with the same database (`db`, 1 unless given) and socket timeout. The lock store is on every
turn's path: a Redis error in it fails the turn (HTTP 500), so its client is the one that must ride out a failover.
Without `REDIS_SENTINELS` it is Rasa's `RedisLockStore` unchanged.
"""

from __future__ import annotations

from typing import Any

import redis_link
from rasa.core.lock_store import DEFAULT_SOCKET_TIMEOUT_IN_SECONDS, RedisLockStore
from rasa.utils.endpoints import EndpointConfig


class SentinelRedisLockStore(RedisLockStore):
    """`RedisLockStore` whose client is the Sentinel-named primary when sentinels are configured."""

    def __init__(self, endpoint_config: EndpointConfig | None = None, **settings: Any) -> None:
        if endpoint_config is not None:  # how Rasa makes a custom lock store; as `type: redis` reads the same
            settings = {"host": endpoint_config.url, **endpoint_config.kwargs}
        super().__init__(**settings)
        if redis_link.SENTINELS:
            self.red = redis_link.primary(
                db=int(settings.get("db", 1)),
                username=settings.get("username"),
                password=settings.get("password"),
                socket_timeout=float(settings.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT_IN_SECONDS)),
            )
