"""A caller's speech as a pcap of PCMU RTP packets, for SIPp's `play_pcap_audio`.

Each packet is a full Ethernet/IPv4/UDP frame (SIPp reads Ethernet captures) stamped 20 ms apart; SIPp rewrites
the addresses and replays the packets at their capture times. Usage: `python -m tests.voice.sip.pcap IN.wav OUT.pcap
[--lead-silence SECONDS]`.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

from voice_gateway.audio import frames, ulaw_encode
from voice_gateway.testing.ws_caller import read_wav
from voice_gateway.transports.rtp import FRAME_SAMPLES, build_rtp

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # microsecond stamps, Ethernet links
ETHERNET = bytes.fromhex("0200000000020200000000010800")


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(payload: bytes, src: tuple[str, int], dst: tuple[str, int], ident: int) -> bytes:
    """An Ethernet frame carrying one IPv4/UDP datagram (UDP checksum 0: none, as IPv4 allows)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    addresses = bytes(map(int, src[0].split("."))) + bytes(map(int, dst[0].split(".")))
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, 64, 17, 0) + addresses
    header = header[:10] + struct.pack("!H", _ip_checksum(header)) + header[12:]
    return ETHERNET + header + udp


def pcmu_pcap(
    pcm: bytes, *, src: tuple[str, int] = ("10.0.0.1", 6000), dst: tuple[str, int] = ("10.0.0.2", 7000)
) -> bytes:
    """8 kHz 16-bit PCM -> pcap bytes: one PCMU RTP packet per 20 ms, marker on the first."""
    out = [PCAP_HEADER]
    for i, frame in enumerate(frames(pcm, 8000)):
        rtp = build_rtp(0, 1000 + i, 160000 + i * FRAME_SAMPLES, 0x5A5A0001, ulaw_encode(frame), marker=i == 0)
        packet = udp_frame(rtp, src, dst, i)
        micros = i * 20000
        out.append(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(packet), len(packet)) + packet)
    return b"".join(out)


def write_pcap(wav: Path, path: Path, lead_silence_s: float = 0.0, tail_silence_s: float = 0.0) -> float:
    """Write the pcap for a WAV (any rate) with silence around it; returns its duration in seconds."""
    pcm = read_wav(wav, 8000)
    pcm = b"\x00" * int(16000 * lead_silence_s) + pcm + b"\x00" * int(16000 * tail_silence_s)
    path.write_bytes(pcmu_pcap(pcm))
    return len(pcm) / 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", type=Path)
    parser.add_argument("pcap", type=Path)
    parser.add_argument("--lead-silence", type=float, default=0.0, help="seconds of silence before the speech")
    args = parser.parse_args()
    print(f"{args.pcap}: {write_pcap(args.wav, args.pcap, args.lead_silence):.2f} s of PCMU RTP")


if __name__ == "__main__":
    main()
