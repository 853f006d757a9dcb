"""Rasa NLU component: a leading greeting or filler (喂你好, 嗯那个, 请问) never outweighs the request after it.

Put it right after the tokenizer. It drops the tokens that lie wholly inside the leading greetings, fillers and
punctuation (components.caller_text.leading_filler_end) when something substantive follows, for training examples
and callers alike, so the featurizers and the intent classifier see only the request. The message's text is
untouched: entity extraction and the reported text keep their offsets. A pure greeting keeps all its tokens.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import TOKENS_NAMES
from rasa.nlu.tokenizers.tokenizer import Tokenizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.caller_text import leading_filler_end

TOKENS = TOKENS_NAMES[TEXT]


def strip_leading(message: Message) -> None:
    """Drop the message's leading greeting/filler tokens, if a request follows them."""
    text = message.get(TEXT)
    tokens = message.get(TOKENS)
    if not text or not tokens:
        return
    end = leading_filler_end(text)
    if end == 0:
        return
    kept = [token for token in tokens if token.end > end]
    if kept:
        message.set(TOKENS, kept)


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class LeadingFillerStripper(GraphComponent):
    """Leading greetings and fillers out of the tokens the featurizers count."""

    @classmethod
    def required_components(cls) -> list[type]:
        return [Tokenizer]

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> LeadingFillerStripper:
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self.process(training_data.training_examples)
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            strip_leading(message)
        return messages
