"""Recognition hints from the trainers' data: the words Whisper's prompt names."""

from __future__ import annotations

from pathlib import Path

from voice_gateway.config import PROJECT_ROOT
from voice_gateway.training.nlu_files import NluFiles
from voice_gateway.training.vocabulary import (
    OPENING,
    PROMPT_CHARS,
    dictionary_words,
    domain_words,
    intent_words,
    prompt,
)


def test_the_dictionary_gives_its_heavy_words_only(tmp_path: Path) -> None:
    dictionary = tmp_path / "words.txt"
    dictionary.write_text("社保卡 100 n\n社宝 20 n\n挂失 80 v\n\n坏行\n", encoding="utf-8")
    assert dictionary_words(dictionary) == ["社保卡", "挂失"]


def test_each_service_intent_gives_a_word_of_its_own_that_stands_as_a_word() -> None:
    nlu = NluFiles(PROJECT_ROOT / "nlu_data", PROJECT_ROOT / "dialogue" / "domain.yml")
    words = intent_words(nlu, per_intent=1)
    assert "激活" in words and "职称" in words, words  # card_activation, professional_title
    assert not any(w.endswith("认") for w in words), words  # 资格认 is not a word: it is always 资格认证
    assert len(words) == len(set(words))


def test_the_prompt_names_some_of_each_source_within_its_budget() -> None:
    words = domain_words(PROJECT_ROOT)
    assert not [(a, b) for a in words for b in words if a != b and a in b], "a word inside another wastes the budget"
    text = prompt(words)
    assert text.startswith(OPENING) and text.endswith("。") and len(text) <= PROMPT_CHARS
    assert "社保卡" in text and "北京" in text and "挂失" in text
    assert prompt(["甲" * 200]) == OPENING.rstrip("、") + "。"  # a word that does not fit is left out
