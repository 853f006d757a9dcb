"""What every fuzz harness shares: the input budget, the per-input time bound, the counts, the seed corpus, mutators.

A harness is a hypothesis test whose body is decorated with its `Harness` (which counts its examples and time);
every input goes through the code under test by `Harness.check`, which bounds its time (SIGALRM: `Hang` is raised
after HANG_S) and counts it for the summary printed at the end of the pytest run. Hypothesis draws the structure
(which seed, which mutations, how many, or a whole structured message); `mutants` turns one draw into several
mutated inputs with a seeded random generator, so that a CI run reaches 100,000 inputs in well under a minute and
stays reproducible (derandomize=True, no example database: the same inputs on every machine).

HOTLINE_FUZZ=long multiplies every budget by HOTLINE_FUZZ_SCALE (default 100), draws new random inputs on each run
and keeps failing examples in var/fuzz/hypothesis (docs/fuzzing.md).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, settings

CORPUS = Path(__file__).parent / "corpus"
LONG = os.environ.get("HOTLINE_FUZZ", "") == "long"
SCALE = int(os.environ.get("HOTLINE_FUZZ_SCALE", "100")) if LONG else 1
HANG_S = float(os.environ.get("HOTLINE_FUZZ_HANG_S", "2.0"))  # one input taking this long is a hang


class Hang(Exception):
    """One input ran longer than HANG_S."""


@dataclass
class Harness:
    """One harness's inputs: each run through the code under test by `check` (time-bounded) or noted by `count`."""

    name: str
    examples: int = 0  # hypothesis examples (the explicit corpus examples included)
    inputs: int = 0  # inputs run through the code under test
    seconds: float = 0.0
    slowest_ms: float = 0.0

    def __post_init__(self) -> None:
        HARNESSES[self.name] = self

    def check(self, target: Callable[..., Any], *args: Any) -> Any:
        """`target(*args)`, counted and time-bounded."""
        started = time.perf_counter()
        with time_bound(args):
            result = target(*args)
        self.inputs += 1
        self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000)
        return result

    def count(self, n: int = 1) -> None:
        self.inputs += n

    def __call__(self, test: Callable) -> Callable:
        """Decorate a harness's body (under @given): its examples and time are counted."""

        @functools.wraps(test)
        def counted(*args: Any, **kwargs: Any) -> None:
            self.examples += 1
            started = time.perf_counter()
            try:
                test(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return counted


HARNESSES: dict[str, Harness] = {}


def budget(examples: int) -> int:
    """A harness's hypothesis examples in this run: as given in CI, times SCALE in a long run."""
    return examples * SCALE


def explicit(*values: Any) -> Callable:
    """Every value as an explicit hypothesis example (the seed corpus), before anything generated."""

    def decorate(test: Callable) -> Callable:
        for value in reversed(values):
            test = example(value)(test)
        return test

    return decorate


@contextlib.contextmanager
def time_bound(what: Any) -> Iterator[None]:
    """Raise Hang in this (the main) thread if the block runs longer than HANG_S."""

    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"input took over {HANG_S} s: {shorten(what)}")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def shorten(value: Any, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def register_profiles() -> None:
    common = {
        "deadline": None,  # the time bound is Hang (HANG_S), which timing noise on a shared machine cannot trip
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        "print_blob": True,
    }
    settings.register_profile("ci", derandomize=True, database=None, **common)
    from hypothesis.database import DirectoryBasedExampleDatabase

    where = Path(__file__).resolve().parents[2] / "var" / "fuzz" / "hypothesis"
    settings.register_profile("long", derandomize=False, database=DirectoryBasedExampleDatabase(where), **common)
    settings.load_profile("long" if LONG else "ci")


# --- the seed corpus ---
def corpus(kind: str, suffix: str = "") -> list[bytes]:
    """The committed seeds of one kind (tests/fuzz/corpus/<kind>/), in name order."""
    folder = CORPUS / kind
    return [p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name.endswith(suffix)]


def corpus_lines(kind: str, name: str) -> list[str]:
    """One seed per line (text files; blank lines and lines starting with '# ' left out)."""
    text = (CORPUS / kind / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("# ")]


def corpus_json(kind: str) -> list[Any]:
    return [json.loads(data) for data in corpus(kind, ".json")]


# --- mutators ---
TOKENS = [
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"=",
    b"<",
    b">",
    b'"',
    b"\\",
    b"@",
    b"/",
    b"[",
    b"]",
    b"%",
    b"%00",
    b"\xff",
    b"\xc3",
    b"\xe4\xbd\xa0",
    b"\xef\xbb\xbf",
    b"-1",
    b"0",
    b"4294967296",
    b"99999999999999999999",
    b"SIP/2.0",
    b"sip:",
    b";tag=",
    b";branch=z9hG4bK",
    b"Content-Length: ",
    b"l: ",
    b"v=0",
    b"m=audio ",
    b"c=IN IP4 ",
    b"a=rtpmap:",
    b"INVITE",
    b"ACK",
    b"BYE",
    b"CANCEL",
]
INTERESTING_BYTES = [0, 1, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x20, 0x3A, 0x3B]


def mutate(data: bytes, rng: random.Random, others: list[bytes] = (), rounds: int = 0) -> bytes:  # type: ignore[assignment]
    """Some byte- and line-level mutations of `data` (a few, or `rounds`)."""
    out = bytearray(data)
    for _ in range(rounds or rng.choice((1, 1, 2, 3, 5, 8))):
        op = rng.randrange(12)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:  # flip a bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and out:  # an interesting byte
            out[rng.randrange(len(out))] = rng.choice(INTERESTING_BYTES)
        elif op == 2:  # insert a token
            out[at:at] = rng.choice(TOKENS)
        elif op == 3 and out:  # delete a range
            del out[at : at + rng.choice((1, 2, 4, 16, 64))]
        elif op == 4 and out:  # repeat a range
            piece = out[at : at + rng.choice((1, 4, 16, 64))]
            out[at:at] = piece * rng.choice((1, 2, 16, 200))
        elif op == 5:  # truncate
            del out[at:]
        elif op == 6:  # splice with another seed
            other = rng.choice(others) if others else bytes(out)
            cut = rng.randrange(len(other) + 1)
            out = out[:at] + bytearray(other[cut:])
        elif op in (7, 8, 9, 10, 11):  # line level: the structure of text protocols
            out = bytearray(_mutate_lines(bytes(out), rng, op))
    return bytes(out)


def _mutate_lines(data: bytes, rng: random.Random, op: int) -> bytes:
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    lines = data.split(newline)
    if not lines:
        return data
    i = rng.randrange(len(lines))
    if op == 7:  # drop a line
        del lines[i]
    elif op == 8:  # duplicate a line
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
    elif op == 9:  # swap two lines
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 10:  # replace what follows a ':' or '=' with something odd
        name, sep, _ = lines[i].partition(b":") if b":" in lines[i] else lines[i].partition(b"=")
        lines[i] = name + (sep or b":") + rng.choice(VALUES)
    else:  # change the case of a line, or fold it
        lines[i] = lines[i].swapcase() if rng.random() < 0.5 else b" " + lines[i]
    return newline.join(lines)


VALUES = [
    b"",
    b" ",
    b"0",
    b"-1",
    b" 1 INVITE",
    b"abc",
    b"<>",
    b"<sip:>",
    b"<sip:@>",
    b"sip:a@b;tag=",
    b";;;;",
    b",,,,",
    b'"unterminated',
    b"SIP/2.0/UDP",
    b"SIP/2.0/UDP [::1",
    b"SIP/2.0/UDP host:99999",
    b"4294967296 INVITE",
    b"1 " + b"A" * 300,
    b"\xe4\xbd\xa0\xe5\xa5\xbd",
    b"\xff\xfe",
    b"IN IP4 999.1.1.1",
    b"audio 0 RTP/AVP",
    b"audio 70000 RTP/AVP 0",
    b"audio -5 RTP/AVP 0",
    b"audio x RTP/AVP 0",
    b"0 PCMU/",
    b"0 PCMU/8000/1/x",
    b"101 telephone-event/abc",
    b"9" * 40,
    b"\xc2\xb2",
    b"\xd9\xa1\xd9\xa2",
]


def mutants(seeds: list[bytes], pick: int, seed: int, n: int) -> Iterator[bytes]:
    """`n` mutants of seeds[pick % len(seeds)], reproducible from `seed`."""
    rng = random.Random(seed)
    base = seeds[pick % len(seeds)]
    for _ in range(n):
        yield mutate(base, rng, seeds)
