"""Turn-taking, driven with plain calls and virtual time."""

from hotline_domain.contract import BotTurn, Handoff, HandoffReason
from voice_gateway.flow import (
    AskDialogue,
    BotResumed,
    CallerHungUp,
    CallFlow,
    CallStarted,
    CallState,
    DialogueAnswered,
    EndReason,
    EngineFailed,
    HandOver,
    HangUp,
    KeyPressed,
    Part,
    PauseSpeaking,
    PersonTookOver,
    PlaybackFailed,
    PlaybackFinished,
    Prompts,
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


def answered(*texts: str, now: float = 1.0, **payloads) -> DialogueAnswered:  # type: ignore[no-untyped-def]
    messages = [{"text": t} for t in texts] + [{"custom": {k: v}} for k, v in payloads.items()]
    return DialogueAnswered(BotTurn.from_messages(messages), now)


def greeted() -> CallFlow:
    flow = CallFlow()
    assert flow.handle(CallStarted(0.0)) == [AskDialogue("/greet")]
    [say] = flow.handle(answered("您好，请问有什么可以帮您？"))
    flow.handle(PlaybackFinished(say.utterance, 3.0))
    assert flow.state is CallState.LISTENING
    return flow


def test_a_turn_goes_listen_think_speak_listen() -> None:
    flow = greeted()
    assert flow.handle(SpeechStarted(4.0)) == []
    assert flow.handle(UtteranceRecognised("新社保卡怎么激活", 0.9, 5.0)) == [AskDialogue("新社保卡怎么激活")]
    assert flow.state is CallState.THINKING
    commands = flow.handle(answered("分两步激活。", "还有其他问题吗？", now=5.1))
    assert [c.text for c in commands] == ["分两步激活。", "还有其他问题吗？"]
    assert flow.state is CallState.SPEAKING
    assert flow.handle(PlaybackFinished(commands[0].utterance, 7.0)) == []
    assert flow.state is CallState.SPEAKING  # the second sentence is still playing
    flow.handle(PlaybackFinished(commands[1].utterance, 8.0))
    assert flow.state is CallState.LISTENING


def test_barge_in_stops_the_agent_and_the_caller_is_heard() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("失业金怎么领", 0.9, 4.0))
    flow.handle(answered("很长的一段回答。"))
    assert flow.handle(SpeechStarted(5.0)) == [StopSpeaking()]
    assert flow.state is CallState.INTERRUPTED
    assert flow.handle(UtteranceRecognised("转人工", 0.9, 6.0)) == [AskDialogue("转人工")]


def test_backchannels_and_noise_do_not_take_the_turn() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("失业金怎么领", 0.9, 4.0))
    flow.handle(answered("很长的一段回答。"))
    for word in ("嗯", "对", "好的", "啊", ""):
        assert flow.handle(UtteranceRecognised(word, 0.9, 5.0)) == []
    assert flow.state is CallState.SPEAKING


def test_speech_not_made_out_is_asked_again_once() -> None:
    flow = greeted()
    [say] = flow.handle(UtteranceRecognised("", 0.0, 5.0, unclear=True))
    assert say.text == Prompts().not_heard and flow.state is CallState.SPEAKING
    flow.handle(PlaybackFinished(say.utterance, 7.0))
    assert flow.handle(UtteranceRecognised("", 0.0, 9.0, unclear=True)) == []  # once: then the no-input path
    assert flow.state is CallState.LISTENING
    assert flow.handle(UtteranceRecognised("失业金怎么领", 0.9, 10.0)) == [AskDialogue("失业金怎么领")]
    flow.handle(answered("请问您还有其他问题吗？", now=10.5))
    assert flow.handle(UtteranceRecognised("", 0.0, 11.0, unclear=True)) == []  # over the agent: not asked
    assert flow.state is CallState.SPEAKING


def test_after_a_new_turn_unclear_speech_is_asked_again_once_more() -> None:
    flow = greeted()
    [say] = flow.handle(UtteranceRecognised("", 0.0, 5.0, unclear=True))
    flow.handle(PlaybackFinished(say.utterance, 7.0))
    flow.handle(UtteranceRecognised("失业金怎么领", 0.9, 8.0))
    [answer] = flow.handle(answered("失业金在网上申领。", now=8.5))
    flow.handle(PlaybackFinished(answer.utterance, 10.0))
    [again] = flow.handle(UtteranceRecognised("", 0.0, 12.0, unclear=True))
    assert again.text == Prompts().not_heard


def test_noise_is_not_asked_about() -> None:
    flow = greeted()
    assert flow.handle(UtteranceRecognised("", 0.0, 5.0)) == []  # nothing was said (Silero heard no speech)
    assert flow.state is CallState.LISTENING


def test_a_notice_that_must_be_heard_is_not_interrupted() -> None:
    flow = CallFlow(recording_notice=True)
    [notice, ask] = flow.handle(CallStarted(0.0))
    assert isinstance(notice, Say) and not notice.interruptible and ask == AskDialogue("/greet")
    assert flow.handle(SpeechStarted(1.0)) == []
    assert flow.handle(UtteranceRecognised("我要挂失", 0.9, 1.5)) == []
    assert flow.state is CallState.SPEAKING


def test_keypad_password_is_collected_and_sent_as_a_secret() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("挂失社保卡", 0.9, 4.0))
    collect = {"slot": "service_password", "max_digits": 6, "terminator": "#", "secret": True}
    [say] = flow.handle(answered("请输入六位服务密码。", collect_digits=collect))
    flow.handle(PlaybackFinished(say.utterance, 6.0))
    assert flow.state is CallState.COLLECTING_DIGITS
    for key in "13579":
        assert flow.handle(KeyPressed(key, 7.0)) == []
    assert flow.handle(KeyPressed("0", 7.5)) == [SendKeys("135790", secret=True)]  # six digits: done


def test_id_number_with_star_for_x_and_hash_to_finish() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("查缴费", 0.9, 4.0))
    collect = {"slot": "id_number", "max_digits": 18, "terminator": "#", "star_means": "X"}
    flow.handle(answered("请输入身份证号。", collect_digits=collect))
    commands = [flow.handle(KeyPressed(key, 5.0)) for key in "11010519491231002*"]  # typed over the prompt
    assert commands[0] == [StopSpeaking()]
    assert flow.handle(KeyPressed("#", 6.0)) == []  # 18 keys already submitted it
    assert commands[-1] == [SendKeys("11010519491231002X", secret=False)]


def test_the_hash_after_a_full_id_number_leaves_the_password_a_secret() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("查缴费", 0.9, 4.0))
    flow.handle(answered("请输入身份证号。", collect_digits={"slot": "id_number", "max_digits": 18}))
    sent = [flow.handle(KeyPressed(key, 5.0)) for key in "110105196805121230"][-1]
    assert sent == [SendKeys("110105196805121230", secret=False)]  # 18 keys: sent before the caller's #
    collect = {"slot": "service_password", "max_digits": 6, "terminator": "#", "secret": True}
    flow.handle(answered("请输入六位服务密码。", collect_digits=collect, now=5.1))
    assert flow.handle(KeyPressed("#", 5.2)) == []  # the # arrives over the password prompt: nothing happens
    assert flow.state is CallState.SPEAKING and flow.expects_digits
    sent = [flow.handle(KeyPressed(key, 6.0)) for key in "135790"][-1]
    assert sent[-1] == SendKeys("135790", secret=True)


def test_digits_are_submitted_after_the_inter_digit_timeout() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("查缴费", 0.9, 4.0))
    [say] = flow.handle(answered("请输入身份证号。", collect_digits={"slot": "id_number", "max_digits": 18}))
    flow.handle(PlaybackFinished(say.utterance, 5.0))
    flow.handle(KeyPressed("1", 6.0))
    assert flow.handle(Tick(8.0)) == []
    assert flow.handle(Tick(11.5)) == [SendKeys("1", secret=False)]


def test_zero_outside_digit_collection_asks_for_a_person() -> None:
    flow = greeted()
    assert flow.handle(KeyPressed("0", 4.0)) == [SendKeys("0", secret=False)]


def test_no_input_reprompts_twice_then_hands_over() -> None:
    flow = greeted()  # listening since t=3
    reprompts = []
    now = 3.0
    for _ in range(3):
        now += 8.5
        commands = flow.handle(Tick(now))
        reprompts.append(commands)
        for c in commands:
            if isinstance(c, Say):
                flow.handle(PlaybackFinished(c.utterance, now + 1))
                now += 1
    assert [len(r) for r in reprompts[:2]] == [1, 1] and "您还在吗" in reprompts[0][0].text
    assert isinstance(reprompts[2][-1], HandOver) and reprompts[2][-1].handoff == Handoff(HandoffReason.NO_INPUT)
    assert flow.state is CallState.ON_HOLD


def test_no_input_can_end_the_call_instead() -> None:
    flow = greeted()
    flow.hand_over_on_no_input = False
    flow.timing.no_input_reprompts = 0
    [say] = flow.handle(Tick(12.0))
    assert flow.handle(PlaybackFinished(say.utterance, 14.0)) == [HangUp(EndReason.NO_INPUT)]
    assert flow.state is CallState.ENDED


def test_handoff_puts_the_call_on_hold_and_the_bot_stops() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("转人工", 0.9, 4.0))
    commands = flow.handle(
        answered("正在为您转接人工客服。", handoff=Handoff(HandoffReason.CALLER_REQUEST).to_payload()["handoff"])
    )
    assert isinstance(commands[0], Say) and commands[1] == HandOver(Handoff(HandoffReason.CALLER_REQUEST, "general"))
    assert flow.state is CallState.ON_HOLD
    assert flow.handle(UtteranceRecognised("喂？", 0.9, 6.0)) == []
    assert flow.handle(Tick(60.0)) == []


def test_goodbye_hangs_up_after_the_last_words() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("没有了再见", 0.9, 4.0))
    [say] = flow.handle(answered("感谢您的来电，再见。", hangup={"reason": "caller_done"}))
    assert flow.handle(PlaybackFinished(say.utterance, 6.0)) == [HangUp(EndReason.COMPLETED, "caller_done")]
    assert flow.handle(UtteranceRecognised("喂", 0.9, 7.0)) == []


def test_dialogue_failure_apologises_and_hands_over() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("查养老金", 0.9, 4.0))
    [say, hand_over] = flow.handle(EngineFailed(Part.DIALOGUE, "timeout", 5.0))
    assert "抱歉" in say.text and hand_over == HandOver(Handoff(HandoffReason.DIALOGUE_UNAVAILABLE))


def test_the_call_ends_after_the_maximum_length() -> None:
    flow = greeted()
    flow.timing.max_call_s = 60
    [say] = flow.handle(Tick(61.0))
    assert flow.handle(PlaybackFinished(say.utterance, 65.0)) == [HangUp(EndReason.MAX_CALL_LENGTH)]


def test_nothing_happens_after_the_caller_hangs_up() -> None:
    flow = greeted()
    flow.handle(CallerHungUp(4.0))
    assert flow.handle(UtteranceRecognised("你好", 0.9, 5.0)) == [] and flow.state is CallState.ENDED


def test_a_caller_waiting_for_a_person_hears_how_many_are_ahead() -> None:
    prompts = CallFlow().prompts
    assert prompts.queue_position(1).startswith("您是下一位")
    assert prompts.queue_position(3) == "您前面还有两位。"  # numbers as words, 两 before a measure word
    assert prompts.queue_wait(150, 1) == "大约需要三分钟。" and prompts.queue_wait(None, 0) == prompts.queue_no_agent


def speaking() -> CallFlow:
    flow = greeted()
    flow.handle(UtteranceRecognised("失业金怎么领", 0.9, 4.0))
    flow.handle(answered("很长的一段回答。"))
    return flow


def test_the_agent_holds_its_words_at_the_first_sound_and_resumes_after_a_backchannel() -> None:
    flow = speaking()
    assert flow.handle(SpeechOnset(5.0)) == [PauseSpeaking()]
    assert flow.handle(SpeechOnset(5.1)) == []  # already holding
    assert flow.handle(UtteranceRecognised("嗯", 0.9, 5.8)) == [ResumeSpeaking()]
    assert flow.state is CallState.SPEAKING
    assert flow.handle(SpeechOnset(6.0)) == [PauseSpeaking()]
    assert flow.handle(UtteranceRecognised("", 0.0, 6.5)) == [ResumeSpeaking()]  # a cough


def test_a_real_interruption_after_the_hold_stops_the_agent() -> None:
    flow = speaking()
    assert flow.handle(SpeechOnset(5.0)) == [PauseSpeaking()]
    assert flow.handle(SpeechStarted(5.5)) == [StopSpeaking()]
    assert flow.state is CallState.INTERRUPTED
    assert flow.handle(UtteranceRecognised("我要转人工", 0.9, 6.0)) == [AskDialogue("我要转人工")]


def test_a_short_real_request_during_the_hold_takes_the_turn() -> None:
    flow = speaking()
    flow.handle(SpeechOnset(5.0))
    assert flow.handle(UtteranceRecognised("不对", 0.9, 5.6)) == [StopSpeaking(), AskDialogue("不对")]


def test_a_notice_is_not_held_for_a_sound() -> None:
    flow = CallFlow(recording_notice=True)
    flow.handle(CallStarted(0.0))
    assert flow.handle(SpeechOnset(1.0)) == []


def test_digits_are_expected_while_the_dialogue_collects_them() -> None:
    flow = greeted()
    assert not flow.expects_digits
    flow.handle(UtteranceRecognised("我要挂失", 0.9, 4.0))
    flow.handle(
        answered(
            "请说出或按键输入身份证号。", collect_digits={"slot": "id_number", "max_digits": 18, "star_means": "X"}
        )
    )
    assert flow.expects_digits


def test_more_of_the_turn_heard_while_thinking_is_asked_again_as_one() -> None:
    flow = greeted()
    assert flow.handle(UtteranceRecognised("我想问一下", 0.9, 4.0)) == [AskDialogue("我想问一下")]
    flow.handle(SpeechOnset(4.2))  # the caller goes on after a pause
    assert flow.handle(UtteranceRecognised("养老金什么时候发", 0.9, 5.0)) == []
    again = flow.handle(answered("抱歉，我没有听明白。", now=5.1))
    assert again == [AskDialogue("我想问一下，养老金什么时候发", replaces_last=True)]
    assert flow.state is CallState.THINKING
    [say] = flow.handle(answered("每月十五号左右发放。", now=5.3))
    assert say.text == "每月十五号左右发放。"


def test_the_rest_of_the_turn_spoken_over_the_first_answer_replaces_it() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("我的社保卡", 0.9, 4.0))
    flow.handle(answered("请问您要办理什么社保卡业务？", now=4.5))
    assert flow.handle(SpeechOnset(4.9)) == [PauseSpeaking()]  # still talking when the answer began
    commands = flow.handle(UtteranceRecognised("丢了要挂失", 0.9, 6.0))
    assert commands == [StopSpeaking(), AskDialogue("我的社保卡，丢了要挂失", replaces_last=True)]


def test_a_later_interruption_is_a_new_turn() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("失业金怎么领", 0.9, 4.0))
    flow.handle(answered("很长的一段回答。", now=4.5))
    flow.handle(SpeechOnset(7.0))  # well into the answer: the caller reacts to it
    assert flow.handle(UtteranceRecognised("我要转人工", 0.9, 8.0)) == [StopSpeaking(), AskDialogue("我要转人工")]


def test_a_failed_answer_is_apologised_for_once_and_handed_over() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("查养老金", 0.9, 4.0))
    [say] = flow.handle(answered("您的养老金已经到账。", now=5.0))
    [sorry, hand_over] = flow.handle(PlaybackFailed(say.utterance, "TtsError", 5.1))
    assert "抱歉" in sorry.text and not sorry.interruptible
    assert hand_over == HandOver(Handoff(HandoffReason.SYNTHESISER_UNAVAILABLE))
    assert flow.state is CallState.ON_HOLD
    assert flow.handle(EngineFailed(Part.STORE, "down", 5.2)) == []  # once is enough
    assert flow.handle(Tick(100.0)) == [] and flow.handle(Tick(1000.0)) == []  # no reprompt, no time limit on hold


def test_a_person_takes_over_the_bot_goes_quiet_and_resumes_when_given_the_call_back() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("查养老金", 0.9, 4.0))
    flow.handle(answered("请说出您的身份证号。", now=5.0))
    assert flow.handle(PersonTookOver(5.5)) == [StopSpeaking()]
    assert flow.state is CallState.WITH_PERSON
    assert flow.handle(UtteranceRecognised("你好", 0.9, 6.0)) == []  # the person answers now
    assert flow.handle(KeyPressed("0", 6.5)) == [] and flow.handle(Tick(60.0)) == []
    [welcome] = flow.handle(BotResumed(61.0))
    assert welcome.text == Prompts().welcome_back and flow.state is CallState.SPEAKING
    flow.handle(PlaybackFinished(welcome.utterance, 63.0))
    assert flow.handle(UtteranceRecognised("我还想问失业金", 0.9, 65.0)) == [AskDialogue("我还想问失业金")]


def test_a_closing_gateway_says_goodbye_then_hangs_up() -> None:
    flow = greeted()
    flow.handle(UtteranceRecognised("查养老金", 0.9, 4.0))
    flow.handle(answered("请说出您的身份证号。", now=5.0))
    stop, goodbye = flow.handle(ServiceClosing(6.0))
    assert stop == StopSpeaking() and goodbye.text == Prompts().closing and not goodbye.interruptible
    assert flow.handle(UtteranceRecognised("喂", 0.9, 7.0)) == []  # the goodbye is heard to the end
    assert flow.handle(PlaybackFinished(goodbye.utterance, 12.0)) == [HangUp(EndReason.GATEWAY_STOPPING)]
