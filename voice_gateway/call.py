"""The per-call turn-taking core: events in, commands out, no I/O.

`CallFlow` decides who speaks when: it hears what the endpointer, the recogniser, the keypad, the dialogue and
the player report (events), and answers with what the session must do (commands): say something, stop saying
it, ask the dialogue, hand over, hang up. Time comes in with every event, so tests drive it with plain calls.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from voice_gateway.rasa_client import BotTurn


class CallState(enum.Enum):
    LISTENING = "listening"  # waiting for the caller
    THINKING = "thinking"  # the dialogue is working on the caller's turn
    SPEAKING = "speaking"  # the agent's audio is playing
    INTERRUPTED = "interrupted"  # the caller spoke over the agent; their turn is being heard
    COLLECTING_DIGITS = "collecting_digits"  # keypad entry (ID number, password)
    ON_HOLD = "on_hold"  # handed over, waiting for a person
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


@dataclass(frozen=True)
class KeyPressed:
    key: str  # 0-9, *, #
    now: float


@dataclass(frozen=True)
class DialogueAnswered:
    turn: BotTurn
    now: float


@dataclass(frozen=True)
class DialogueFailed:
    reason: str
    now: float


@dataclass(frozen=True)
class PlaybackFinished:
    utterance: int  # the id of the Say command whose audio has been played out
    now: float


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class CallerHungUp:
    now: float


Event = (
    CallStarted
    | SpeechOnset
    | SpeechStarted
    | UtteranceRecognised
    | KeyPressed
    | DialogueAnswered
    | DialogueFailed
    | PlaybackFinished
    | Tick
    | CallerHungUp
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
    payload: dict[str, Any]


@dataclass(frozen=True)
class HangUp:
    reason: str


Command = Say | StopSpeaking | PauseSpeaking | ResumeSpeaking | AskDialogue | SendKeys | HandOver | HangUp

CONTINUE_S = 0.8  # the caller who starts speaking this soon after the answer began was still finishing their turn
BACKCHANNEL = re.compile(r"^(嗯+|啊+|哦+|噢+|对+|是+|好+|好的|行|嗯嗯|对对|是的|OK|ok)[。，！!,.]?$")


@dataclass
class Timing:
    no_input_s: float = 8.0  # silence after the agent finished before a reprompt
    no_input_reprompts: int = 2  # then hand over (or end the call)
    inter_digit_s: float = 5.0
    max_call_s: float = 600.0


@dataclass
class Prompts:
    consent: str = "您好，为了提高服务质量，您的通话可能会被录音。"
    still_there: str = "您好，您还在吗？请说出您要办理的业务。"
    no_input_handover: str = "没有听到您的声音，为您转接人工客服。"
    no_input_goodbye: str = "没有听到您的声音，感谢来电，再见。"
    dialogue_down: str = "非常抱歉，系统暂时有点问题，为您转接人工客服，请稍候。"
    too_long: str = "通话时间已经很长了，如需继续办理请重新拨打，感谢来电，再见。"

    def queue_position(self, position: int) -> str:
        """What a caller waiting for a person hears: how many are ahead of them (1 = next)."""
        ahead = "您是下一位" if position <= 1 else f"您前面还有{position - 1}位来电"
        return f"{ahead}，请不要挂机，人工客服马上为您服务。"


@dataclass
class CallFlow:
    """One call's turn-taking. Feed it events with `handle`; carry out the commands it returns, in order."""

    recording_notice: bool = False
    hand_over_on_no_input: bool = True
    timing: Timing = field(default_factory=Timing)
    prompts: Prompts = field(default_factory=Prompts)
    state: CallState = CallState.LISTENING
    started: float | None = None
    _utterance: int = 0
    _playing: dict[int, bool] = field(default_factory=dict)  # utterance id -> interruptible
    _after_playback: Command | None = None
    _listening_since: float | None = None
    _reprompts: int = 0
    _digits: str = ""
    _collect: dict[str, Any] | None = None
    _last_key: float = 0.0
    _paused: bool = False  # the agent holds its words while the caller makes a sound
    _asked: str = ""  # what the caller said in the turn the dialogue is answering (or just answered)
    _joining: str = ""  # more of that turn, heard while the dialogue was thinking
    _onset_at: float = -1.0  # when the caller's latest sound began
    _answered_at: float = -1.0  # when the latest answer began

    @property
    def expects_digits(self) -> bool:
        """The dialogue asked for a number (ID, card, password): the caller may read digits out, with pauses."""
        return self._collect is not None

    # --- the one entry point ---
    def handle(self, event: Event) -> list[Command]:
        if self.state is CallState.ENDED:
            return []
        match event:
            case CallStarted(now):
                return self._start(now)
            case CallerHungUp():
                self.state = CallState.ENDED
                return []
            case SpeechOnset(now):
                return self._onset(now)
            case SpeechStarted(now):
                return self._speech_started(now)
            case UtteranceRecognised(text, _, now):
                return self._recognised(text.strip(), now)
            case KeyPressed(key, now):
                return self._key(key, now)
            case DialogueAnswered(turn, now):
                return self._answered(turn, now)
            case DialogueFailed(_, now):
                return self._say_then([self.prompts.dialogue_down], HandOver({"reason": "dialogue_unavailable"}), now)
            case PlaybackFinished(utterance, now):
                return self._played(utterance, now)
            case Tick(now):
                return self._tick(now)
        return []

    # --- handlers ---
    def _start(self, now: float) -> list[Command]:
        self.started = now
        commands: list[Command] = []
        if self.recording_notice:
            commands.append(self._say(self.prompts.consent, interruptible=False))
            self.state = CallState.SPEAKING
        commands.append(AskDialogue("/greet"))
        return commands

    def _interruptible(self) -> bool:
        return self.state is CallState.SPEAKING and bool(self._playing) and all(self._playing.values())

    def _onset(self, now: float) -> list[Command]:
        """Sound from the caller while the agent talks: hold the agent's words at once, decide when it is heard."""
        self._onset_at = now
        if self._interruptible() and not self._paused:
            self._paused = True
            return [PauseSpeaking()]
        return []

    def _speech_started(self, now: float) -> list[Command]:
        self._reprompts = 0
        if self._interruptible():
            self._paused = False
            self._playing.clear()
            self._after_playback = None
            self.state = CallState.INTERRUPTED
            return [StopSpeaking()]
        if self.state is CallState.LISTENING:
            self._listening_since = None  # the caller is talking: no reprompt while they do
        return []

    def _recognised(self, text: str, now: float) -> list[Command]:
        if self.state is CallState.THINKING and self._asked and text and not BACKCHANNEL.match(text):
            self._joining = f"{self._joining}，{text}" if self._joining else text  # they paused mid-sentence
            return []
        if self.state in (CallState.ON_HOLD, CallState.THINKING):
            return []  # nobody to answer yet: a person is coming, or the dialogue is busy
        if not text or (self.state is CallState.SPEAKING and BACKCHANNEL.match(text)):
            if self.state is CallState.INTERRUPTED:
                self.state = CallState.LISTENING
                self._listening_since = now
            if self._paused:
                self._paused = False
                return [ResumeSpeaking()]  # 嗯/对 or a noise: the agent carries on where it stopped
            return []  # noise, or 嗯/对 while the agent talks: not a turn
        if self.state is CallState.SPEAKING and not all(self._playing.values()):
            return []  # a notice that must be heard is still playing
        # speaking again as the answer began: the answer was to half a sentence, ask again with all of it
        continuing = self.state is CallState.SPEAKING and self._onset_at < self._answered_at + CONTINUE_S
        if continuing and self._asked:
            text = f"{self._asked}，{text}"
        commands: list[Command] = [StopSpeaking()] if self.state is CallState.SPEAKING else []
        self._paused = False
        self._playing.clear()
        self._after_playback = None
        self._reprompts = 0
        self.state = CallState.THINKING
        replaces_last = bool(continuing and self._asked)
        self._asked, self._joining = text, ""
        return [*commands, AskDialogue(text, replaces_last=replaces_last)]

    def _key(self, key: str, now: float) -> list[Command]:
        if self.state in (CallState.ON_HOLD, CallState.THINKING) or key not in "0123456789*#":
            return []
        commands: list[Command] = []
        if self.state is CallState.SPEAKING and all(self._playing.values()):
            self._playing.clear()  # a key press stops the prompt, like speech does
            self._paused = False
            commands.append(StopSpeaking())
            self.state = CallState.COLLECTING_DIGITS if self._collect else CallState.LISTENING
        self._last_key = now
        self._reprompts = 0
        if key == "#":
            return commands + self._submit_digits()
        self._digits += "X" if key == "*" and (self._collect or {}).get("star_means") == "X" else key
        limit = int((self._collect or {}).get("max_digits") or 0)
        if self._collect is None and self._digits == "0":
            return commands + self._submit_digits()  # 0 for a person
        if limit and len(self._digits) >= limit:
            return commands + self._submit_digits()
        return commands

    def _submit_digits(self) -> list[Command]:
        digits, secret = self._digits, bool((self._collect or {}).get("secret"))
        self._digits, self._collect = "", None
        self._asked, self._joining = "", ""  # keys are never joined with speech
        if not digits:
            return []
        self.state = CallState.THINKING
        return [SendKeys(digits, secret)]

    def _answered(self, turn: BotTurn, now: float) -> list[Command]:
        if self.state is CallState.ON_HOLD:
            return []
        if self._joining and self.state is CallState.THINKING:  # that answer was to half a sentence
            self._asked, self._joining = f"{self._asked}，{self._joining}", ""
            return [AskDialogue(self._asked, replaces_last=True)]
        self._answered_at = now
        collect = turn.payload("collect_digits")
        if collect:
            self._collect, self._digits = collect, ""
        if turn.payload("handoff"):
            return self._say_then(turn.texts, HandOver(turn.payload("handoff") or {}), now)
        if turn.payload("hangup"):
            return self._say_then(turn.texts, HangUp((turn.payload("hangup") or {}).get("reason", "done")), now)
        return self._say_then(turn.texts, None, now)

    def _say_then(self, texts: list[str], then: Command | None, now: float) -> list[Command]:
        commands: list[Command] = [self._say(text) for text in texts if text]
        if isinstance(then, HandOver):
            self.state = CallState.ON_HOLD  # the bot stops here, whatever is still playing
            return [*commands, then]
        if not commands:
            return [then] if then else self._listen(now)
        self.state = CallState.SPEAKING
        self._after_playback = then
        return commands

    def _say(self, text: str, *, interruptible: bool = True) -> Say:
        self._utterance += 1
        self._playing[self._utterance] = interruptible
        return Say(text, self._utterance, interruptible)

    def _played(self, utterance: int, now: float) -> list[Command]:
        self._playing.pop(utterance, None)
        if self._playing or self.state is not CallState.SPEAKING:
            return []
        then, self._after_playback = self._after_playback, None
        if isinstance(then, HangUp):
            self.state = CallState.ENDED
            return [then]
        return self._listen(now)

    def _listen(self, now: float) -> list[Command]:
        self.state = CallState.COLLECTING_DIGITS if self._collect else CallState.LISTENING
        self._listening_since = now
        self._last_key = now
        return []

    def _tick(self, now: float) -> list[Command]:
        if (
            self.started is not None
            and now - self.started > self.timing.max_call_s
            and self.state is not CallState.ON_HOLD
        ):
            return self._say_then([self.prompts.too_long], HangUp("max_call_length"), now)
        if (
            self.state is CallState.COLLECTING_DIGITS
            and self._digits
            and now - self._last_key > self.timing.inter_digit_s
        ):
            return self._submit_digits()
        waiting = self.state in (CallState.LISTENING, CallState.COLLECTING_DIGITS) and not self._digits
        if waiting and self._listening_since is not None and now - self._listening_since > self.timing.no_input_s:
            return self._no_input(now)
        return []

    def _no_input(self, now: float) -> list[Command]:
        self._reprompts += 1
        if self._reprompts <= self.timing.no_input_reprompts:
            return self._say_then([self.prompts.still_there], None, now)
        if self.hand_over_on_no_input:
            return self._say_then([self.prompts.no_input_handover], HandOver({"reason": "no_input"}), now)
        return self._say_then([self.prompts.no_input_goodbye], HangUp("no_input"), now)
