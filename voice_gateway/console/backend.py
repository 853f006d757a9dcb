"""What the consoles need from the call side: `ConsoleBackend`, the one thing the web routes delegate to.

The routes own sign-in, roles, CSRF and the audit log; the backend owns the calls: it reads them (from Redis,
across every gateway process) and carries out the actions. It is handed the signed-in `ConsoleUser` and decides
what only it can know: whether the call exists and is live (404), whether it is this user's call (403: another
agent's call; a supervisor's agent action on a call they did not take over), whether the call is in a state the
action fits (409). It says no by raising `ActionRefused`.

JSON shapes (what the pages get, unchanged):
- `calls()`: `[{"call_id", "gateway", "state", "queue", "started_at", "turns": [{"speaker", "text", "intent",
  "confidence"}]}]`, served as `{"calls": [...]}` by `GET /api/calls`;
- `queue()`: a dict served as it is by `GET /api/queue` (e.g. `{"queues": {"card": {"waiting", "longest_wait_s"}}}`);
- `events(user, last_event_id)`: `(id, type, data)` triples, sent as server-sent events (`id:`, `event:`, `data:`
  JSON) by `GET /api/events`; the browser resumes after `last_event_id` (None: from now) when it reconnects;
- `act(...)` and `set_status(...)`: a dict answered as JSON with status 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import Enum
from typing import Protocol

from hotline_domain.contract import HandoffQueue
from voice_gateway.console.roles import ConsoleUser, Role


class CallAction(str, Enum):
    """What a person does to a call: `POST /api/calls/{call_id}/{action}`."""

    ACCEPT = "accept"  # an agent takes an offered call
    HANGUP = "hangup"
    WRAPUP = "wrapup"  # body: {"note", "disposition"}
    RETURN = "return"  # the caller goes back to the bot, with the dialogue's context
    LISTEN = "listen"  # a supervisor hears both sides
    WHISPER = "whisper"  # a supervisor talks to the agent only
    BARGE = "barge"  # a supervisor talks to both
    TAKEOVER = "takeover"  # a supervisor becomes the call's agent (a bot call, or an agent's)
    LEAVE = "leave"  # a supervisor stops listening, whispering or barging

    def __str__(self) -> str:
        return str(self.value)


class AgentStatus(str, Enum):
    AVAILABLE = "available"
    AWAY = "away"

    def __str__(self) -> str:
        return str(self.value)


AGENT_ACTIONS = frozenset({CallAction.ACCEPT, CallAction.HANGUP, CallAction.WRAPUP, CallAction.RETURN})
SUPERVISOR_ACTIONS = frozenset(CallAction) - AGENT_ACTIONS

# Who may ask for an action at all (admin always may). A supervisor asking for an agent action is let through
# to the backend, which allows it only on a call that supervisor took over.
ACTION_ROLES: dict[CallAction, tuple[Role, ...]] = {
    **{a: (Role.AGENT, Role.SUPERVISOR) for a in AGENT_ACTIONS},
    **{a: (Role.SUPERVISOR,) for a in SUPERVISOR_ACTIONS},
}


class ActionRefused(Exception):
    """The backend says no: 404 an unknown or ended call, 403 not this user's call, 409 the wrong state,
    400 a body it cannot use. `message` is shown to the user as it is (Chinese)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConsoleBackend(Protocol):
    async def calls(self) -> list[dict]:
        """Every live call across all gateway processes."""
        ...

    async def queue(self) -> dict:
        """The queues: waiting callers per service domain, longest waits, callbacks."""
        ...

    def events(self, user: ConsoleUser, last_event_id: str | None) -> AsyncIterator[tuple[str, str, dict]]:
        """Live events for this user's page as `(id, type, data)`, after `last_event_id` (None: from now on).
        Written as an async generator; it may run for as long as the page is open, and is closed (aclose) when
        the page goes away or the console shuts down."""
        ...

    async def act(self, user: ConsoleUser, action: CallAction, call_id: str, body: dict) -> dict:
        """Carry out `action` on the call, or raise `ActionRefused`. The route has checked the role."""
        ...

    async def set_status(self, user: ConsoleUser, status: AgentStatus, skills: tuple[HandoffQueue, ...]) -> dict:
        """An agent becomes available for (or away from) the queues of `skills`, a subset of their own."""
        ...
