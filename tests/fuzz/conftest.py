"""Hypothesis profiles for the fuzz harnesses, and the input counts printed at the end of the run."""

from __future__ import annotations

import faulthandler
import logging
from collections.abc import Iterator

import pytest

from tests.fuzz.harness import HARNESSES, LONG, SCALE, register_profiles

register_profiles()

HARD_HANG_S = 600 if not LONG else 6 * 3600  # a harness stuck inside C code (where SIGALRM cannot reach)


QUIET = ("aiosipua", "hotline", "websockets", "asyncio")  # bad input is logged by design: not at 100,000 inputs


@pytest.fixture(autouse=True)
def hard_hang_bound() -> Iterator[None]:
    """Dump every thread's stack and exit if one harness runs for HARD_HANG_S: a hang no signal handler ends."""
    faulthandler.dump_traceback_later(HARD_HANG_S, exit=True)
    levels = {name: logging.getLogger(name).level for name in QUIET}
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    faulthandler.cancel_dump_traceback_later()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ran = [h for h in HARNESSES.values() if h.examples]
    if not ran:
        return
    profile = f"long (x{SCALE}, random)" if LONG else "ci (derandomized)"
    terminalreporter.write_sep("-", f"fuzz inputs, profile {profile}")
    terminalreporter.write_line(f"{'harness':<22}{'examples':>10}{'inputs':>10}{'seconds':>9}{'slowest ms':>12}")
    for h in sorted(ran, key=lambda h: h.name):
        line = f"{h.name:<22}{h.examples:>10}{h.inputs:>10}{h.seconds:>9.1f}{h.slowest_ms:>12.1f}"
        terminalreporter.write_line(line)
    inputs, seconds = sum(h.inputs for h in ran), sum(h.seconds for h in ran)
    terminalreporter.write_line(f"{'total':<22}{sum(h.examples for h in ran):>10}{inputs:>10}{seconds:>9.1f}")
