"""Recognition hints from the trainers' data: the domain's words for Whisper's prompt.

Three sources, taken in turn: the trainers' jieba dictionary (dialogue/dictionary/hotline.txt, the words weighted
`MIN_WEIGHT` or more: service names), each service intent's most telling word in its examples (a character 2-4
gram frequent in that intent's examples, rare in the others', and standing as a word), and the city names the entity
extractor knows (hotline_domain/places.py). `prompt(words)` makes Whisper's initial prompt of them, within its
budget.

    .venv/bin/python -m voice_gateway.training.vocabulary      # print the prompt the data gives now
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from hotline_domain.places import CITIES
from voice_gateway.training.nlu_files import NluFiles, normalise

MIN_WEIGHT = 80
PER_INTENT = 2
CITIES_KEPT = 4
PROMPT_CHARS = 150  # Whisper keeps at most 223 prompt tokens; a Chinese character is one or two
OPENING = "以下是打给12333热线的普通话来电，说到"
BOUNDARY_SHARE = 0.6
CONTROL_FILE = "control"  # the conversational intents' file: no service words there
_COMMON = set("我你他她它的了吗呢啊吧是在有要想能会去说这那个么什怎一下就都还没不给和跟里到发岁自己多少")


def dictionary_words(path: Path) -> list[str]:
    """The dictionary's words with weight >= MIN_WEIGHT, as listed."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) >= MIN_WEIGHT:
            words.append(parts[0])
    return words


def _grams(text: str, sizes: tuple[int, ...] = (2, 3, 4)) -> set[str]:
    text = normalise(text)
    return {text[i : i + n] for n in sizes for i in range(len(text) - n + 1)}


def _whole(gram: str, counts: Counter[str], share: float = BOUNDARY_SHARE) -> bool:
    """A gram that stands as a word: no single character before or after it comes with most of its uses
    (资格认 is always 资格认证; 挂失 is followed by many things)."""
    uses = counts[gram]
    grown = [n for g, n in counts.items() if len(g) == len(gram) + 1 and (g[1:] == gram or g[:-1] == gram)]
    return not grown or max(grown) < share * uses


def intent_words(nlu: NluFiles, per_intent: int = PER_INTENT) -> list[str]:
    """Each service intent's `per_intent` most telling 2-4 character words (in the domain's intent order)."""
    by_intent: dict[str, Counter[str]] = {}
    for summary in nlu.intents():
        if summary.files and all(f.stem != CONTROL_FILE for f in summary.files):
            by_intent[summary.name] = Counter(g for e in nlu.examples(summary.name) for g in _grams(e, (2, 3, 4, 5)))
    overall: Counter[str] = Counter()
    for counts in by_intent.values():
        overall.update(counts)
    chosen: list[str] = []
    for counts in by_intent.values():

        def telling(gram: str, counts: Counter[str] = counts) -> float:
            return counts[gram] / (1 + overall[gram] - counts[gram]) + len(gram) * 0.01

        ranked = sorted(
            (
                g
                for g, n in counts.items()
                if 2 <= len(g) <= 4
                and n >= 3
                and not (set(g) & _COMMON)
                and not re.search(r"\d", g)
                and _whole(g, counts)
            ),
            key=telling,
            reverse=True,
        )
        picked = 0
        for gram in ranked:
            if picked == per_intent:
                break
            if not any(gram in c or c in gram for c in chosen):
                chosen.append(gram)
                picked += 1
    return chosen


def domain_words(root: Path) -> list[str]:
    """The three sources taken in turn (a service name, an intent's word, a city, ...), each word once and none
    inside another, so that a prompt cut at its budget names some of each."""
    nlu = NluFiles(root / "nlu_data", root / "dialogue" / "domain.yml")
    sources = [
        dictionary_words(root / "dialogue" / "dictionary" / "hotline.txt"),
        intent_words(nlu, per_intent=1),
        list(CITIES[:CITIES_KEPT]),
    ]
    words: list[str] = []
    for turn in range(max(len(s) for s in sources)):
        for source in sources:
            if turn < len(source) and not any(source[turn] in w or w in source[turn] for w in words):
                words.append(source[turn])
    return words


def prompt(words: list[str], budget: int = PROMPT_CHARS) -> str:
    """Whisper's initial prompt naming as many of `words` as fit in `budget` characters."""
    text = OPENING
    for word in words:
        if len(text) + len(word) + 2 > budget:
            break
        text += word + "、"
    return text.rstrip("、") + "。"


if __name__ == "__main__":
    from voice_gateway.config import PROJECT_ROOT

    print(prompt(domain_words(PROJECT_ROOT)))
