"""The per-call turn-taking core: events in, commands out, no I/O.

`CallFlow` decides who speaks when: it hears what the endpointer, the recogniser, the keypad, the dialogue and
the player report (events), and answers with what the session must do (commands): say something, stop saying
it, ask the dialogue, hand over, hang up. Time comes in with every event, so tests drive it with plain calls.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from hotline_domain.contract import KEYPAD_KEYS, BotTurn, CollectDigits, Handoff, HandoffReason
from voice_gateway.call_events import (
    UNAVAILABLE,
    AskDialogue,
    BackInQueue,
    BotResumed,
    CallbackRegistered,
    CallerHungUp,
    CallStarted,
    CallState,
    CheckQueue,
    Command,
    DialogueAnswered,
    EndReason,
    EngineFailed,
    Event,
    HandOver,
    HangUp,
    KeyPressed,
    Part,
    PauseSpeaking,
    PersonTookOver,
    PlaybackFailed,
    PlaybackFinished,
    QueueStatus,
    RegisterCallback,
    ResumeSpeaking,
    Say,
    SendKeys,
    ServiceClosing,
    SpeechOnset,
    SpeechStarted,
    StopSpeaking,
    Tick,
    UtteranceRecognised,
)
from voice_gateway.hold import Hold, HoldPhase
from voice_gateway.speech_text import cardinal, digits_spoken

__all__ = [
    "BACKCHANNEL",
    "CONTINUE_S",
    "UNAVAILABLE",
    "AskDialogue",
    "BackInQueue",
    "BotResumed",
    "CallFlow",
    "CallStarted",
    "CallState",
    "CallbackRegistered",
    "CallerHungUp",
    "CheckQueue",
    "Command",
    "DialogueAnswered",
    "EndReason",
    "EngineFailed",
    "Event",
    "HandOver",
    "HangUp",
    "KeyPressed",
    "Part",
    "PauseSpeaking",
    "PersonTookOver",
    "PlaybackFailed",
    "PlaybackFinished",
    "Prompts",
    "QueueStatus",
    "RegisterCallback",
    "ResumeSpeaking",
    "Say",
    "SendKeys",
    "ServiceClosing",
    "SpeechOnset",
    "SpeechStarted",
    "StopSpeaking",
    "Tick",
    "Timing",
    "UtteranceRecognised",
]

CONTINUE_S = 0.8  # the caller who starts speaking this soon after the answer began was still finishing their turn
QUEUE_MINUTES = 30  # estimates up to this many minutes are said as such; longer is 半个小时以上
CALLBACK_DIGITS = (7, 12)  # a callback number: a local landline to a mobile with its area code or 0
BACKCHANNEL = re.compile(r"^(嗯+|啊+|哦+|噢+|对+|是+|好+|好的|行|嗯嗯|对对|是的|OK|ok)[。，！!,.]?$")


@dataclass
class Timing:
    no_input_s: float = 8.0  # silence after the agent finished before a reprompt
    no_input_reprompts: int = 2  # then hand over (or end the call)
    inter_digit_s: float = 5.0
    max_call_s: float = 600.0
    queue_announce_s: float = 30.0  # on hold: the position and the wait are said again this often
    queue_callback_offer_s: float = 180.0  # an estimate this long (or none, or no agent free): a callback offer
    queue_limit_s: float = 600.0  # the longest a caller is kept waiting: then a last offer and a goodbye


@dataclass
class Prompts:
    consent: str = "您好，为了提高服务质量，您的通话可能会被录音。"
    still_there: str = "您好，您还在吗？请说出您要办理的业务。"
    not_heard: str = "不好意思，我没听清，您能再说一遍吗？"  # speech was heard, but not what it said
    no_input_handover: str = "没有听到您的声音，为您转接人工客服。"
    no_input_goodbye: str = "没有听到您的声音，感谢来电，再见。"
    dialogue_down: str = "非常抱歉，系统暂时有点问题，为您转接人工客服，请稍候。"
    too_long: str = "通话时间已经很长了，如需继续办理请重新拨打，感谢来电，再见。"
    welcome_back: str = "您好，我是智能客服，请问还有什么可以帮您？"
    closing: str = "非常抱歉，系统需要维护，本次通话即将结束。请您稍后再拨打12333，再见。"
    transferring: str = "正在为您转接人工客服，请不要挂机。"  # the queue cannot say a position
    # on hold (hold.py): announcements, the callback offer, the waiting limit
    queue_now: str = "马上为您接通。"
    queue_no_estimate: str = "现在还无法估计需要等多久，请您耐心等候。"
    queue_no_agent: str = "人工客服暂时都在忙，现在还无法估计需要等多久。"
    queue_over_half_hour: str = "大约需要半个小时以上。"
    callback_offer: str = "不想等的话，请按一，我们给您回电。"
    callback_number: str = "请在电话按键上输入您的手机号码，以井号键结束。"
    callback_bad_number: str = "号码位数不对，请重新输入，以井号键结束。"
    callback_done: str = "好的，我们会尽快给您回电。感谢来电，再见。"
    callback_failed: str = "抱歉，回电登记没有成功，请您继续等候。"
    queue_limit: str = "非常抱歉，现在等待的人比较多。"
    queue_limit_goodbye: str = "非常抱歉，现在等待的人比较多，请您稍后再拨打12333。感谢来电，再见。"
    queue_no_answer_goodbye: str = "没有收到您的按键，请您稍后再拨打12333。感谢来电，再见。"
    back_in_queue: str = "非常抱歉，刚才的通话中断了，正在为您重新接通人工客服。"

    def canned(self) -> tuple[str, ...]:
        """What the agent must be able to say when its synthesiser fails: rendered ahead, at start."""
        return (self.dialogue_down,)

    def queue_position(self, position: int) -> str:
        """How many callers are ahead of this one (1 = next), in words: 您前面还有两位。"""
        return "您是下一位。" if position <= 1 else f"您前面还有{_count(position - 1)}位。"

    def queue_wait(self, wait_s: float | None, agents_available: int) -> str:
        """The estimated wait, honestly: in whole minutes, or that there is no estimate (and why)."""
        if wait_s is None:
            return self.queue_no_agent if agents_available == 0 else self.queue_no_estimate
        if wait_s <= 0:
            return self.queue_now
        minutes = max(1, math.ceil(wait_s / 60))
        return self.queue_over_half_hour if minutes > QUEUE_MINUTES else f"大约需要{_count(minutes)}分钟。"

    def callback_confirm(self, number: str) -> str:
        """The callback number read back by its last four digits only."""
        return f"您输入的号码尾号是{digits_spoken(number[-4:])}，确认请按一，重新输入请按二。"

    def hold_texts(self, positions: int) -> list[str]:
        """The hold's sentences that depend on a number (places, minutes), for rendering ahead."""
        return [self.queue_position(n) for n in range(1, positions + 1)] + [
            self.queue_wait(60.0 * m, 1) for m in range(1, QUEUE_MINUTES + 1)
        ]


def _count(n: int) -> str:
    """A count before a measure word: 两位, 两分钟, 十二位."""
    return "两" if n == 2 else cardinal(n)


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
    _collect: CollectDigits | None = None
    _last_key: float = 0.0
    _paused: bool = False  # the agent holds its words while the caller makes a sound
    _asked: str = ""  # what the caller said in the turn the dialogue is answering (or just answered)
    _joining: str = ""  # more of that turn, heard while the dialogue was thinking
    _onset_at: float = -1.0  # when the caller's latest sound began
    _answered_at: float = -1.0  # when the latest answer began
    _asked_again: bool = False  # the caller was asked to say it again (speech heard, nothing understood)
    _gave_up: bool = False  # a part failed and the caller was handed over: later failures change nothing
    hold: Hold | None = None  # waiting for a person, once the call is in a queue (or lost its person)

    @property
    def expects_digits(self) -> bool:
        """The dialogue asked for a number (ID, card, password): the caller may read digits out, with pauses."""
        return self._collect is not None

    @property
    def hold_music(self) -> bool:
        """The caller waits for a person with nothing being keyed: the hold music plays between the words."""
        return self.state is CallState.ON_HOLD and self.hold is not None and self.hold.phase is HoldPhase.WAITING

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
            case UtteranceRecognised(text, _, now, unclear):
                return self._recognised(text.strip(), now, unclear=unclear)
            case KeyPressed(key, now):
                return self._key(key, now)
            case DialogueAnswered(turn, now):
                return self._answered(turn, now)
            case EngineFailed(part, _, now):
                return self._failed(part, now)
            case PlaybackFinished(utterance, now):
                return self._played(utterance, now)
            case PlaybackFailed(utterance, _, now):
                self._playing.pop(utterance, None)
                if self.state is CallState.ON_HOLD:
                    return self._played(utterance, now)  # a hold prompt not heard: the hold carries on
                return self._failed(Part.SYNTHESISER, now)
            case PersonTookOver():
                return self._person_took_over()
            case BotResumed(now):
                return self._bot_resumed(now)
            case ServiceClosing(now):
                return self._closing(now)
            case Tick(now):
                return self._tick(now)
            case QueueStatus():
                return self._queue_status(event)
            case CallbackRegistered(ok, now):
                return self._callback_registered(ok, now)
            case BackInQueue(now):
                return self._back_in_queue(now)
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

    def _recognised(self, text: str, now: float, *, unclear: bool = False) -> list[Command]:
        if self.state is CallState.THINKING and self._asked and text and not BACKCHANNEL.match(text):
            self._joining = f"{self._joining}，{text}" if self._joining else text  # they paused mid-sentence
            return []
        if self.state in (CallState.ON_HOLD, CallState.THINKING, CallState.WITH_PERSON):
            return []  # nobody to answer yet: a person is coming, or the dialogue is busy
        waiting = (CallState.LISTENING, CallState.INTERRUPTED, CallState.COLLECTING_DIGITS)
        if not text and unclear and not self._asked_again and self.state in waiting:
            self._asked_again = True  # once: after that, silence and the no-input reprompts take their course
            return self._say_then([self.prompts.not_heard], None, now)
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
        self._asked, self._joining, self._asked_again = text, "", False
        return [*commands, AskDialogue(text, replaces_last=replaces_last)]

    def _key(self, key: str, now: float) -> list[Command]:
        if self.state is CallState.ON_HOLD:
            return self._hold_key(key, now)
        if self.state in (CallState.ON_HOLD, CallState.THINKING, CallState.WITH_PERSON) or key not in "0123456789*#":
            return []
        if key == "#" and not self._digits:
            # a lone #, often the end of an entry already sent at its full length: the next question (a password,
            # to be sent as a secret) must keep its prompt and its collection
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
        star = self._collect.star_means if self._collect is not None else None
        self._digits += star if key == "*" and star else key
        limit = self._collect.max_digits if self._collect is not None else 0
        if self._collect is None and self._digits == "0":
            return commands + self._submit_digits()  # 0 for a person
        if limit and len(self._digits) >= limit:
            return commands + self._submit_digits()
        return commands

    def _submit_digits(self) -> list[Command]:
        if self.state is CallState.ON_HOLD:
            return self._callback_number()
        digits, secret = self._digits, self._collect is not None and self._collect.secret
        self._digits, self._collect = "", None
        self._asked, self._joining = "", ""  # keys are never joined with speech
        if not digits:
            return []
        self.state = CallState.THINKING
        return [SendKeys(digits, secret)]

    def _answered(self, turn: BotTurn, now: float) -> list[Command]:
        if self.state in (CallState.ON_HOLD, CallState.WITH_PERSON):
            return []
        if self._joining and self.state is CallState.THINKING:  # that answer was to half a sentence
            self._asked, self._joining = f"{self._asked}，{self._joining}", ""
            return [AskDialogue(self._asked, replaces_last=True)]
        self._answered_at = now
        if turn.collect is not None:
            self._collect, self._digits = turn.collect, ""
        if turn.handoff is not None:
            return self._say_then(turn.texts, HandOver(turn.handoff), now)
        if turn.hangup is not None:
            return self._say_then(turn.texts, HangUp(EndReason.COMPLETED, turn.hangup.reason.value), now)
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
        if self.state is CallState.ON_HOLD:
            if self._playing or not isinstance(self._after_playback, HangUp):
                return []
            then, self._after_playback = self._after_playback, None
            self.state = CallState.ENDED
            return [then]  # the hold's goodbye has been heard
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

    def _failed(self, part: Part, now: float) -> list[Command]:
        """A part failed: say sorry (once) and hand the caller to a person, by the catalogue's rules."""
        if self.state in (CallState.ON_HOLD, CallState.WITH_PERSON) or self._gave_up:
            return []
        self._gave_up = True
        stop: list[Command] = [StopSpeaking()] if self._playing else []
        self._playing.clear()
        self._paused = False
        self._after_playback, self._collect, self._digits = None, None, ""
        say = self._say(self.prompts.dialogue_down, interruptible=False)
        self.state = CallState.ON_HOLD
        return [*stop, say, HandOver(Handoff(UNAVAILABLE[part]))]

    def _person_took_over(self) -> list[Command]:
        stop: list[Command] = [StopSpeaking()] if self._playing else []
        self._playing.clear()
        self._paused = False
        self._after_playback, self._collect, self._digits = None, None, ""
        self._asked, self._joining = "", ""
        self.state = CallState.WITH_PERSON
        self.hold = None
        return stop

    def _closing(self, now: float) -> list[Command]:
        stop: list[Command] = [StopSpeaking()] if self._playing else []
        self._playing.clear()
        self._paused, self._collect, self._digits = False, None, ""
        self.state = CallState.SPEAKING
        say = self._say(self.prompts.closing, interruptible=False)
        self._after_playback = HangUp(EndReason.GATEWAY_STOPPING)
        return [*stop, say]

    def _bot_resumed(self, now: float) -> list[Command]:
        if self.state not in (CallState.WITH_PERSON, CallState.ON_HOLD):
            return []
        stop: list[Command] = [StopSpeaking()] if self._playing else []
        self._playing.clear()
        self.hold, self._collect, self._digits, self._after_playback = None, None, "", None
        self._reprompts = 0
        return [*stop, *self._say_then([self.prompts.welcome_back], None, now)]

    def _tick(self, now: float) -> list[Command]:
        if self.state is CallState.ON_HOLD:
            return self._hold_tick(now)
        if (
            self.started is not None
            and now - self.started > self.timing.max_call_s
            and self.state not in (CallState.ON_HOLD, CallState.WITH_PERSON)
        ):
            return self._say_then([self.prompts.too_long], HangUp(EndReason.MAX_CALL_LENGTH), now)
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
            return self._say_then([self.prompts.no_input_handover], HandOver(Handoff(HandoffReason.NO_INPUT)), now)
        return self._say_then([self.prompts.no_input_goodbye], HangUp(EndReason.NO_INPUT), now)

    # --- on hold: waiting for a person (hold.py) ---
    def _stop_prompt(self) -> list[Command]:
        if not self._playing:
            return []
        self._playing.clear()
        return [StopSpeaking()]

    def _queue_status(self, status: QueueStatus) -> list[Command]:
        """Where the caller stands: said at once (the first time, and every `queue_announce_s`)."""
        if self.state is not CallState.ON_HOLD:
            return []
        if self.hold is None:
            self.hold = Hold(since=status.now)
        hold = self.hold
        hold.checking, hold.can_call_back = False, status.can_call_back
        if hold.phase is not HoldPhase.WAITING or hold.limit_at is not None:
            return []
        hold.announced_at = status.now
        if status.position is None:
            return [self._say(self.prompts.transferring, interruptible=False)]
        text = self.prompts.queue_position(status.position) + self.prompts.queue_wait(
            status.wait_s, status.agents_available
        )
        long_wait = status.wait_s is None or status.wait_s >= self.timing.queue_callback_offer_s
        if status.can_call_back and (long_wait or status.agents_available == 0):
            hold.offer_open = True
            text += self.prompts.callback_offer
        return [self._say(text, interruptible=False)]

    def _hold_tick(self, now: float) -> list[Command]:
        hold, timing = self.hold, self.timing
        if hold is None or hold.phase is HoldPhase.CLOSING:
            return []
        if hold.phase in (HoldPhase.NUMBER, HoldPhase.CONFIRM):
            if self._playing:
                hold.keyed_at = now  # the caller has until `no_input_s` after the prompt to key
            if hold.phase is HoldPhase.NUMBER and self._digits and now - self._last_key > timing.inter_digit_s:
                return self._callback_number()
            if not self._playing and not self._digits and now - hold.keyed_at > timing.no_input_s:
                hold.phase, hold.number, self._collect = HoldPhase.WAITING, "", None  # nothing keyed: wait on
                hold.announced_at = 0.0
            return []
        if hold.limit_at is None and now - hold.since >= timing.queue_limit_s:
            hold.limit_at = now
            stop = self._stop_prompt()
            if hold.can_call_back:
                hold.offer_open = True
                return [*stop, self._say(self.prompts.queue_limit + self.prompts.callback_offer, interruptible=False)]
            return [*stop, self._hold_goodbye(self.prompts.queue_limit_goodbye, "queue_limit")]
        if hold.limit_at is not None:
            if not self._playing and now - hold.limit_at >= timing.no_input_s:
                return [self._hold_goodbye(self.prompts.queue_no_answer_goodbye, "queue_limit")]
            return []
        if not hold.checking and not self._playing and now - hold.announced_at >= timing.queue_announce_s:
            hold.checking = True
            return [CheckQueue()]
        return []

    def _hold_key(self, key: str, now: float) -> list[Command]:
        """1 takes the callback offer; then the number (ended with #), then 1 to confirm it or 2 to key it again."""
        hold = self.hold
        if hold is None or key not in KEYPAD_KEYS:
            return []
        if hold.phase is HoldPhase.WAITING and key == "1" and hold.offer_open:
            return [*self._stop_prompt(), *self._ask_callback_number(now)]
        if hold.phase is HoldPhase.NUMBER:
            stop = self._stop_prompt()
            self._last_key = hold.keyed_at = now
            if key == "#":
                return [*stop, *self._callback_number()]
            if key.isdigit():
                self._digits += key
            if len(self._digits) >= CALLBACK_DIGITS[1]:
                return [*stop, *self._callback_number()]
            return stop
        if hold.phase is HoldPhase.CONFIRM and key == "1":
            number, hold.number, hold.phase = hold.number, "", HoldPhase.CLOSING
            return [*self._stop_prompt(), RegisterCallback(number)]
        if hold.phase is HoldPhase.CONFIRM and key == "2":
            return [*self._stop_prompt(), *self._ask_callback_number(now)]
        return []

    def _ask_callback_number(self, now: float) -> list[Command]:
        assert self.hold is not None
        self.hold.phase, self.hold.number, self.hold.keyed_at = HoldPhase.NUMBER, "", now
        # keyed digits are a secret: the recorder pauses and nothing of them is written anywhere
        self._collect = CollectDigits("callback_number", CALLBACK_DIGITS[1], "#", speech_allowed=False, secret=True)
        self._digits, self._last_key = "", now
        return [self._say(self.prompts.callback_number)]

    def _callback_number(self) -> list[Command]:
        hold = self.hold
        digits, self._digits = self._digits, ""
        if hold is None or hold.phase is not HoldPhase.NUMBER:
            return []
        if not CALLBACK_DIGITS[0] <= len(digits) <= CALLBACK_DIGITS[1]:
            return [self._say(self.prompts.callback_bad_number)]
        self._collect = None
        hold.number, hold.phase = digits, HoldPhase.CONFIRM
        return [self._say(self.prompts.callback_confirm(digits))]

    def _callback_registered(self, ok: bool, now: float) -> list[Command]:
        hold = self.hold
        if self.state is not CallState.ON_HOLD or hold is None or hold.phase is not HoldPhase.CLOSING:
            return []
        if ok:
            return [self._hold_goodbye(self.prompts.callback_done, "callback")]
        hold.phase, hold.offer_open, hold.announced_at = HoldPhase.WAITING, False, now
        return [self._say(self.prompts.callback_failed, interruptible=False)]

    def _hold_goodbye(self, text: str, detail: str) -> Say:
        assert self.hold is not None
        self.hold.phase = HoldPhase.CLOSING
        self._after_playback = HangUp(EndReason.COMPLETED, detail)
        return self._say(text, interruptible=False)

    def _back_in_queue(self, now: float) -> list[Command]:
        """The person's side dropped: an apology, then where the caller stands in the queue again."""
        if self.state is CallState.ENDED:
            return []
        stop = self._stop_prompt()
        self._paused, self._collect, self._digits, self._after_playback = False, None, "", None
        self.state = CallState.ON_HOLD
        self.hold = Hold(since=now, announced_at=now, checking=True)
        return [*stop, self._say(self.prompts.back_in_queue, interruptible=False), CheckQueue()]
