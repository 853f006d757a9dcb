"""Fixtures: the real console app (Starlette TestClient) on a real SQLite file, with a user of each role."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.console.fakes import FakeBackend, FakeCall
from voice_gateway.config import Settings
from voice_gateway.console import make_app
from voice_gateway.console.store import UserStore, open_database

PASSWORD = "正确的密码-12333"
USERS = {  # name: (role, skills)
    "agent1": ("agent", "card,general"),
    "agent2": ("agent", "employment"),
    "sup1": ("supervisor", ""),
    "trainer1": ("trainer", ""),
    "admin1": ("admin", ""),
}


@pytest.fixture(scope="session")
def users_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A console database with the users above, made once (argon2 takes ~120 ms a hash) and copied per test."""
    path = tmp_path_factory.mktemp("console") / "users.sqlite3"
    engine = open_database(f"sqlite:///{path}")
    store = UserStore(engine)
    for name, (role, skills) in USERS.items():
        store.add(name, role, PASSWORD, skills)
    engine.dispose()
    return path


def console_settings(var_dir: Path, **gateway: object) -> Settings:
    base = Settings.from_env({})
    return replace(base, var_dir=var_dir, gateway=replace(base.gateway, console_port=0, **gateway))


@pytest.fixture
def settings(tmp_path: Path, users_db: Path) -> Settings:
    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(users_db, var / "console.sqlite3")
    return console_settings(var)


@pytest.fixture
def backend() -> FakeBackend:
    fake = FakeBackend()
    fake.add(FakeCall("call-queued"))
    fake.add(FakeCall("call-agent2", state="agent", agent="agent2"))
    fake.add(FakeCall("call-bot", state="bot"))
    fake.add(FakeCall("call-ended", state="ended"))
    return fake


@pytest.fixture
def client(settings: Settings, backend: FakeBackend) -> Iterator[TestClient]:
    with TestClient(make_app(settings, backend), follow_redirects=False) as test_client:
        yield test_client


def csrf(client: TestClient) -> str:
    """The CSRF cookie, fetched with a GET first if the client has none yet."""
    if "csrftoken" not in client.cookies:
        client.get("/login")
    return client.cookies["csrftoken"]


def sign_in(client: TestClient, name: str, password: str = PASSWORD):
    """Sign in through the JSON form of POST /login (the CSRF token in the header, as console.js sends it)."""
    return client.post(
        "/login",
        json={"username": name, "password": password},
        headers={"X-CSRFToken": csrf(client), "Accept": "application/json"},
    )


def post_json(client: TestClient, path: str, body: dict | None = None):
    return client.post(path, json=body or {}, headers={"X-CSRFToken": csrf(client)})
