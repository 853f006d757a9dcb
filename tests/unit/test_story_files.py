"""Editing stories and rules (voice_gateway/training/story_files.py) with a fake validator, on copies of nlu_data/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.training.story_files import (
    NotEditable,
    StoryFiles,
    Validation,
    ValidationFailed,
    useful_lines,
)

STORY = "stories/conversations.yml"


class FakeValidator:
    """Records what it was shown; fails when the edited copy contains `bad`."""

    def __init__(self, bad: str = "utter_no_such_answer") -> None:
        self.bad = bad
        self.seen: list[dict[str, str]] = []

    def __call__(self, root: Path) -> Validation:
        copy = {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in root.rglob("*.yml")}
        self.seen.append(copy)
        if any(self.bad in text for text in copy.values()):
            return Validation(False, f"UserWarning: The action '{self.bad}' is used in the stories")
        return Validation(True, "")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "nlu_data", tmp_path / "nlu_data")
    for name in ("domain.yml", "config.yml"):
        shutil.copy2(PROJECT_ROOT / "dialogue" / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def stories(project: Path) -> StoryFiles:
    return StoryFiles(project / "nlu_data", project / "domain.yml", project / "config.yml")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_editable_files_are_the_stories_and_rules(stories: StoryFiles, project: Path) -> None:
    assert stories.files() == [
        "stories/conversations.yml",
        "rules/conversation.yml",
        "rules/forms.yml",
        "rules/info.yml",
        "rules/services.yml",
    ]
    assert stories.read(STORY) == (project / "nlu_data" / STORY).read_text(encoding="utf-8")


def test_a_valid_edit_is_validated_on_a_copy_then_written(stories: StoryFiles, project: Path) -> None:
    target = project / "nlu_data" / STORY
    original = target.read_text(encoding="utf-8")
    edited = original.replace("stories:\n", "stories:\n  # 一个培训师加的注释\n", 1)
    fake = FakeValidator()
    assert stories.save(STORY, edited.replace("\n", "\r\n"), fake) == target
    assert target.read_bytes() == edited.encode()  # CRLF from the page's textarea is written as LF
    [seen] = fake.seen
    assert seen[f"nlu_data/{STORY}"] == edited
    assert seen["domain.yml"] == (project / "domain.yml").read_text(encoding="utf-8")
    assert "config.yml" in seen and "nlu_data/nlu/card.yml" in seen
    assert sorted(p.name for p in target.parent.iterdir()) == ["conversations.yml"]  # no temporary file left


def test_a_failed_validation_writes_nothing_and_says_why(stories: StoryFiles, project: Path) -> None:
    before = snapshot(project)
    broken = stories.read(STORY).replace("action: utter_greet", "action: utter_no_such_answer", 1)
    with pytest.raises(ValidationFailed) as failed:
        stories.save(STORY, broken, FakeValidator())
    assert "没有保存" in failed.value.message
    assert "utter_no_such_answer" in failed.value.output
    assert snapshot(project) == before


@pytest.mark.parametrize(
    "path",
    [
        "../dialogue/domain.yml",
        "stories/../nlu/card.yml",
        "nlu/card.yml",
        "stories/new_story.yml",
        "README.md",
        "/etc/passwd",
        str(PROJECT_ROOT / "nlu_data" / STORY),
        "stories\\conversations.yml",
    ],
)
def test_only_listed_files_can_be_saved(stories: StoryFiles, project: Path, path: str) -> None:
    before, fake = snapshot(project), FakeValidator()
    with pytest.raises(NotEditable, match="不能编辑"):
        stories.save(path, "stories: []\n", fake)
    with pytest.raises(NotEditable):
        stories.read(path)
    assert fake.seen == [] and snapshot(project) == before


def test_a_symlink_out_of_the_folder_is_not_editable(stories: StoryFiles, project: Path) -> None:
    (project / "nlu_data" / "rules" / "sneaky.yml").symlink_to(project / "domain.yml")
    assert "rules/sneaky.yml" not in stories.files()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stories:\n  - story: x\n    steps: [\n", "YAML 格式不对"),
        ("stories:\n\t- story: x\n", "YAML 格式不对"),
        ('version: "3.1"\nnlu:\n  - intent: greet\n', "stories: 或 rules:"),
        ("stories: not a list\n", "stories: 或 rules:"),
        ("- just a list\n", "stories: 或 rules:"),
        ("", "stories: 或 rules:"),
    ],
)
def test_text_that_is_not_stories_or_rules_is_refused_before_validation(
    stories: StoryFiles, project: Path, text: str, message: str
) -> None:
    before, fake = snapshot(project), FakeValidator()
    with pytest.raises(ValidationFailed, match=message):
        stories.save(STORY, text, fake)
    assert fake.seen == [] and snapshot(project) == before


def test_rules_may_go_in_a_story_file(stories: StoryFiles) -> None:
    stories.save(STORY, "rules:\n  - rule: r\n    steps:\n      - intent: greet\n", FakeValidator())


def test_useful_lines_keep_what_a_trainer_can_act_on() -> None:
    raw = "\n".join(
        [
            "/env/lib/python3.10/site-packages/rasa/shared/utils/validation.py:134: DeprecationWarning: "
            "pkg_resources is deprecated as an API.",
            "  import pkg_resources",
            "/env/lib/python3.10/site-packages/pkg_resources/__init__.py:3117: DeprecationWarning: Deprecated call",
            "Implementing implicit namespace packages (as specified in PEP 420) is preferred",
            "  declare_namespace(pkg)",
            "2026-12-01 19:16:06 INFO     rasa.validator  - Validating intents...",
            "\x1b[93m/env/lib/python3.10/site-packages/rasa/shared/utils/io.py:100: UserWarning: The action "
            "'utter_x' is used in the stories, but is not a valid utterance action.",
            "  More info at https://rasa.com/docs/rasa/actions#utterance-actions",
            "\x1b[0m",
            "Processed story blocks: 100%|██████████| 2/2 [00:00<00:00, 1317.51it/s, # trackers=1]",
            "\x1b[91mProject validation completed with errors.\x1b[0m",
        ]
    )
    assert useful_lines(raw) == (
        "UserWarning: The action 'utter_x' is used in the stories, but is not a valid utterance action.\n"
        "Project validation completed with errors."
    )
    assert useful_lines("\n".join(f"line {i}" for i in range(100)), limit=3) == "line 97\nline 98\nline 99"
