"""Character error rate as the project's benchmarks count it: texts normalised as callers' are (digits, simplified
characters), punctuation and spaces dropped, then a character-level edit distance."""

from __future__ import annotations

import re

from voice_gateway.asr import normalise


def chars(text: str) -> str:
    """Text as CER compares it: normalised, without punctuation or spaces."""
    return re.sub(r"[\W_]", "", normalise(text or ""))


def edits(reference: str, hypothesis: str) -> int:
    """Levenshtein distance between two strings, by characters."""
    row = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hypothesis, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[len(hypothesis)]


def cer(reference: str, hypothesis: str) -> float:
    ref = chars(reference)
    return edits(ref, chars(hypothesis)) / max(len(ref), 1)
