"""Long coverage-guided runs of the same harness checks with atheris (libFuzzer), outside CI (docs/fuzzing.md).

    pip install atheris==3.0.0          # cp311 wheels; not part of the lock
    python -m tests.fuzz.atheris_run sip-message -runs=1000000
    python -m tests.fuzz.atheris_run privacy -max_total_time=3600

The first corpus directory given to libFuzzer is where it writes new inputs: var/fuzz/corpus/<target>/ (not
committed); the committed seeds (tests/fuzz/corpus/...) are read from after it. Crashes go to var/fuzz/crash-*.
Any exception other than the target's documented ones, or a failed property, is a crash: libFuzzer stops and
writes the input; put it in the committed corpus once fixed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["voice_gateway", "hotline_domain", "aiosipua"]):
    from tests.fuzz import test_contract, test_privacy, test_rtp, test_sdp, test_sip_message, test_twilio_pcm

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"


def _text(target: Callable[[str], None]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        target(atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data)))

    return run


TARGETS: dict[str, tuple[Callable[[bytes], None], list[str]]] = {
    "sip-message": (test_sip_message.check_message, ["sip", "rfc4475"]),
    "sip-tcp-framing": (test_sip_message.frame_stream, ["sip", "sip-tcp"]),
    "sdp": (test_sdp.check_offer, ["sdp"]),
    "rtp": (test_rtp.check_packet, []),
    "ws-json": (_text(test_twilio_pcm.check_message), ["twilio", "pcm", "frames"]),
    "contract": (_text(test_contract.check_json), ["contract"]),
    "privacy": (_text(test_privacy.check_text), ["privacy"]),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.atheris_run {{{','.join(TARGETS)}}} [libFuzzer options]")
    name, options = sys.argv[1], sys.argv[2:]
    target, seeds = TARGETS[name]
    logging.disable(logging.CRITICAL)  # bad input is logged by design
    work = ROOT / "var" / "fuzz" / "corpus" / name
    work.mkdir(parents=True, exist_ok=True)
    folders = [str(work), *(str(CORPUS / seed) for seed in seeds)]
    if not any(o.startswith("-artifact_prefix") for o in options):
        options.append(f"-artifact_prefix={ROOT / 'var' / 'fuzz'}/")
    atheris.Setup([sys.argv[0], *options, *folders], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
