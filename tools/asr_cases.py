"""The recognition errors trainers marked on /trainer, replayed through the recogniser: what it heard then, what it
hears now, what was said, and the character error rate of each.

Each case is var/asr_cases/<name>.json (heard, said, intent) with its snippet <name>.wav.enc, sealed with the
recording key (the caller's voice never lies on disk in clear). A case without audio (the call was not recorded)
is listed and skipped.

    .venv/bin/python tools/asr_cases.py                  # the gateway's Whisper with its defaults
    .venv/bin/python tools/asr_cases.py --json            # one JSON object per case
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the project's packages

from voice_gateway.config import Settings
from voice_gateway.recorder import recording_key
from voice_gateway.testing.text_errors import chars, edits
from voice_gateway.training.desk import CASES_DIR, open_case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per case")
    args = parser.parse_args()
    settings = Settings.from_env()
    folder = settings.var_dir / CASES_DIR
    cases = sorted(folder.glob("*.json"))
    if not cases:
        print(f"no recognition errors marked yet ({folder})")
        return 0
    from voice_gateway.asr import WhisperRecognizer

    key = recording_key(settings.gateway)
    recognizer = WhisperRecognizer()
    errors = total = 0
    for path in cases:
        case = json.loads(path.read_text(encoding="utf-8"))
        wav = open_case(folder, case["name"], key)
        if wav is None:
            print(f"{case['name']}: no audio (the call was not recorded)")
            continue
        with wave.open(io.BytesIO(wav)) as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
        utterance = recognizer.utterance(rate)
        utterance.accept(pcm)
        now = utterance.finish().text
        utterance.close()
        said = chars(case["said"])
        wrong = edits(said, chars(now))
        errors, total = errors + wrong, total + len(said)
        row = {"case": case["name"], "said": case["said"], "heard": case["heard"], "now": now}
        row["cer"] = round(wrong / max(len(said), 1), 3)
        print(json.dumps(row, ensure_ascii=False) if args.json else f"{row['case']}: {row}")
    if total:
        print(f"character error rate over the cases with audio: {errors / total:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
