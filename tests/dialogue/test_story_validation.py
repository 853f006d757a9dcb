"""A trainer's story edit checked by the real `rasa data validate` before it is written (story_files.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.rasa_env import RasaEnv
from voice_gateway.training.story_files import StoryFiles, ValidationFailed, rasa_validator

STORY = "stories/conversations.yml"


def test_rasa_validation_keeps_a_broken_story_out_and_lets_a_valid_edit_in(rasa_env: RasaEnv, tmp_path: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "nlu_data", tmp_path / "nlu_data")
    dialogue = PROJECT_ROOT / "dialogue"
    stories = StoryFiles(tmp_path / "nlu_data", dialogue / "domain.yml", dialogue / "config.yml")
    validate = rasa_validator(rasa_env.settings)
    target = tmp_path / "nlu_data" / STORY
    original = target.read_bytes()

    broken = stories.read(STORY).replace("action: utter_greet", "action: utter_no_such_answer", 1)
    with pytest.raises(ValidationFailed) as failed:
        stories.save(STORY, broken, validate)
    assert "utter_no_such_answer" in failed.value.output, failed.value.output
    assert target.read_bytes() == original

    edited = stories.read(STORY).replace("stories:\n", "stories:\n  # 培训师：先问候再办事\n", 1)
    assert edited != stories.read(STORY)
    assert stories.save(STORY, edited, validate) == target
    assert target.read_text(encoding="utf-8") == edited
