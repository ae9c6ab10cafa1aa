"""A lab phone's media: an RTP socket that sends PCMU (silence or a loud tone) and counts
what it hears, loud packets apart. What proves who hears whom (desk supervision tests).

It runs in threads of its own, off the event loop of the bridge a test runs in process
(50 packets a second per phone would otherwise share that loop's 50 ms budget).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

PCMU = 0
SAMPLES = 160  # 20 ms at 8 kHz
SILENCE = bytes([0xFF]) * SAMPLES  # mu-law zero
# A 500 Hz square wave at full scale (mu-law 0x80 = +32124, 0x00 = -32124): loud enough
# to stand out after Asterisk mixes it into other audio.
TONE = (bytes([0x80]) * 8 + bytes([0x00]) * 8) * (SAMPLES // 16)
LOUD = 4000  # a packet with a sample beyond this (linear) is loud; silence is 0


def ulaw_to_linear(b: int) -> int:
    """G.711 mu-law byte to a 16-bit linear sample."""
    b = ~b & 0xFF
    magnitude = ((((b & 0x0F) << 3) + 0x84) << ((b >> 4) & 0x07)) - 0x84
    return -magnitude if b & 0x80 else magnitude


_LOUD_BYTES = frozenset(b for b in range(256) if abs(ulaw_to_linear(b)) > LOUD)


def loud(payload: bytes) -> bool:
    return any(b in _LOUD_BYTES for b in payload)


@dataclass
class Heard:
    packets: int = 0
    loud: int = 0


class RtpPhone:
    """Binds 127.0.0.1:``port``; once ``talk_to(host, port)`` is called, sends one PCMU
    packet every 20 ms (``payload``: SILENCE or TONE); counts what arrives in ``heard``."""

    def __init__(self, port: int = 0, payload: bytes = SILENCE) -> None:
        self.payload = payload
        self.heard = Heard()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", port))
        self._sock.settimeout(0.1)
        self._peer: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._ssrc = int.from_bytes(os.urandom(4), "big")
        self._threads = [
            threading.Thread(target=self._receive, name="rtp-rx", daemon=True),
            threading.Thread(target=self._send, name="rtp-tx", daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    def talk_to(self, host: str, port: int) -> None:
        self._peer = (host, port)

    def reset(self) -> Heard:
        """What was heard so far; counting starts again from zero."""
        heard, self.heard = self.heard, Heard()
        return heard

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            heard = self.heard
            heard.packets += 1
            if loud(data[12:]):
                heard.loud += 1

    def _send(self) -> None:
        seq = ts = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            peer = self._peer
            if peer is not None:
                header = struct.pack(
                    "!BBHII", 0x80, PCMU, seq & 0xFFFF, ts & 0xFFFFFFFF, self._ssrc
                )
                try:
                    self._sock.sendto(header + self.payload, peer)
                except OSError:
                    return
                seq, ts = seq + 1, (ts + SAMPLES) & 0xFFFFFFFF
            next_at += 0.02
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(1.0)
        self._sock.close()

    def __enter__(self) -> RtpPhone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
