"""Rasa NLU component: sparse features of how the words sound, so homophones (社宝/社保, 挂试/挂失) meet.

Each token becomes toneless pinyin syllables (pypinyin, with its phrase dictionary for polyphones); the features
are syllable n-grams (`min_ngram`..`max_ngram`) over the utterance, optionally the syllables' initials and finals
(`initials_finals`) and accent-merged syllables (`fuzzy`: zh/z, ch/c, sh/s, l/n, -ng/-n). They sit next to the
word and character n-gram CountVectorsFeaturizers: sentence features for the whole (stripped) token sequence,
sequence features per token. Digits and letters stay as they are; punctuation counts for nothing.

Rasa does not retrain a model when only this code changes: bump `version` in config.yml when you change it.
"""

from __future__ import annotations

import itertools
import json
from functools import lru_cache
from typing import Any

import scipy.sparse
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import TOKENS_NAMES
from rasa.nlu.featurizers.sparse_featurizer.sparse_featurizer import SparseFeaturizer
from rasa.nlu.tokenizers.tokenizer import Tokenizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

VOCABULARY_FILE = "pinyin_vocabulary.json"
_FUZZY_INITIALS = {"zh": "z", "ch": "c", "sh": "s", "n": "l"}
_FUZZY_FINALS = {"ang": "an", "eng": "en", "ing": "in", "iang": "ian", "uang": "uan"}


@lru_cache(maxsize=65536)
def syllables(word: str) -> tuple[str, ...]:
    """Toneless pinyin of a word; a run of digits or letters is one item, punctuation none."""
    from pypinyin import Style, lazy_pinyin

    out = []
    for item in lazy_pinyin(word, style=Style.NORMAL, errors="default"):
        item = item.strip().lower()
        if item and any(ch.isalnum() for ch in item):
            out.append(item)
    return tuple(out)


@lru_cache(maxsize=8192)
def _split(syllable: str) -> tuple[str, str]:
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    return to_initials(syllable, strict=False), to_finals(syllable, strict=False)


def _fuzzy(syllable: str) -> str:
    initial, final = _split(syllable)
    return _FUZZY_INITIALS.get(initial, initial) + _FUZZY_FINALS.get(final, final)


def features(sylls: list[str], config: dict[str, Any]) -> list[str]:
    """The feature names of a syllable sequence under this component's config."""
    out: list[str] = []
    for n in range(int(config["min_ngram"]), int(config["max_ngram"]) + 1):
        out.extend(" ".join(sylls[i : i + n]) for i in range(len(sylls) - n + 1))
    if config["initials_finals"]:
        for s in sylls:
            if s.isalpha():
                initial, final = _split(s)
                out.extend((f"i:{initial}", f"f:{final}"))
    if config["fuzzy"]:
        fuzzy = [_fuzzy(s) if s.isalpha() else s for s in sylls]
        out.extend(f"z:{a}" for a in fuzzy)
        out.extend(f"z:{a} {b}" for a, b in itertools.pairwise(fuzzy))
    return out


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=True)
class PinyinFeaturizer(SparseFeaturizer, GraphComponent):
    """Toneless pinyin n-gram counts (see the module docstring)."""

    @classmethod
    def required_components(cls) -> list[type]:
        return [Tokenizer]

    @staticmethod
    def required_packages() -> list[str]:
        return ["pypinyin"]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            **SparseFeaturizer.get_default_config(),
            "min_ngram": 1,
            "max_ngram": 2,
            "initials_finals": False,
            "fuzzy": False,
            "version": 1,
        }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        if not 1 <= int(config["min_ngram"]) <= int(config["max_ngram"]):
            raise ValueError("PinyinFeaturizer needs 1 <= min_ngram <= max_ngram")

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        vocabulary: dict[str, int] | None = None,
    ) -> None:
        super().__init__(execution_context.node_name, config)
        self.config = config
        self._model_storage = model_storage
        self._resource = resource
        self.vocabulary = vocabulary or {}

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> PinyinFeaturizer:
        return cls(config, model_storage, resource, execution_context)

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> PinyinFeaturizer:
        try:
            with model_storage.read_from(resource) as directory:
                vocabulary = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))
        except (ValueError, FileNotFoundError):
            vocabulary = {}
        return cls(config, model_storage, resource, execution_context, vocabulary)

    def _token_syllables(self, message: Message) -> list[tuple[str, ...]]:
        return [syllables(token.text) for token in message.get(TOKENS_NAMES[TEXT]) or []]

    def train(self, training_data: TrainingData) -> Resource:
        names: set[str] = set()
        for example in training_data.training_examples:
            if example.get(TEXT):
                names.update(features([s for t in self._token_syllables(example) for s in t], self.config))
        self.vocabulary = {name: i for i, name in enumerate(sorted(names))}
        with self._model_storage.write_to(self._resource) as directory:
            (directory / VOCABULARY_FILE).write_text(json.dumps(self.vocabulary, ensure_ascii=False), "utf-8")
        return self._resource

    def _row(self, names: list[str]) -> dict[int, int]:
        counts: dict[int, int] = {}
        for name in names:
            index = self.vocabulary.get(name)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        return counts

    def _matrix(self, rows: list[dict[int, int]]) -> scipy.sparse.coo_matrix:
        data, row_ids, col_ids = [], [], []
        for r, counts in enumerate(rows):
            for c, v in sorted(counts.items()):
                row_ids.append(r)
                col_ids.append(c)
                data.append(float(v))
        return scipy.sparse.coo_matrix((data, (row_ids, col_ids)), shape=(len(rows), len(self.vocabulary)))

    def process(self, messages: list[Message]) -> list[Message]:
        if not self.vocabulary:
            return messages
        for message in messages:
            if not message.get(TEXT) or not message.get(TOKENS_NAMES[TEXT]):
                continue
            per_token = self._token_syllables(message)
            sequence = self._matrix([self._row(features(list(t), self.config)) for t in per_token])
            sentence = self._matrix([self._row(features([s for t in per_token for s in t], self.config))])
            self.add_features_to_message(sequence, sentence, TEXT, message)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self.process(training_data.training_examples)
        return training_data
