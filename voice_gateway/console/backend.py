"""What the consoles need from the call side: `ConsoleBackend`, the one thing the web routes delegate to.

The routes own sign-in, roles, CSRF and the audit log; the backend owns the calls: it reads them (from Redis,
across every gateway process) and carries out the actions. It is handed the signed-in `ConsoleUser` and decides
what only it can know: whether the call exists and is live (404), whether it is this user's call (403: another
agent's call; a supervisor's agent action on a call they did not take over), whether the call is in a state the
action fits (409). It says no by raising `ActionRefused`.

JSON shapes (what the pages get; times are ISO 8601 UTC strings, durations whole seconds):
- `calls()`, served as `{"calls": [...]}` by `GET /api/calls` (supervisors): every live call,
  `{"call_id", "gateway", "state" (bot/queued/agent), "queue", "started_at", "agent" (a name or None),
  "duration_s", "frustrated": bool, "frustration": [why, in Chinese, e.g. "连续两次未听懂", "要求转人工"],
  "turns": [{"seq", "speaker" ("caller"/"bot"), "text" (caller text masked), "intent", "confidence"}]}`;
  a bot turn's intent is the intent understood from the caller turn of the same seq;
- `card(user, call_id)`, served by `GET /api/calls/{call_id}`: the context card an agent sees when a call rings
  and while they have it: `{"call_id", "gateway", "state", "queue", "transport", "started_at", "agent",
  "reason" (a HandoffReason value), "reason_label" (Chinese), "identity": {"id_number" (masked), "verified"},
  "intent_path": [intent names, in order], "slots": {name: value (masked)}, "summary", "turns": [as in calls()],
  "earlier_calls": [{"call_id", "started_at", "reason", "disposition"}], "waited_s"}`. An agent may read it
  for a call queued in one of their skills, or their own call (else 403); a supervisor for any live call;
- `queue()`, served as it is by `GET /api/queue`: `{"queues": {skill: {"waiting", "longest_wait_s",
  "agents_available", "estimated_wait_s", "calls": [{"call_id", "waited_s", "priority"}]}}, "callbacks":
  [{"id", "call_id", "queue", "number_masked", "at", "state" (waiting/dialling/done)}]}`; a queue's calls
  in the order they are taken (priority first: 0 the priority band, 1 the rest; then the longest wait);
- `stats()`, served by `GET /api/stats` (supervisors): today's figures `{"calls", "bot_resolved",
  "handed_over", "abandoned", "average_wait_s", "turn_gap_p95_ms"}`;
- `events(user, last_event_id)`: `(id, type, data)` triples, sent as server-sent events (`id:`, `event:`, `data:`
  JSON) by `GET /api/events`; the browser resumes after `last_event_id` (None: from now) when it reconnects.
  Types: `call` (a call summary changed: `call_id, gateway, state` (bot/queued/agent/ended), `queue, agent,
  started_at`), `turn` (`call_id, seq, speaker, text, intent?, confidence?`), `partial` (`call_id, text`: what the
  recogniser has so far), `queue` (`queue, waiting, longest_wait_s`), `callback` (a callback entry as in queue());
- `act(...)`: a dict answered as JSON with status 200. `accept`, `listen`, `whisper`, `barge`, `takeover` get
  the browser's WebRTC offer `{"sdp", "type": "offer"}` (ICE gathered, no trickle) and answer with at least
  `{"sdp", "type": "answer"}`; `hangup`, `return`, `leave` get `{}`; `wrapup` gets `{"note", "disposition"}`
  (one of `DISPOSITIONS`), and is accepted from the call's agent after the call ended too;
- `callback(user, callback_id, action, body)`, served by `POST /api/callbacks/{callback_id}/{dial|done}`: `done`
  gets `{}` and answers the entry as it now is; `dial` gets the browser's WebRTC offer `{"sdp", "type": "offer"}`:
  the gateway places the call to the sealed number and, once the callee answers (the request waits up to ~35 s),
  answers `{"sdp", "type": "answer", "call_id", "callback"}` with this user as the call's agent; 502 with the
  reason when the call does not get through (the callback is waiting again);
- `set_status(...)`: a dict answered as JSON with status 200;
- `agent_status(user)`, served by `GET /api/agent/status` (agents): `{"status" (available/away/busy/wrapup, or
  offline when never set), "skills": [the queues they chose, of their own], "all_skills": [their own]}`, so a
  page loaded again shows where the agent stands.
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


class CallbackAction(str, Enum):
    """What a person does to a callback entry: `POST /api/callbacks/{callback_id}/{action}`."""

    DIAL = "dial"  # call the caller back now (the gateway bridges the call to this user)
    DONE = "done"  # mark it handled

    def __str__(self) -> str:
        return str(self.value)


# wrap-up dispositions: value -> what the form shows
DISPOSITIONS: dict[str, str] = {"resolved": "已解决", "callback": "需回电", "transferred": "已转办", "other": "其他"}

# actions that bring the browser onto the call's bridge: their body is a WebRTC offer
MEDIA_ACTIONS = frozenset(
    {CallAction.ACCEPT, CallAction.LISTEN, CallAction.WHISPER, CallAction.BARGE, CallAction.TAKEOVER}
)


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
    """The call side of the consoles. Every method may raise `ActionRefused`; the routes have checked the role
    (and, for set_status, that the skills are the user's own) before calling."""

    async def calls(self) -> list[dict]:
        """Every live call across all gateway processes (shape: see the module docstring)."""
        ...

    async def card(self, user: ConsoleUser, call_id: str) -> dict:
        """The context card of one call. Raises ActionRefused 404 (unknown or ended, for a call that is not
        this agent's own) or 403 (an agent asking about a call neither queued in their skills nor theirs)."""
        ...

    async def queue(self) -> dict:
        """The queues: waiting callers per skill, longest waits, agents available, estimated waits, callbacks."""
        ...

    async def stats(self) -> dict:
        """Today's figures (the gateways' local day)."""
        ...

    def events(self, user: ConsoleUser, last_event_id: str | None) -> AsyncIterator[tuple[str, str, dict]]:
        """Live events for this user's page as `(id, type, data)`, after `last_event_id` (None: from now on).
        Written as an async generator; it may run for as long as the page is open, and is closed (aclose) when
        the page goes away or the console shuts down."""
        ...

    async def act(self, user: ConsoleUser, action: CallAction, call_id: str, body: dict) -> dict:
        """Carry out `action` on the call, or raise `ActionRefused`. For the actions in MEDIA_ACTIONS the body
        is a WebRTC offer and the answer carries the backend's SDP answer. When the agent's peer connection
        fails or closes before a hang-up, the backend puts the caller back at the head of the queue."""
        ...

    async def callback(self, user: ConsoleUser, callback_id: str, action: CallbackAction, body: dict) -> dict:
        """Dial a callback (`body`: the browser's offer) or mark it done. 404: no such entry; 409: done or being
        dialled, or no outbound line; 502: the call did not get through."""
        ...

    async def set_status(self, user: ConsoleUser, status: AgentStatus, skills: tuple[HandoffQueue, ...]) -> dict:
        """An agent becomes available for (or away from) the queues of `skills`, a subset of their own."""
        ...

    async def agent_status(self, user: ConsoleUser) -> dict:
        """This agent's status and the skills they chose when they set it (their own skills if never set)."""
        ...
