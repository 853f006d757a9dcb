"""Intent accuracy through recognition and understanding, on the committed caller recordings.

Each intent WAV goes through the gateway's recogniser (as a call's first turn: no digits expected) and then the
running Rasa server's NLU; the intent is compared with the one the recording was made for. With `--phone` the
audio first goes through 8 kHz G.711 mu-law, as on a telephone line.

    ./hotline up &   # then:
    .venv/bin/python tools/intent_accuracy.py [--phone] [--engine whisper]
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request

from voice_gateway.asr import make_recognizer
from voice_gateway.audio import frames, ulaw_decode, ulaw_encode
from voice_gateway.config import PROJECT_ROOT, Settings
from voice_gateway.testing.ws_caller import read_wav

AUDIO = PROJECT_ROOT / "tests" / "audio"


def parse(rasa_url: str, text: str, token: str = "") -> str:
    query = "?" + urllib.parse.urlencode({"token": token}) if token else ""  # Rasa's HTTP API needs the token
    request = urllib.request.Request(
        f"{rasa_url}/model/parse{query}", json.dumps({"text": text}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["intent"]["name"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phone", action="store_true", help="8 kHz mu-law, as on a telephone line")
    parser.add_argument("--engine", default="auto", help="whisper, vosk, or a model name (default: auto)")
    args = parser.parse_args()
    runtime = json.loads((Settings.from_env().var_dir / "run" / "hotline.json").read_text())
    recognizer = make_recognizer(args.engine)
    rate = 8000 if args.phone else 16000
    manifest = json.loads((AUDIO / "manifest.json").read_text(encoding="utf-8"))
    right, wrong = 0, []
    for entry in (m for m in manifest if m["kind"] == "intent"):
        pcm = read_wav(AUDIO / entry["file"], rate)
        if args.phone:
            pcm = ulaw_decode(ulaw_encode(pcm))
        utterance = recognizer.utterance(rate)
        for frame in frames(pcm, rate, 100):
            utterance.accept(frame)
        text = utterance.finish().text
        utterance.close()
        intent = parse(runtime["rasa_url"], text, runtime.get("rasa_token", ""))
        if intent == entry["intent"]:
            right += 1
        else:
            wrong.append(f"{entry['file']}: heard {text!r} -> {intent} (expected {entry['intent']})")
    total = right + len(wrong)
    print("\n".join(wrong))
    print(
        f"{recognizer.info.model} at {rate} Hz{' mu-law' if args.phone else ''}: {right}/{total} = {right / total:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
