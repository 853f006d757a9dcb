"""Whisper's decoding choices measured on the development split: CER, empty recognitions, intent, CPU.

Each development-split intent recording (tests/audio, split dev; never the eval split) goes through a channel of
voice_gateway/testing/channel.py, then through a WhisperRecognizer built with the given keyword arguments (the
gateway's defaults when none), then through the running Rasa server's NLU as a first turn. This is how the
domain prompt in voice_gateway/asr.py was chosen (docs/voice.md).

    ./hotline up &   # then:
    .venv/bin/python tools/asr_levers.py --channels clean,phone \\
        --configs '[{}, {"beam_size": 4}, {"prompt": "以下是普通话的句子。"}]'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the project's packages

from tools.intent_accuracy import parse
from voice_gateway import speech_models
from voice_gateway.asr import WhisperRecognizer
from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.testing import channel
from voice_gateway.testing.text_errors import chars as bare
from voice_gateway.testing.text_errors import edits
from voice_gateway.testing.ws_caller import read_wav

AUDIO = PROJECT_ROOT / "tests" / "audio"


def measure(recognizer: WhisperRecognizer, channel_name: str, entries: list[dict], runtime: dict) -> dict:
    right, errors, chars, empty, misses = 0, 0, 0, 0, []
    started = time.process_time()
    for entry in entries:
        pcm, rate = channel.render(channel_name, read_wav(AUDIO / entry["file"], channel.RATE))
        utterance = recognizer.utterance(rate)
        utterance.accept(pcm)
        text = utterance.finish().text
        utterance.close()
        reference = bare(entry["text"])
        errors, chars = errors + edits(reference, bare(text)), chars + len(reference)
        empty += not text
        intent = parse(runtime["rasa_url"], text, runtime.get("rasa_token", "")) if text else None
        if intent == entry["intent"]:
            right += 1
        else:
            misses.append(f"{entry['file']}: {text!r} -> {intent}")
    return {
        "accuracy": round(right / len(entries), 3),
        "right": right,
        "files": len(entries),
        "cer": round(errors / max(chars, 1), 3),
        "empty": empty,
        "cpu_s": round(time.process_time() - started, 1),
        "misses": misses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", default="clean,phone", help="channels of voice_gateway/testing/channel.py")
    parser.add_argument("--configs", default="[{}]", help="a JSON list of WhisperRecognizer keyword arguments")
    args = parser.parse_args()
    runtime = json.loads((Settings.from_env().var_dir / "run" / "hotline.json").read_text())
    manifest = json.loads((AUDIO / "manifest.json").read_text(encoding="utf-8"))
    entries = [m for m in manifest if m["kind"] == "intent" and m.get("split") == "dev"]
    for config in json.loads(args.configs):
        recognizer = WhisperRecognizer(speech_models.path("whisper-base"), **config)
        for name in args.channels.split(","):
            row = measure(recognizer, name, entries, runtime)
            label = json.dumps(config, ensure_ascii=False)[:48]
            print(
                f"{label:50} {name:8} intents {row['right']}/{row['files']} = {row['accuracy']:.3f}  "
                f"CER {row['cer']:.3f}  empty {row['empty']}  CPU {row['cpu_s']:.0f} s",
                flush=True,
            )
            for miss in row["misses"]:
                print("    " + miss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
