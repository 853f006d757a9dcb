"""Calls over SIP/RTP into the real gateway (Whisper, Rasa, Redis): the Python SIP caller, baresip and SIPp as
callers, and bad input on the SIP port."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.request
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from tests.voice.conftest import VoiceGateway, first, log_tail
from tests.voice.sip.pcap import write_pcap
from voice_gateway.audio import rms_dbfs
from voice_gateway.call_store import CallStore
from voice_gateway.testing.sip_caller import SipCaller
from voice_gateway.testing.ws_caller import Turn, read_wav
from voice_gateway.transports.rtp import build_rtp

SCENARIO = Path(__file__).parent / "sip" / "uac_pcap.xml"
GREETING_S = 12.0  # the greeting (with the recording notice off) is over by then: callers speak after it


def sip_uri(gateway: VoiceGateway) -> str:
    return f"sip:12333@127.0.0.1:{gateway.sip_port}"


async def records_of(gateway: VoiceGateway, call_id: str) -> tuple[dict[str, str], list[dict]]:
    store = CallStore(redis.asyncio.Redis.from_url(gateway.redis_url))
    try:
        return await store.record(call_id), await store.turns(call_id)
    finally:
        await store.redis.aclose()


def answers(turns: list[dict]) -> list[dict]:
    return [t for t in turns if t.get("kind") == "answer" and t.get("after") == "speech"]


def sip_calls(gateway: VoiceGateway) -> set[str]:
    r = redis.Redis.from_url(gateway.redis_url)
    ids = (k.decode()[len("hotline:call:") :] for k in r.scan_iter("hotline:call:sip-*"))
    return {call_id for call_id in ids if ":" not in call_id}  # the records, not their :turns, :voice lists


def metric(gateway: VoiceGateway, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


# --- the Python SIP caller ---
async def test_a_sip_caller_gets_an_answer_with_the_right_intent(gateway: VoiceGateway) -> None:
    caller = SipCaller(sip_uri(gateway), from_user="13800138000")
    report = await caller.run([Turn(wav=first("intent", "retirement_age"))])
    print(report)
    assert report.greeting_s > 1 and report.turns[0].agent_audio_s > 1.0, log_tail(gateway)
    assert report.turns[0].agent_level_dbfs is not None and report.turns[0].agent_level_dbfs > -40
    assert report.turns[0].turn_gap_ms is not None and report.turns[0].turn_gap_ms < 5000
    await asyncio.sleep(0.5)  # the answer's record is written off the critical path
    record, turns = await records_of(gateway, caller.call_id)
    assert record["transport"] == "sip" and record["reason"] == "caller_hung_up"
    assert [a.get("intent") for a in answers(turns)] == ["retirement_age"], turns
    assert "13800138000" not in gateway.process.tail(400)  # the caller's number is masked in the gateway's log


async def test_keys_over_sip_info_and_pcma(gateway: VoiceGateway) -> None:
    caller = SipCaller(sip_uri(gateway), codec="PCMA", dtmf="info")
    waiting = asyncio.create_task(caller.run([Turn(keys="0"), Turn(wait_s=4)]))
    r = redis.Redis.from_url(gateway.redis_url)
    for _ in range(200):
        await asyncio.sleep(0.1)
        if r.hget(f"hotline:call:{caller.call_id}", "handoff"):
            break
    report = await waiting
    assert report.greeting_s > 1  # the greeting came through A-law
    assert json.loads(r.hget(f"hotline:call:{caller.call_id}", "handoff"))["reason"] == "keypad_zero"


# --- baresip ---
BARESIP_CONFIG = """\
poll_method epoll
sip_listen 127.0.0.1:0
net_interface 127.0.0.1
audio_player alsa,null
audio_alert alsa,null
audio_source aufile,{mic}
ausrc_srate 8000
auplay_srate 8000
module_path /usr/lib/baresip/modules
module stdio.so
module g711.so
module aufile.so
module alsa.so
module sndfile.so
module_app account.so
module_app menu.so
snd_path {folder}
"""


@dataclass
class BaresipCall:
    heard: bytes  # what baresip received and decoded (8 kHz PCM)
    output: str
    call_id: str


async def baresip_call(gateway: VoiceGateway, folder: Path, mic: bytes, keys: list[tuple[float, str]]) -> BaresipCall:
    """baresip dials the gateway with `mic` (8 kHz PCM) as its microphone; the call ends when the file does.

    `keys` are (seconds after the start, key) typed on baresip's keypad (RFC 4733 events).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with wave.open(str(folder / "mic.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(mic)
    (folder / "config").write_text(BARESIP_CONFIG.format(mic=folder / "mic.wav", folder=folder))
    (folder / "accounts").write_text("<sip:13912345678@127.0.0.1>;regint=0\n")
    before = sip_calls(gateway)
    log = open(folder / "baresip.log", "wb")  # noqa: SIM115 - the child's output, closed below
    proc = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(folder), "-e", f"/dial {sip_uri(gateway)}", stdin=subprocess.PIPE, stdout=log, stderr=log
    )
    assert proc.stdin is not None
    try:
        started = time.monotonic()
        for at, key in keys:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            proc.stdin.write(key.encode())
            await proc.stdin.drain()
        deadline = started + len(mic) / 16000 + 10
        while time.monotonic() < deadline and b"terminated" not in (folder / "baresip.log").read_bytes():
            await asyncio.sleep(0.2)
        proc.stdin.write(b"q")
        await proc.stdin.drain()
        async with asyncio.timeout(5):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
    output = (folder / "baresip.log").read_text(errors="replace")
    dumps = sorted(folder.glob("dump-*-dec.wav"))
    assert dumps, output[-2000:]
    with wave.open(str(dumps[0]), "rb") as w:
        heard = w.readframes(w.getnframes())
    new = sip_calls(gateway) - before
    assert len(new) == 1, (new, output[-2000:])
    return BaresipCall(heard, output, new.pop())


def seconds(pcm: bytes, start: float, end: float) -> bytes:
    return pcm[int(start * 16000) : int(end * 16000)]


async def test_baresip_hears_the_greeting_and_an_answer(gateway: VoiceGateway, tmp_path: Path) -> None:
    speech = read_wav(Path(first("intent", "retirement_age")), 8000)
    speech_end = GREETING_S + len(speech) / 16000
    mic = b"\x00" * int(16000 * GREETING_S) + speech + b"\x00" * 16000 * 9
    call = await baresip_call(gateway, tmp_path, mic, keys=[])
    assert "Call established" in call.output
    assert rms_dbfs(seconds(call.heard, 0.5, GREETING_S)) > -40, "no greeting heard"
    answer = seconds(call.heard, speech_end, speech_end + 9)
    assert rms_dbfs(answer) > -40, "no answer heard"
    voiced = sum(rms_dbfs(answer[i : i + 320]) > -45 for i in range(0, len(answer), 320)) * 0.02
    assert voiced > 1.0, voiced
    await asyncio.sleep(0.5)
    record, turns = await records_of(gateway, call.call_id)
    assert record["transport"] == "sip" and record["reason"] == "caller_hung_up"
    assert "retirement_age" in [a.get("intent") for a in answers(turns)], turns


async def test_a_baresip_keypad_zero_hands_the_call_to_a_person(gateway: VoiceGateway, tmp_path: Path) -> None:
    call = await baresip_call(gateway, tmp_path, b"\x00" * 16000 * 12, keys=[(4.0, "0")])
    assert "send DTMF digit: '0'" in call.output
    record, _ = await records_of(gateway, call.call_id)
    assert json.loads(record["handoff"])["reason"] == "keypad_zero", record


# --- SIPp ---
async def test_sipp_runs_concurrent_calls_with_pcap_audio(gateway: VoiceGateway, tmp_path: Path) -> None:
    calls, listen_s = 4, 12
    shutil.copy(SCENARIO, tmp_path / SCENARIO.name)
    spoken = write_pcap(Path(first("intent", "unemployment_benefit")), tmp_path / "caller.pcap", GREETING_S)
    before = sip_calls(gateway)
    lost_before = metric(gateway, "hotline_rtp_lost_packets_total")
    wrong_before = metric(gateway, "hotline_rtp_wrong_source_total")
    args = [
        "sipp", "-sf", SCENARIO.name, "-m", str(calls), "-l", str(calls), "-r", str(calls), "-rp", "1000",
        "-d", str(int((spoken + listen_s) * 1000)), "-i", "127.0.0.1", "-p", str(_free_udp_port()),
        "-mp", str(_free_udp_port()), "-timeout", "90s", "-timeout_error", "-nostdin", "-trace_stat", "-stf",
        "stats.csv", "-trace_err", "-error_file", "errors.log", f"127.0.0.1:{gateway.sip_port}",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    print(text[-1500:])
    assert proc.returncode == 0, text[-3000:] + (tmp_path / "errors.log").read_text(errors="replace")[-2000:]
    stats = _last_stats(tmp_path / "stats.csv")
    assert (int(stats["SuccessfulCall(C)"]), int(stats["FailedCall(C)"])) == (calls, 0), stats
    await asyncio.sleep(1.0)
    new = sorted(sip_calls(gateway) - before)
    assert len(new) == calls, new
    intents = []
    for call_id in new:
        record, turns = await records_of(gateway, call_id)
        assert record["reason"] == "caller_hung_up", record
        intents.append([a.get("intent") for a in answers(turns)])
    print("intents", intents)
    assert all("unemployment_benefit" in i for i in intents), intents
    lost = metric(gateway, "hotline_rtp_lost_packets_total") - lost_before
    assert lost == 0 and metric(gateway, "hotline_rtp_wrong_source_total") == wrong_before


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _last_stats(path: Path) -> dict[str, str]:
    rows = [line.split(";") for line in path.read_text().splitlines() if line.strip()]
    return dict(zip(rows[0], rows[-1], strict=False))


# --- bad input ---
class RawSip:
    """A bare UDP socket to the gateway's SIP port, for messages no real client would send."""

    def __init__(self, gateway: VoiceGateway) -> None:
        self.target = ("127.0.0.1", gateway.sip_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]

    def ask(self, message: str) -> str:
        """Send, return the first final answer's status line."""
        self.sock.sendto(message.encode(), self.target)
        while True:
            line = self.sock.recv(65535).decode(errors="replace").split("\r\n")[0]
            if not line.startswith("SIP/2.0 1"):
                return line

    def request(self, method: str, call_id: str, *, cseq: str = "", body: str = "", extra: str = "") -> str:
        head = (
            f"{method} sip:12333@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:13800138000@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:12333@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq or f'1 {method}'}\r\nMax-Forwards: 70\r\n{extra}"
        )
        if body:
            head += f"Content-Type: application/sdp\r\nContent-Length: {len(body.encode())}\r\n"
        return head + "\r\n" + body


def offer(*formats: str, address: str = "127.0.0.1") -> str:
    rtpmaps = "".join(f"a=rtpmap:{f}\r\n" for f in formats)
    payloads = " ".join(f.split()[0] for f in formats)
    head = f"v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
    return head + f"m=audio 4000 RTP/AVP {payloads}\r\n{rtpmaps}"


async def test_bad_sip_input_gets_clear_answers_and_a_call_still_works(gateway: VoiceGateway) -> None:
    raw = RawSip(gateway)
    assert raw.ask(raw.request("OPTIONS", "opt1")) == "SIP/2.0 200 OK"
    assert raw.ask(raw.request("INVITE", "bad1", cseq="one INVITE")) == "SIP/2.0 400 Malformed CSeq"
    assert (
        raw.ask(raw.request("INVITE", "bad2").replace("Call-ID: bad2\r\n", "")) == "SIP/2.0 400 Missing Call-ID header"
    )
    assert raw.ask("INVITE sip:12333@127.0.0.1 SIP/1.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1\r\n\r\n").startswith(
        "SIP/2.0 400 Malformed Request-Line"
    )
    garbage = raw.request("INVITE", "bad3", body="this is not SDP at all\r\n")
    assert raw.ask(garbage) == "SIP/2.0 400 Bad SDP: SDP must start with v=0"
    unsupported = raw.request("INVITE", "bad4", body=offer("9 G722/8000", "18 G729/8000"))
    assert raw.ask(unsupported) == "SIP/2.0 488 Not Acceptable Here (PCMU or PCMA at 8000 Hz required)"
    assert raw.ask(raw.request("BYE", "nosuchcall")) == "SIP/2.0 481 Call/Transaction Does Not Exist"
    assert raw.ask(raw.request("SUBSCRIBE", "sub1")) == "SIP/2.0 405 Method Not Allowed"
    raw.sock.sendto(b"\x00\x01\x02 not sip at all \xff", raw.target)  # dropped: nothing to answer to
    raw.sock.close()
    assert not {"sip-bad1", "sip-bad2", "sip-bad3", "sip-bad4"} & sip_calls(gateway)

    # a normal call, with an intruder sending loud RTP at its media port from another address
    wrong_before = metric(gateway, "hotline_rtp_wrong_source_total")
    caller = SipCaller(sip_uri(gateway))
    intruder = asyncio.create_task(_intrude(caller))
    report = await caller.run([Turn(wav=first("intent", "unemployment_benefit"))])
    sent = await intruder
    assert sent > 0 and metric(gateway, "hotline_rtp_wrong_source_total") - wrong_before >= sent
    await asyncio.sleep(0.5)
    _, turns = await records_of(gateway, caller.call_id)
    assert report.turns[0].agent_audio_s > 1
    assert [a.get("intent") for a in answers(turns)] == ["unemployment_benefit"], turns  # the intruder was not heard


async def _intrude(caller: SipCaller) -> int:
    """Loud tone at the gateway's RTP port for the call, from a socket that is not the caller's."""
    while caller.connection is None or caller.connection.remote_rtp is None:
        await asyncio.sleep(0.05)
    target = caller.connection.remote_rtp
    tone = (np.sin(np.arange(160) * 2 * np.pi * 440 / 8000) * 127).astype(np.int8).tobytes()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for seq in range(100):
        sock.sendto(build_rtp(0, seq, seq * 160, 0xBAD, tone), target)
        await asyncio.sleep(0.02)
    sock.close()
    return 100
