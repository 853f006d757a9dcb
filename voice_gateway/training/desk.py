"""The trainer's desk: what the /trainer page does, in one place the API (console/training_api.py) calls.

It joins the inbox (inbox.py), the trainers' YAML (nlu_files.py, story_files.py; every accepted change a git
commit with the trainer as author), retraining (jobs.py), evaluation (evaluation.py) and model versions
(versions.py), and asks the stack to put a model into service (dialogue_switch.py). The calls block (files,
git, the database, Redis): the routes run them in a thread.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_sync
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from voice_gateway import dialogue_switch, redis_link
from voice_gateway.config import Settings
from voice_gateway.rasa_env import RasaEnvError
from voice_gateway.training import evaluation, nlu_files, story_files
from voice_gateway.training.inbox import InboxFilter, InboxItem, InboxStore
from voice_gateway.training.jobs import RetrainJob, read_job
from voice_gateway.training.snippets import heard_span, snippet_wav
from voice_gateway.training.versions import ModelVersions, PromotionRefused, VersionError

log = logging.getLogger("hotline.training")

TEST_SET = "tests/data/nlu_dev.yml"  # the fixed set every candidate is judged on (HOTLINE_TRAINER_TEST_SET)
CASES_DIR = "asr_cases"  # under var/: recognition errors kept as audio test cases, encrypted
CASE_AUDIO = ".wav.enc"


def open_case(folder: Path, name: str, key: bytes) -> bytes | None:
    """A kept case's snippet (a WAV), or None when it has none; InvalidTag for a wrong key or altered file."""
    path = folder / f"{name}{CASE_AUDIO}"
    if not path.is_file():
        return None
    sealed = path.read_bytes()
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], name.encode())


class Refused(Exception):
    """What the trainer asked for was not done: `status` for HTTP, `message` for the page, `output` if any."""

    def __init__(self, status: int, message: str, output: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.output = status, message, output


@dataclass(frozen=True)
class Annotation:
    text: str
    intent: str
    entities: tuple[nlu_files.Entity, ...] = ()
    recognition_error: bool = False

    @staticmethod
    def from_json(body: dict[str, Any]) -> Annotation:
        try:
            entities = tuple(
                nlu_files.Entity(int(e["start"]), int(e["end"]), str(e["entity"]), e.get("value"))
                for e in body.get("entities") or []
            )
            return Annotation(
                str(body["text"]).strip(), str(body["intent"]), entities, bool(body.get("recognition_error"))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused(400, "标注内容不完整：需要 text、intent，实体需要 start、end、entity") from exc


class TrainingDesk:
    def __init__(self, settings: Settings, engine: Engine, recording_key: bytes | None = None) -> None:
        self.settings = settings
        self.inbox = InboxStore(engine)
        root = settings.root
        self.nlu = nlu_files.NluFiles(root / "nlu_data", settings.dialogue_dir / "domain.yml")
        self.stories = story_files.StoryFiles(
            root / "nlu_data", settings.dialogue_dir / "domain.yml", settings.dialogue_dir / "config.yml"
        )
        self.redis = redis_link.connect_sync(settings.gateway_redis_url, settings.redis_sentinels, socket_timeout=5)
        self.recording_key = recording_key
        self.test_set_path = root / TEST_SET

    def versions(self) -> ModelVersions:
        return ModelVersions.from_settings(self.settings)  # the data's fingerprint changes with each annotation

    # --- the inbox ---
    def items(self, f: InboxFilter) -> dict[str, Any]:
        found = self.inbox.items(f)
        domains = self._domains()
        rows = [self._row(item, domains) for item in found]
        return {"items": rows, "counts": self.inbox.counts(f), "total": len(rows)}

    def _row(self, item: InboxItem, domains: dict[str, str]) -> dict[str, Any]:
        return {
            **item.as_json(),
            "domain": domains.get(item.intent or ""),
            "has_audio": self._recording(item) is not None,
        }

    def _domains(self) -> dict[str, str]:
        return {i.name: (i.files[0].stem if i.files else "") for i in self.nlu.intents()}

    def domain_intents(self, domain: str) -> tuple[str, ...]:
        return tuple(name for name, file in self._domains().items() if file == domain)

    def detail(self, item_id: int) -> dict[str, Any]:
        item = self._item(item_id)
        row = self._row(item, self._domains())
        return {
            "item": row,
            "context": self.inbox.context(item),
            "audio_url": f"/api/inbox/{item.id}/audio" if row["has_audio"] else None,
        }

    def _item(self, item_id: int) -> InboxItem:
        item = self.inbox.item(item_id)
        if item is None:
            raise Refused(404, "没有这一条")
        return item

    def _recording(self, item: InboxItem) -> Path | None:
        if self.recording_key is None or item.channel == "chat":
            return None
        try:
            path = self.redis.hget(f"hotline:call:{item.sender}", "recording")
        except redis_sync.RedisError:
            return None
        found = Path(path.decode() if isinstance(path, bytes) else path) if path else None
        return found if found is not None and found.is_file() else None

    def audio(self, item_id: int) -> bytes:
        """The caller's words of the turn, from the call's recording (a mono WAV)."""
        item = self._item(item_id)
        recording = self._recording(item)
        if recording is None or self.recording_key is None:
            raise Refused(404, "这一条没有录音（来电未录音，或不是电话）")
        turns = [json.loads(t) for t in self.redis.lrange(f"hotline:call:{item.sender}:turns", 0, -1)]
        spoken = [r for r in self.inbox.context(item) if r["who"] == "caller"]
        span = heard_span(turns, item.text, max(0, len(spoken) - 1))
        wav = snippet_wav(recording, self.recording_key, span) if span else None
        if wav is None:
            raise Refused(404, "录音里找不到这一句")
        return wav

    def intents(self) -> dict[str, Any]:
        summaries = self.nlu.intents()
        return {
            "intents": [
                {
                    "name": s.name,
                    "domain": s.files[0].stem if s.files else "",
                    "examples": s.examples,
                    "description": "；".join(self.nlu.examples(s.name)[:3]),
                }
                for s in summaries
            ],
            "entities": self.nlu.domain_entities(),
        }

    def annotate(self, item_id: int, annotation: Annotation, by: str) -> dict[str, Any]:
        item = self._item(item_id)
        if item.reviewed:
            raise Refused(409, "这一条已经处理过了")
        try:
            path = self.nlu.add_example(annotation.intent, annotation.text, annotation.entities)
        except nlu_files.AnnotationRefused as refused:
            raise Refused(409, refused.message) from refused
        message = f"训练例句：{annotation.text} -> {annotation.intent}（收件箱 #{item.id}）"
        sha = nlu_files.commit(self.settings.root, [path], message, by)
        case = self._keep_case(item, annotation) if annotation.recognition_error else None
        record = {
            "text": annotation.text,
            "intent": annotation.intent,
            "entities": [e.__dict__ for e in annotation.entities],
            "commit": sha,
            "recognition_error": annotation.recognition_error,
            "case": case,
        }
        self.inbox.review(item.id, "annotated", by, record)
        return {"ok": True, "commit": sha, "file": str(path.relative_to(self.settings.root / "nlu_data")), "case": case}

    def _keep_case(self, item: InboxItem, annotation: Annotation) -> str | None:
        """A recognition error kept as an ASR test case: the snippet (encrypted with the recording key) and the
        words really said, under var/asr_cases/. None when the turn has no audio."""
        try:
            wav = self.audio(item.id)
        except Refused:
            wav = None
        folder = self.settings.var_dir / CASES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = f"case-{item.id}-{secrets.token_hex(3)}"
        if wav is not None and self.recording_key is not None:
            nonce = secrets.token_bytes(12)
            sealed = nonce + AESGCM(self.recording_key).encrypt(nonce, wav, name.encode())
            (folder / f"{name}{CASE_AUDIO}").write_bytes(sealed)
        case = {
            "name": name,
            "heard": item.text,
            "said": annotation.text,
            "intent": annotation.intent,
            "audio": wav is not None,
            "at": time.time(),
        }
        (folder / f"{name}.json").write_text(json.dumps(case, ensure_ascii=False), encoding="utf-8")
        return name

    def dismiss(self, item_id: int, by: str) -> dict[str, Any]:
        self.inbox.review(self._item(item_id).id, "dismissed", by)
        return {"ok": True}

    # --- stories and rules ---
    def story_files(self) -> dict[str, Any]:
        return {"files": [{"path": p, "kind": p.split("/", 1)[0]} for p in self.stories.files()]}

    def story_file(self, rel_path: str) -> dict[str, Any]:
        try:
            return {"path": rel_path, "text": self.stories.read(rel_path)}
        except story_files.NotEditable as refused:
            raise Refused(404, refused.message) from refused

    def save_story_file(self, rel_path: str, text: str, by: str) -> dict[str, Any]:
        try:
            self.stories.path_of(rel_path)  # a path that is not one of the files: refused before anything starts
            path = self.stories.save(rel_path, text, story_files.rasa_validator(self.settings))
        except RasaEnvError as exc:
            raise Refused(503, "校验用的 Rasa 环境不可用，文件没有保存") from exc
        except story_files.NotEditable as refused:
            raise Refused(404, refused.message) from refused
        except story_files.ValidationFailed as failed:
            raise Refused(422, failed.message, failed.output) from failed
        sha = nlu_files.commit(self.settings.root, [path], f"故事与规则：修改 {rel_path}", by)
        return {"ok": True, "commit": sha}

    # --- retraining and versions ---
    def retrain(self, by: str) -> dict[str, Any]:
        job = RetrainJob(self.settings, self.redis, by, lambda model: page_report(self.evaluate(model, by)))
        try:
            job.start()
        except RuntimeError as refused:
            raise Refused(409, str(refused)) from refused
        return {"job": job.state.as_json()}

    def job(self) -> dict[str, Any]:
        return {"job": read_job(self.redis)}

    def evaluate(self, model: Path, by: str) -> evaluation.Report:
        """The candidate against the model in service on the fixed test set and every annotated inbox turn; the
        report is written next to the model and the version recorded."""
        versions = self.versions()
        in_service = versions.in_service()
        extra = [
            evaluation.Example(i.annotation["text"], i.annotation["intent"])
            for i in self.inbox.annotated()
            if i.annotation
        ]
        test_set = evaluation.load_test_set(self.test_set_path)
        report = evaluation.evaluate(self.settings, model, in_service, test_set, extra)
        report.write(self.settings.models_dir)
        versions.record_trained(model, by, nlu_files.head(self.settings.root), report)
        return report

    def models(self) -> dict[str, Any]:
        versions = self.versions()
        listed = [v.as_json() for v in versions.versions()]
        current = versions.in_service()
        return {
            "versions": listed,
            "in_service": current.name if current else None,
            "switch": dialogue_switch.switch_state(self.redis),
        }

    def promote(self, name: str, by: str, *, override: bool, reason: str, admin: bool) -> dict[str, Any]:
        if override and not admin:
            raise Refused(403, "只有管理员可以强制上线")
        versions = self.versions()
        try:
            versions.check_promotion(name, override=override, reason=reason)
        except PromotionRefused as refused:
            raise Refused(409, "不符合上线规则：" + "；".join(refused.reasons)) from refused
        except VersionError as refused:
            raise Refused(409, str(refused)) from refused
        dialogue_switch.request_switch(self.redis, name, by, action="promote", override=override, reason=reason)
        return {"ok": True, "switch": dialogue_switch.switch_state(self.redis)}

    def roll_back(self, by: str) -> dict[str, Any]:
        target = self.versions().previous()
        if target is None:
            raise Refused(409, "没有可以回滚到的模型")
        dialogue_switch.request_switch(self.redis, target.name, by, action="rollback")
        return {"ok": True, "to": target.name, "switch": dialogue_switch.switch_state(self.redis)}


def page_report(report: evaluation.Report) -> dict[str, Any]:
    """The report as the page shows it (the full JSON is written next to the model)."""

    def scores(s: evaluation.Scores | None) -> dict[str, Any] | None:
        if s is None:
            return None
        body = s.as_json()
        return {k: body[k] for k in ("n", "accuracy", "macro_f1", "per_intent")}

    comparison = report.comparison.as_json() if report.comparison else None
    extra = []
    if report.extra is not None:
        before = report.extra.before.outcomes if report.extra.before else [None] * report.extra.n
        for after, was in zip(report.extra.after.outcomes, before, strict=True):
            extra.append(
                {
                    "text": after.text,
                    "expected": after.expected,
                    "before": was and was.predicted,
                    "after": after.predicted,
                }
            )
    return {
        "candidate": report.candidate,
        "in_service": report.in_service,
        "before": scores(report.before),
        "after": scores(report.after),
        "comparison": None
        if comparison is None
        else {
            "per_intent": comparison["intents"],
            "better": comparison["better"],
            "worse": comparison["worse"],
            "fixed": [f["text"] for f in comparison["fixed"]],
            "broken": [f["text"] for f in comparison["broken"]],
        },
        "extra": extra,
        "verdict": report.verdict.as_json(),
        "confusion_svg_url": f"/api/models/{report.candidate}/confusion.svg",
    }
