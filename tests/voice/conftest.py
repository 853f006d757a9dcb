"""A real voice gateway process next to the session's Redis and Rasa, with the offline speech models."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.stack import ManagedProcess, Stack, free_port, free_udp_port, gateway_process

AUDIO = PROJECT_ROOT / "tests" / "audio"
MANIFEST = json.loads((AUDIO / "manifest.json").read_text(encoding="utf-8"))


def wav(name: str) -> str:
    return str(AUDIO / name)


def first(kind: str, intent: str | None = None) -> str:
    return wav(next(m["file"] for m in MANIFEST if m["kind"] == kind and (intent is None or m["intent"] == intent)))


@dataclass
class VoiceGateway:
    process: ManagedProcess
    port: int
    token: str
    redis_url: str
    rasa_url: str
    sip_port: int  # SIP over UDP (and TCP) on 127.0.0.1
    console_port: int  # the consoles (/agent, /supervisor, /api) on http://127.0.0.1
    console_db_url: str  # their users and audit log (add users with voice_gateway.console.store.UserStore)

    def url(self, path: str = "/twilio", *, token: str | None = None) -> str:
        token = self.token if token is None else token
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?token={token}" if token else "")


@pytest.fixture(scope="session")
def speech_models_installed() -> None:
    from voice_gateway import speech_models

    speech_models.install("whisper-base")


@pytest.fixture(scope="session")
def gateway(
    stack: Stack, speech_models_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VoiceGateway]:
    port, token, sip_port, console_port = free_port(), "test-token", free_udp_port(), free_port()
    console_db_url = f"sqlite:///{tmp_path_factory.mktemp('consoles') / 'console.sqlite3'}"
    os.environ["HOTLINE_NO_INPUT_S"] = "3"
    process = gateway_process(
        Settings.from_env(), stack.redis_url, stack.rasa_url, port, token, console_port=console_port
    )
    process.env = {
        **(process.env or {}),
        "HOTLINE_ASR": "whisper",
        "HOTLINE_SIP_PORT": str(sip_port),
        "HOTLINE_CONSOLE_DB_URL": console_db_url,
        "HOTLINE_GATEWAY_ID": "gw-session",
    }
    process.start()
    yield VoiceGateway(process, port, token, stack.redis_url, stack.rasa_url, sip_port, console_port, console_db_url)
    process.stop()
    os.environ.pop("HOTLINE_NO_INPUT_S", None)


def log_tail(gateway: VoiceGateway) -> str:
    return gateway.process.tail(40)


__all__ = ["AUDIO", "MANIFEST", "Path", "VoiceGateway", "first", "log_tail", "wav"]
