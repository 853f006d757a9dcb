"""What the per-call core talks in: why calls end, the parts that can fail, the call's states, and the frozen
event and command dataclasses `CallFlow` (flow.py) takes and gives. Time comes in with every event."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from hotline_domain.contract import BotTurn, Handoff, HandoffReason


class EndReason(str, enum.Enum):
    """Why a call ended: what the call's record says, and what a transport tells the far end."""

    CALLER_HUNG_UP = "caller_hung_up"
    CALLER_CANCELLED = "caller_cancelled"  # gone before the call was answered
    CONNECTION_LOST = "connection_lost"
    PROTOCOL_ERROR = "protocol_error"  # the far end broke its wire protocol
    MEDIA_TIMEOUT = "timeout"  # no media arrived in time
    INTERNAL_ERROR = "internal_error"
    GATEWAY_STOPPING = "gateway_stopping"
    TRANSFERRED = "transferred"  # passed on to a person by the phone network (SIP REFER)
    COMPLETED = "completed"  # the dialogue said goodbye
    NO_INPUT = "no_input"
    MAX_CALL_LENGTH = "max_call_length"
    AGENT_HUNG_UP = "agent_hung_up"

    def __str__(self) -> str:
        return self.value


class Part(enum.Enum):
    """What a call depends on that can fail mid-call."""

    RECOGNISER = "recogniser"
    SYNTHESISER = "synthesiser"
    DIALOGUE = "dialogue"
    STORE = "store"  # Redis: call records, queues, keypad secrets


UNAVAILABLE = {  # the handoff reason a person sees when a part failed
    Part.RECOGNISER: HandoffReason.RECOGNISER_UNAVAILABLE,
    Part.SYNTHESISER: HandoffReason.SYNTHESISER_UNAVAILABLE,
    Part.DIALOGUE: HandoffReason.DIALOGUE_UNAVAILABLE,
    Part.STORE: HandoffReason.STORE_UNAVAILABLE,
}


class CallState(enum.Enum):
    LISTENING = "listening"  # waiting for the caller
    THINKING = "thinking"  # the dialogue is working on the caller's turn
    SPEAKING = "speaking"  # the agent's audio is playing
    INTERRUPTED = "interrupted"  # the caller spoke over the agent; their turn is being heard
    COLLECTING_DIGITS = "collecting_digits"  # keypad entry (ID number, password)
    ON_HOLD = "on_hold"  # handed over, waiting for a person
    WITH_PERSON = "with_person"  # a person has taken the call; the bot is off the bridge
    ENDED = "ended"


# --- events ---
@dataclass(frozen=True)
class CallStarted:
    now: float


@dataclass(frozen=True)
class SpeechOnset:
    """The caller has just started making sound (a few voiced frames): could be speech, a 嗯, or a cough."""

    now: float


@dataclass(frozen=True)
class SpeechStarted:
    """The caller has been speaking long enough to count as a turn (not a click or a short 嗯)."""

    now: float


@dataclass(frozen=True)
class UtteranceRecognised:
    text: str
    confidence: float
    now: float
    unclear: bool = False  # speech was there but nothing usable was heard


@dataclass(frozen=True)
class KeyPressed:
    key: str  # 0-9, *, #
    now: float


@dataclass(frozen=True)
class DialogueAnswered:
    turn: BotTurn
    now: float


@dataclass(frozen=True)
class EngineFailed:
    """A part the bot needs failed (raised, timed out, unreachable): the caller hears an apology, then a person."""

    part: Part
    detail: str
    now: float


@dataclass(frozen=True)
class PlaybackFinished:
    utterance: int  # the id of the Say command whose audio has been played out
    now: float


@dataclass(frozen=True)
class PlaybackFailed:
    utterance: int  # the Say command whose audio could not be made
    detail: str
    now: float


@dataclass(frozen=True)
class PersonTookOver:
    """A human agent or a supervisor has the call now: the bot is silent until it is given the call back."""

    now: float


@dataclass(frozen=True)
class BotResumed:
    """The person gave the call back to the bot: it greets the caller again and listens, with its context."""

    now: float


@dataclass(frozen=True)
class ServiceClosing:
    """The gateway is shutting down and the drain limit has passed: a spoken goodbye, then the line closes."""

    now: float


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class CallerHungUp:
    now: float


@dataclass(frozen=True)
class QueueStatus:
    """Where a caller waiting for a person stands: place (None: not in a queue), estimated wait (None: nothing
    honest to say), agents of the queue free now, and whether a callback can be registered."""

    position: int | None
    wait_s: float | None
    agents_available: int
    can_call_back: bool
    now: float


@dataclass(frozen=True)
class CallbackRegistered:
    """The callback the caller asked for is registered (or could not be)."""

    ok: bool
    now: float


@dataclass(frozen=True)
class BackInQueue:
    """The person's side dropped mid-call: the caller is back in the queue, at its front, on hold."""

    now: float


Event = (
    CallStarted
    | SpeechOnset
    | SpeechStarted
    | UtteranceRecognised
    | KeyPressed
    | DialogueAnswered
    | EngineFailed
    | PlaybackFinished
    | PlaybackFailed
    | PersonTookOver
    | BotResumed
    | ServiceClosing
    | Tick
    | CallerHungUp
    | QueueStatus
    | CallbackRegistered
    | BackInQueue
)


# --- commands ---
@dataclass(frozen=True)
class Say:
    text: str
    utterance: int
    interruptible: bool = True


@dataclass(frozen=True)
class StopSpeaking:
    """Drop queued agent audio now (Twilio `clear`)."""


@dataclass(frozen=True)
class PauseSpeaking:
    """Hold the agent's audio where it is (and drop what the far end buffered): the caller may be taking the turn."""


@dataclass(frozen=True)
class ResumeSpeaking:
    """Carry on from where the agent was paused: it was only a backchannel or a noise."""


@dataclass(frozen=True)
class AskDialogue:
    text: str  # what the caller said, or a keypad message
    replaces_last: bool = False  # the caller had not finished: take back their last turn, then send the whole


@dataclass(frozen=True)
class SendKeys:
    digits: str
    secret: bool  # send by one-time reference, never as text


@dataclass(frozen=True)
class HandOver:
    handoff: Handoff


@dataclass(frozen=True)
class HangUp:
    reason: EndReason
    detail: str = ""  # the dialogue's own reason, when it ended the call


@dataclass(frozen=True)
class CheckQueue:
    """Find out where the waiting caller stands (answered with `QueueStatus`)."""


@dataclass(frozen=True)
class RegisterCallback:
    """Register a callback to `number` (answered with `CallbackRegistered`); the number is never shown."""

    number: str = field(repr=False)


Command = (
    Say
    | StopSpeaking
    | PauseSpeaking
    | ResumeSpeaking
    | AskDialogue
    | SendKeys
    | HandOver
    | HangUp
    | CheckQueue
    | RegisterCallback
)
