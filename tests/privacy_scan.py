"""Looking for personal data in clear where it must not be: Redis (every key, every type, every database), files.

A clear value is found however it is written: Arabic or full-width digits, spoken digits (幺, 洞, 两, 拐, 一二三),
with spaces, dashes or commas between the groups, inside JSON with \\uXXXX escapes. Values of 11 or more digits
(ID and phone numbers) are found anywhere; shorter ones (a 6-digit password) only as a number of their own, so
that the digits of a timestamp or a random token are not taken for a leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from hotline_domain.numbers import DIGIT_CHARS

_CLASS = re.escape("".join(sorted(DIGIT_CHARS)) + "XxＸｘ叉")
_SEP = r"[\s,，、\-－—–_杠]{1,3}"
_RUN = re.compile(f"[{_CLASS}]+(?:{_SEP}[{_CLASS}]+)*")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_X = {"X": "X", "x": "X", "Ｘ": "X", "ｘ": "X", "叉": "X"}


def _arabic(ch: str) -> str:
    return DIGIT_CHARS.get(ch) or _X.get(ch, ch)


def digit_forms(text: str) -> set[str]:
    """`text` as written, with \\uXXXX escapes read, with every digit as an Arabic one, and with the groups of
    every run of digits (however spoken and separated) joined."""
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    arabic = "".join(DIGIT_CHARS.get(ch, ch) for ch in text)
    joined = _RUN.sub(lambda m: "".join(_arabic(ch) for ch in m.group() if ch in DIGIT_CHARS or ch in _X), text)
    return {text, arabic, joined}


@dataclass(frozen=True)
class Hit:
    where: str
    what: str
    context: str


def find(where: str, text: str, secrets: dict[str, str]) -> list[Hit]:
    """Every clear secret in `text` (names -> values), with a little context to show where."""
    hits = []
    for form in digit_forms(text):
        for what, value in secrets.items():
            value = value.upper()
            pattern = re.escape(value) if len(value) >= 11 else rf"(?<![0-9]){re.escape(value)}(?![0-9])"
            for m in re.finditer(pattern, form.upper()):
                hits.append(Hit(where, what, form[max(0, m.start() - 40) : m.end() + 40]))
    return hits


def redis_contents(url: str) -> Iterator[tuple[str, str]]:
    """(key, everything stored under it as text) for every key of every database of the Redis at `url`."""
    first = redis.Redis.from_url(url)
    databases = [int(name[2:]) for name in first.info("keyspace")] or [0]
    first.close()
    netloc = urlsplit(url).netloc
    for db in databases:
        r = redis.Redis.from_url(f"redis://{netloc}/{db}")
        for key in r.scan_iter(count=500):
            kind = r.type(key).decode()
            if kind == "string":
                parts: Iterable[bytes] = [r.get(key) or b""]
            elif kind == "hash":
                parts = [x for kv in r.hgetall(key).items() for x in kv]
            elif kind == "list":
                parts = r.lrange(key, 0, -1)
            elif kind == "set":
                parts = list(r.smembers(key))
            elif kind == "zset":
                parts = [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                parts = [x for _, fields in r.xrange(key) for kv in fields.items() for x in kv]
            else:
                parts = []
            name = key.decode(errors="replace")
            yield f"redis db{db} {kind} {name}", " ".join([name, *(p.decode(errors="replace") for p in parts)])
        r.close()


def file_contents(folder: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        yield str(path), path.read_bytes().decode(errors="replace")
