"""Rasa NLU component: text with no Chinese in it (English, emoji, random letters) is not understood.

A linear classifier scores any input, and letters or digit fragments can land confidently on some intent. A
Mandarin caller's request always has Chinese characters; bare numbers (an ID or phone number the recogniser
wrote in digits) are left to the classifier. Put this after the intent classifier, before FallbackClassifier.
"""

from __future__ import annotations

import re
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

_CJK = re.compile(r"[\u3400-\u9fff]")
_NUMBER_ONLY = re.compile(r"[\d\s,，、.。xX*#-]+")
NOT_UNDERSTOOD = "nlu_fallback"


def understandable(text: str) -> bool:
    """Chinese in it, or nothing but a number."""
    return bool(_CJK.search(text) or _NUMBER_ONLY.fullmatch(text.strip()))


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class LanguageGuard(GraphComponent):
    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> LanguageGuard:
        return cls()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if text is None or understandable(text):
                continue
            message.set(INTENT, {INTENT_NAME_KEY: NOT_UNDERSTOOD, PREDICTED_CONFIDENCE_KEY: 1.0}, add_to_output=True)
        return messages
