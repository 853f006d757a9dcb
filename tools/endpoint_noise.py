"""Endpointing in noise: how many turns end when noise goes on after the caller stops (docs/voice.md).

Each development recording (tests/audio, split dev) is followed by 3 s more of street or babble noise at a given
SNR, sent through G.711 at 8 kHz, and fed frame by frame to the gateway's endpointer (end silence 600 ms) with
each detector. Also counted: quiet recordings heard as exactly one turn, and short answers that start a turn.

    .venv/bin/python tools/endpoint_noise.py [--files 30]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from voice_gateway.audio import frames
from voice_gateway.config import PROJECT_ROOT
from voice_gateway.testing import channel
from voice_gateway.testing.ws_caller import read_wav
from voice_gateway.vad import Endpointer, SileroGatedVad, WebRtcVad

AUDIO = PROJECT_ROOT / "tests" / "audio"
DETECTORS = {"webrtc": lambda: WebRtcVad(2), "silero-gated": lambda: SileroGatedVad()}
SHORT = ("backchannel_dui.wav", "backchannel_haode.wav", "intent_affirm_1.wav", "intent_deny_1.wav")


def turns(make: object, pcm: bytes, rate: int) -> list[float]:
    """When each turn ended (seconds from the start)."""
    endpointer = Endpointer(make(), rate, end_silence_ms=600)  # type: ignore[operator]
    return [(i + 1) * 0.02 for i, f in enumerate(frames(pcm, rate, 20)) if endpointer.feed(f) == "speech_end"]


def noisy(x: np.ndarray, kind: str, snr: float, talkers: list[np.ndarray]) -> tuple[bytes, int]:
    padded = np.concatenate([x, np.zeros(3 * channel.RATE)])
    rng = np.random.default_rng(len(x))
    noise = channel.street_noise(len(padded), rng) if kind == "street" else channel.babble_noise(padded, talkers, rng)
    noise *= channel._rms(x) / channel._rms(noise) / 10 ** (snr / 20)
    return channel.telephone(padded + noise)


def _then_silence(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.zeros(channel.RATE)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=30, help="development recordings in noise (default 30)")
    args = parser.parse_args()
    manifest = json.loads((AUDIO / "manifest.json").read_text(encoding="utf-8"))
    dev = [m["file"] for m in manifest if m["kind"] == "intent" and m.get("split") == "dev"]
    speech = {name: channel._f(read_wav(AUDIO / name, channel.RATE)) for name in dev}
    talkers = [speech[name] for name in dev[-8:]]  # babble from recordings not measured below
    report: dict[str, dict[str, str]] = {}
    for label, make in DETECTORS.items():
        row = report.setdefault(label, {})
        for kind in ("street", "babble"):
            for snr in (20.0, 15.0, 10.0):
                ended = []
                for name in dev[: args.files]:
                    x = speech[name]
                    ends = turns(make, *noisy(x, kind, snr, talkers))
                    if ends:
                        ended.append(ends[0] - len(x) / channel.RATE)
                worst = f" (max {max(ended):.1f} s)" if ended else ""
                row[f"{kind} {snr:g} dB"] = f"{len(ended)}/{args.files}{worst}"
        quiet = [turns(make, *channel.telephone(_then_silence(speech[n]))) for n in dev]
        row["quiet: one turn"] = f"{sum(len(t) == 1 for t in quiet)}/{len(dev)}"
        short = [
            turns(make, *channel.telephone(_then_silence(channel._f(read_wav(AUDIO / n, channel.RATE))))) for n in SHORT
        ]
        row["short answers started"] = f"{sum(bool(t) for t in short)}/{len(SHORT)}"
        print(label, json.dumps(row, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
