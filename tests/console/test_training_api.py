"""The trainer's API on a real desk over a copy of the trainers' data in a git work tree (no Rasa here: the loop
with retraining and promotion is tests/voice/test_trainer_loop.py): roles, annotation into YAML and git,
refusals, filters, story paths, the audit log."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from hotline_domain.dialogue_events import DialogueEvent
from tests.console.conftest import post_json, sign_in
from tests.console.fakes import FakeBackend
from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.console import make_app
from voice_gateway.console.audit import AuditLog
from voice_gateway.training.desk import TrainingDesk


def _git(root: Path, *args: str) -> str:
    identity = ["-c", "user.name=hotline", "-c", "user.email=hotline@example.invalid"]
    return subprocess.run(["git", *identity, *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name in ("dialogue/domain.yml", "dialogue/config.yml", "dialogue/dictionary", "nlu_data"):
        source, target = PROJECT_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target) if source.is_dir() else shutil.copy2(source, target)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "data")
    return root


@pytest.fixture
def trainer_client(settings: Settings, project: Path) -> Iterator[tuple[TestClient, TrainingDesk]]:
    settings = replace(settings, root=project, redis_url="redis://127.0.0.1:1/0")  # no Redis: nothing here needs it
    desks: list[TrainingDesk] = []

    def desk(engine):  # type: ignore[no-untyped-def]
        desks.append(TrainingDesk(settings, engine))
        return desks[0]

    with TestClient(make_app(settings, FakeBackend(), desk), follow_redirects=False) as client:
        yield client, desks[0]


def _turn(desk: TrainingDesk, text: str, intent: str, confidence: float, sender: str = "call-7") -> int:
    raw = {
        "event": "user",
        "sender_id": sender,
        "timestamp": 1.0e9,
        "text": text,
        "parse_data": {"intent": {"name": intent, "confidence": confidence}, "intent_ranking": []},
    }
    event = DialogueEvent.from_rasa(raw)
    assert event is not None
    (item,) = desk.inbox.add(event, "twilio")
    return item


def test_an_agent_and_a_stranger_are_kept_out(trainer_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = trainer_client
    assert client.get("/api/inbox", headers={"Accept": "application/json"}).status_code == 401
    assert sign_in(client, "agent1").status_code == 200
    assert client.get("/api/inbox").status_code == 403
    assert client.get("/trainer").status_code == 403
    assert post_json(client, "/api/models/rollback").status_code == 403


def test_a_trainer_corrects_a_turn_into_the_data_with_a_commit_of_their_own(trainer_client, project: Path) -> None:  # type: ignore[no-untyped-def]
    client, desk = trainer_client
    item = _turn(desk, "我的卡怎么弄", "nlu_fallback", 0.3)
    other = _turn(desk, "那个卡", "card_progress", 0.4, sender="call-8")
    assert sign_in(client, "trainer1").status_code == 200
    listed = client.get("/api/inbox").json()
    assert [i["id"] for i in listed["items"]] == [other, item] and listed["counts"]["nlu_fallback"] == 1
    assert [i["id"] for i in client.get("/api/inbox?min_confidence=0.35").json()["items"]] == [other]
    assert [i["id"] for i in client.get("/api/inbox?domain=card").json()["items"]] == [other]
    assert client.get("/api/inbox?since=yesterday").status_code == 400
    detail = client.get(f"/api/inbox/{item}").json()
    assert detail["audio_url"] is None and detail["context"][0]["current"] is True
    assert client.get(f"/api/inbox/{item}/audio").status_code == 404

    card = project / "nlu_data" / "nlu" / "card.yml"
    before = card.read_text()
    said = "我的社保卡丢了想补一张"
    saved = post_json(client, f"/api/inbox/{item}/annotate", {"text": said, "intent": "card_application"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["file"] == "nlu/card.yml"
    assert [line for line in card.read_text().splitlines() if line not in before.splitlines()] == [f"    - {said}"]
    assert _git(project, "log", "-1", "--format=%an %H").split() == ["trainer1", saved.json()["commit"]]
    assert client.get("/api/inbox").json()["total"] == 1  # the annotated one is reviewed

    again = post_json(client, f"/api/inbox/{item}/annotate", {"text": said, "intent": "card_application"})
    assert again.status_code == 409  # reviewed already
    conflict = post_json(client, f"/api/inbox/{other}/annotate", {"text": said + "。", "intent": "card_loss_report"})
    assert conflict.status_code == 409 and "card_application" in conflict.json()["error"]
    assert post_json(client, f"/api/inbox/{other}/annotate", {"intent": "x"}).status_code == 400
    assert card.read_text().count(said) == 1
    assert post_json(client, f"/api/inbox/{other}/dismiss").status_code == 200
    assert client.get("/api/inbox").json()["total"] == 0

    log = AuditLog(desk.inbox.engine)
    assert {e.action.value for e in log.entries(who="trainer1")} >= {"annotate", "dismiss"}


def test_story_paths_outside_the_data_and_malformed_bodies_are_refused(trainer_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = trainer_client
    assert sign_in(client, "trainer1").status_code == 200
    files = [f["path"] for f in client.get("/api/training/files").json()["files"]]
    assert "stories/conversations.yml" in files and "rules/forms.yml" in files
    assert client.get("/api/training/file?path=../dialogue/domain.yml").status_code == 404
    escape = post_json(client, "/api/training/file", {"path": "../../etc/passwd", "text": "stories: []"})
    assert escape.status_code == 404
    assert post_json(client, "/api/training/file", {"path": 3}).status_code == 400
    bad = client.post(
        "/api/inbox/1/annotate", content=b"{not json", headers={"X-CSRFToken": client.cookies["csrftoken"]}
    )
    assert bad.status_code == 400
    assert client.get("/api/inbox/999").status_code == 404
    unknown = post_json(client, "/api/models/promote", {"name": "hotline-nothing.tar.gz"})
    assert unknown.status_code == 409
