"""Fixtures: the real hotline stack (Redis, action server, Rasa server) on free ports, and a caller to drive it.

Run the suite through `./hotline test`: it sets up the Rasa environment (HOTLINE_RASA_ENV) and trains the
model for the current data (HOTLINE_MODEL) before pytest starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import redis

from hotline_domain.keypad import keypad_message, put_secret_digits
from voice_gateway.config import Settings
from voice_gateway.rasa_client import BotTurn, RasaClient
from voice_gateway.rasa_env import RasaEnv
from voice_gateway.stack import Stack, free_port

SESSION_START = time.time()


def _require_rasa_env() -> None:
    if not os.environ.get("HOTLINE_RASA_ENV"):
        pytest.fail("HOTLINE_RASA_ENV is not set: run the suite with ./hotline test", pytrace=False)


@pytest.fixture(scope="session")
def rasa_env() -> RasaEnv:
    _require_rasa_env()
    return RasaEnv(Settings.from_env())


@pytest.fixture(scope="session")
def model(rasa_env: RasaEnv) -> Path:
    given = os.environ.get("HOTLINE_MODEL")
    return Path(given) if given else rasa_env.train(quiet=True)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Stack]:
    """The hotline as `hotline up` runs it, with a business database of its own."""
    tmp = tmp_path_factory.mktemp("hotline")
    os.environ["HOTLINE_VAR"] = str(tmp / "var")
    settings = replace(Settings.from_env(), redis_url=None, db_url=f"sqlite:///{tmp / 'business.sqlite3'}")
    running = Stack(settings, rasa_port=free_port(), actions_port=free_port())
    running.start(model)
    os.environ["RASA_TOKEN"] = running.rasa_token  # gateways started by tests use Rasa's HTTP API with it
    yield running
    running.stop()
    os.environ.pop("RASA_TOKEN", None)


@dataclass
class Caller:
    """A caller in text: says things, keys digits (secret ones by reference, as the gateway does)."""

    client: RasaClient
    sender: str
    redis_url: str
    turns: list[BotTurn] = field(default_factory=list)

    async def say(self, text: str) -> BotTurn:
        turn = await self.client.send(self.sender, text)
        self.turns.append(turn)
        return turn

    async def keys(self, digits: str) -> BotTurn:
        asked = self.turns[-1].collect if self.turns else None
        if asked is not None and asked.secret:
            ref = put_secret_digits(redis.Redis.from_url(self.redis_url), digits)
            return await self.say(keypad_message(ref=ref))
        return await self.say(keypad_message(digits))


@pytest.fixture
async def caller(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Caller]:
    async with RasaClient(stack.rasa_url, timeout=30, token=stack.rasa_token) as client:
        yield Caller(client, f"test-{request.node.name}"[:80], stack.redis_url)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what this run measured about understanding (reports/ holds the details)."""
    import json

    from voice_gateway.config import PROJECT_ROOT

    reports = PROJECT_ROOT / "reports"
    lines = []
    cv = reports / "nlu-cross-validation" / "intent_report.json"
    if cv.exists() and cv.stat().st_mtime >= SESSION_START:
        data = json.loads(cv.read_text())
        macro_f1 = data["macro avg"]["f1-score"]
        lines.append(f"NLU 3-fold cross-validation: accuracy {data['accuracy']:.4f}, macro F1 {macro_f1:.4f}")
    holdout = reports / "nlu-holdout.json"
    if holdout.exists() and holdout.stat().st_mtime >= SESSION_START:
        data = json.loads(holdout.read_text())
        lines.append(f"held-out callers: intent accuracy {data['accuracy']:.4f} ({len(data['errors'])} errors)")
    if lines:
        terminalreporter.write_sep("-", "understanding, as measured by this run")
        for line in lines:
            terminalreporter.write_line(line)
