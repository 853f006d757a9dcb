"""`hotline users add/list/disable` through voice_gateway.cli.main, then signing in with what it made."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.console.conftest import sign_in
from tests.console.fakes import FakeBackend
from voice_gateway import cli
from voice_gateway.config import Settings
from voice_gateway.console import make_app


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOTLINE_VAR", str(tmp_path / "var"))
    monkeypatch.delenv("HOTLINE_CONSOLE_DB_URL", raising=False)
    return tmp_path / "var"


def run(monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(list(argv))


def test_users_add_list_disable(var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    add = ("users", "add", "王芳", "--role", "agent", "--password-stdin", "--skills", "card,general")
    assert run(monkeypatch, *add, stdin="a-long-password\n") == 0
    assert run(monkeypatch, "users", "add", "boss", "--role", "admin", "--password-stdin", stdin="boss-password\n") == 0
    assert (var_dir / "console.sqlite3").exists()
    capsys.readouterr()
    assert run(monkeypatch, "users", "list") == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[:4] for r in rows] == [["boss", "admin", "", "active"], ["王芳", "agent", "card,general", "active"]]

    app = make_app(Settings.from_env(), FakeBackend())
    with TestClient(app, follow_redirects=False) as client:
        assert sign_in(client, "王芳", "a-long-password").json()["user"]["skills"] == ["card", "general"]
        assert run(monkeypatch, "users", "disable", "王芳") == 0
        assert client.get("/api/me").status_code == 401
        assert sign_in(client, "王芳", "a-long-password").status_code == 401
        audit = [(e.who, e.action, e.detail) for e in app.state.audit.entries()]
    assert ("cli", "user_disable", "王芳") in audit and ("cli", "user_add", "王芳 agent card,general") in audit
    capsys.readouterr()
    run(monkeypatch, "users", "list")
    assert "王芳\tagent\tcard,general\tdisabled" in capsys.readouterr().out


def test_users_add_refuses_what_it_cannot_keep(var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    base = ("users", "add", "li", "--role", "agent", "--password-stdin")
    assert run(monkeypatch, *base, "--skills", "card,cooking", stdin="a-long-password\n") == 1
    assert "unknown skill 'cooking'" in capsys.readouterr().err
    assert run(monkeypatch, *base, stdin="short\n") == 1
    assert run(monkeypatch, "users", "add", "li", "--role", "agent", stdin="a-long-password\n") == 2
    assert run(monkeypatch, *base, stdin="a-long-password\n") == 0
    assert run(monkeypatch, *base, stdin="another-password\n") == 1
    assert "exists already" in capsys.readouterr().err
    assert run(monkeypatch, "users", "disable", "nobody") == 1
    with pytest.raises(SystemExit):
        run(monkeypatch, "users", "add", "x", "--role", "root", "--password-stdin", stdin="a-long-password\n")
