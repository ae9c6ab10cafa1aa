"""Recordings at rest: AES-256-GCM in fixed-size chunks, each with its own nonce and tag.

Layout of an encrypted file (all integers big-endian)::

    header  = MAGIC (8) | key_id_len (1) | key_id | chunk_size (4) | plain_size (8)
              | nonce_prefix (8)
    chunk i = AES-GCM(key, nonce = nonce_prefix | i (4), plaintext[i*chunk:(i+1)*chunk],
                      aad = header | i (4) | last (1)) -> ciphertext + 16-byte tag

Every chunk is authenticated with the whole header (key ID, sizes) and its own index and
whether it is the last, so a chunk swapped, reordered, dropped or a file cut short fails
to decrypt instead of playing other audio. Chunk i sits at ``header_len + i * (chunk +
16)``: a Range request decrypts only the chunks it covers. The key ID in the header names
the key (config ``recording.keys``) so keys rotate: new files use the current key, old
ones keep theirs. Pure: bytes in, bytes out, no I/O beyond the file objects given.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

# ``cryptography`` is imported where a file is encrypted or read (in a worker thread), not
# here: its bindings hold ~8 MB of a bridge's RSS, and only a deployment that encrypts
# recordings needs them (BENCHMARKS.md section 4).

MAGIC = b"CCBREC1\x00"
TAG = 16
_FIXED = struct.Struct(">IQ8s")  # chunk_size, plain_size, nonce_prefix
MAX_CHUNK = 4 * 1024 * 1024


class CryptoError(Exception):
    """The file is not one of ours, was changed, or its key is not known here."""


@dataclass(frozen=True, slots=True)
class Header:
    key_id: str
    chunk_size: int
    plain_size: int
    nonce_prefix: bytes
    raw: bytes  # the header's bytes: every chunk's AAD starts with them

    @property
    def length(self) -> int:
        return len(self.raw)

    @property
    def chunks(self) -> int:
        return max(1, -(-self.plain_size // self.chunk_size))

    def chunk_offset(self, index: int) -> int:
        return self.length + index * (self.chunk_size + TAG)

    @property
    def encrypted_size(self) -> int:
        return self.length + self.plain_size + self.chunks * TAG


def make_header(key_id: str, chunk_size: int, plain_size: int, nonce_prefix: bytes) -> Header:
    kid = key_id.encode("ascii")
    if not 0 < len(kid) < 256 or not 0 < chunk_size <= MAX_CHUNK or len(nonce_prefix) != 8:
        raise ValueError("bad header fields")
    raw = MAGIC + bytes([len(kid)]) + kid + _FIXED.pack(chunk_size, plain_size, nonce_prefix)
    return Header(key_id, chunk_size, plain_size, nonce_prefix, raw)


def read_header(f: BinaryIO) -> Header:
    head = f.read(len(MAGIC) + 1)
    if len(head) != len(MAGIC) + 1 or head[: len(MAGIC)] != MAGIC:
        raise CryptoError("not an encrypted recording (bad magic)")
    kid = f.read(head[-1])
    fixed = f.read(_FIXED.size)
    if len(kid) != head[-1] or len(fixed) != _FIXED.size:
        raise CryptoError("encrypted recording cut short in its header")
    chunk_size, plain_size, prefix = _FIXED.unpack(fixed)
    if not 0 < chunk_size <= MAX_CHUNK:
        raise CryptoError(f"bad chunk size {chunk_size}")
    try:
        key_id = kid.decode("ascii")
    except UnicodeDecodeError:
        raise CryptoError("bad key ID") from None
    return Header(key_id, chunk_size, plain_size, prefix, head + kid + fixed)


def _nonce(h: Header, index: int) -> bytes:
    return h.nonce_prefix + struct.pack(">I", index)


def _aad(h: Header, index: int) -> bytes:
    return h.raw + struct.pack(">IB", index, 1 if index == h.chunks - 1 else 0)


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key_id: str,
    key: bytes,
    plain_size: int,
    chunk_size: int = 65536,
) -> Header:
    """Encrypt ``plain_size`` bytes of ``src`` into ``dst``; raises CryptoError when the
    source holds another number of bytes (it changed while being read)."""
    if plain_size >= 2**32 * chunk_size:
        raise ValueError("recording too large for 32-bit chunk indexes")
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    h = make_header(key_id, chunk_size, plain_size, os.urandom(8))
    aead = AESGCM(key)
    dst.write(h.raw)
    done = 0
    for i in range(h.chunks):
        block = src.read(min(chunk_size, plain_size - done))
        if len(block) != min(chunk_size, plain_size - done):
            raise CryptoError("the source file got shorter while it was encrypted")
        done += len(block)
        dst.write(aead.encrypt(_nonce(h, i), block, _aad(h, i)))
    if src.read(1):
        raise CryptoError("the source file grew while it was encrypted")
    return h


def decrypt_range(f: BinaryIO, keys: Mapping[str, bytes], start: int, end: int) -> Iterator[bytes]:
    """Plaintext bytes ``start..end`` (inclusive) of an encrypted file, decrypting only the
    chunks they fall in, one chunk at a time. Raises CryptoError on a changed file or an
    unknown key (before yielding anything for the chunk at fault)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    f.seek(0)
    h = read_header(f)
    key = keys.get(h.key_id)
    if key is None:
        raise CryptoError(f"no key '{h.key_id}' configured to decrypt this recording")
    if not 0 <= start <= end < h.plain_size:
        if h.plain_size == 0 and start == 0 and end < 0:
            return
        raise ValueError(f"range {start}-{end} outside 0-{h.plain_size - 1}")
    aead = AESGCM(key)
    first, last = start // h.chunk_size, end // h.chunk_size
    for i in range(first, last + 1):
        f.seek(h.chunk_offset(i))
        want = min(h.chunk_size, h.plain_size - i * h.chunk_size) + TAG
        data = f.read(want)
        if len(data) != want:
            raise CryptoError(f"encrypted recording cut short at chunk {i}")
        try:
            plain = aead.decrypt(_nonce(h, i), data, _aad(h, i))
        except InvalidTag:
            raise CryptoError(f"chunk {i} failed authentication (changed or wrong key)") from None
        base = i * h.chunk_size
        lo = max(start, base) - base
        hi = min(end, base + len(plain) - 1) - base
        yield plain[lo : hi + 1]


def plain_size(f: BinaryIO) -> tuple[Header, int]:
    """The header and the plaintext size it declares (checked against the file's length)."""
    f.seek(0)
    h = read_header(f)
    f.seek(0, os.SEEK_END)
    if f.tell() != h.encrypted_size:
        raise CryptoError(
            f"encrypted recording is {f.tell()} bytes, its header says {h.encrypted_size}"
        )
    return h, h.plain_size
