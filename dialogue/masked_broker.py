"""The event broker that feeds the trainer's inbox: each caller and bot turn, masked, onto a Redis stream.

Configured in endpoints.yml as `type: masked_broker.MaskedRedisEventBroker` with the tracker store's Redis
settings. Rasa's tracker store publishes every new event of a conversation here after each turn;
`hotline_domain.dialogue_events.DialogueEvent.from_rasa` keeps the kinds the inbox reads and masks their text, and
the entry goes to `STREAM` (trimmed to about `STREAM_MAXLEN`). A Redis that fails loses inbox entries, never a
turn: publishing logs and carries on.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis_link
from rasa.core.brokers.broker import EventBroker
from rasa.utils.endpoints import EndpointConfig

from hotline_domain.dialogue_events import STREAM, STREAM_MAXLEN, DialogueEvent

log = logging.getLogger(__name__)


class MaskedRedisEventBroker(EventBroker):
    def __init__(self, client: redis.Redis, stream: str = STREAM) -> None:
        self.client = client
        self.stream = stream
        self._failing = False

    @classmethod
    async def from_endpoint_config(
        cls, broker_config: EndpointConfig, event_loop: Any = None
    ) -> MaskedRedisEventBroker:
        kwargs = broker_config.kwargs
        client = redis_link.client(
            broker_config.url or "127.0.0.1",
            int(kwargs.get("port") or 6379),
            db=int(kwargs.get("db") or 0),
            password=kwargs.get("password") or None,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )
        return cls(client, str(kwargs.get("stream") or STREAM))

    def publish(self, event: dict[str, Any]) -> None:
        """One tracker event (with its sender_id) onto the stream, if the inbox reads its kind."""
        turn = DialogueEvent.from_rasa(event)
        if turn is None:
            return
        try:
            self.client.xadd(self.stream, turn.to_fields(), maxlen=STREAM_MAXLEN, approximate=True)
            self._failing = False
        except redis.RedisError as exc:
            if not self._failing:  # once per outage, not once per event
                log.warning("inbox events not published: %s", type(exc).__name__)
            self._failing = True

    def is_ready(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    async def close(self) -> None:
        self.client.close()
