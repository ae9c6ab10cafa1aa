"""A lab phone's media: an RTP socket that sends PCMU (silence or a loud tone) and counts
what it hears, loud packets apart. What proves who hears whom (desk supervision tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from dataclasses import dataclass
from typing import cast

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


class RtpPhone(asyncio.DatagramProtocol):
    """Binds 127.0.0.1:``port``; once ``talk_to(host, port)`` is called, sends one PCMU
    packet every 20 ms (``payload``: SILENCE or TONE) and counts what arrives."""

    def __init__(self, payload: bytes = SILENCE) -> None:
        self.payload = payload
        self.heard = Heard()
        self.transport: asyncio.DatagramTransport | None = None
        self._peer: tuple[str, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ssrc = int.from_bytes(os.urandom(4), "big")

    @classmethod
    async def open(cls, port: int = 0, payload: bytes = SILENCE) -> RtpPhone:
        loop = asyncio.get_running_loop()
        _, phone = await loop.create_datagram_endpoint(
            lambda: cls(payload), local_addr=("127.0.0.1", port)
        )
        return phone

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        self.heard.packets += 1
        if loud(data[12:]):
            self.heard.loud += 1

    def talk_to(self, host: str, port: int) -> None:
        self._peer = (host, port)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send())

    def reset(self) -> Heard:
        """What was heard so far; counting starts again from zero."""
        heard, self.heard = self.heard, Heard()
        return heard

    async def _send(self) -> None:
        seq, ts = 0, 0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self.transport is not None and not self.transport.is_closing():
            header = struct.pack("!BBHII", 0x80, PCMU, seq & 0xFFFF, ts & 0xFFFFFFFF, self._ssrc)
            if self._peer is not None:
                self.transport.sendto(header + self.payload, self._peer)
            seq, ts = seq + 1, ts + SAMPLES
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.transport is not None:
            self.transport.close()
