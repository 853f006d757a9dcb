"""The dialogue payloads fuzzed: BotTurn.from_messages on any JSON the REST channel might answer raises only
ContractError, and what it accepts keeps the contract (texts are strings, payloads typed, no secret slot, masked
identity) and survives its own round trip (to_payload, then from_messages again)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline_domain.contract import SECRET_SLOTS, BotTurn, ContractError
from tests.fuzz.harness import Harness, budget, corpus_json, explicit
from tests.fuzz.jsonmut import mutated_text

SEEDS = corpus_json("contract")

CONTRACT = Harness("dialogue-payloads")


def check_turn(messages: Any) -> None:
    try:
        turn = BotTurn.from_messages(messages)
    except ContractError:
        return
    assert all(isinstance(text, str) and text for text in turn.texts)
    if turn.handoff is not None:
        assert not set(turn.handoff.slots) & SECRET_SLOTS
        assert turn.handoff.identity.id_number is None or "*" in turn.handoff.identity.id_number
    again = BotTurn.from_messages(
        [{"text": text} for text in turn.texts] + [{"custom": part.to_payload()} for part in turn.parts]
    )
    assert again == turn and again.texts == turn.texts, (again, turn)


def check_json(text: str) -> None:
    try:
        messages = json.loads(text)
    except (ValueError, RecursionError):
        return  # the Rasa client's HTTP layer refuses what is not JSON
    check_turn(messages)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=budget(len(SEEDS) + 400))
@explicit(*SEEDS)
@given(st.lists(st.dictionaries(st.sampled_from(["recipient_id", "text", "custom", "image"]), JSON), max_size=3) | JSON)
@CONTRACT
def test_seeds_and_generated_json(messages: Any) -> None:
    CONTRACT.check(check_turn, messages)


@settings(max_examples=budget(1200))
@given(pick=st.integers(0, len(SEEDS) - 1), seed=st.integers(0, 2**32 - 1))
@CONTRACT
def test_mutated_answers(pick: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(16):
        CONTRACT.check(check_json, mutated_text(SEEDS[pick], rng))
