"""Recordings at rest (recording/crypto.py): chunked AES-GCM round trips, Range decryption of
only the chunks asked for, and every kind of tampering refused (a changed byte, swapped or
dropped chunks, a cut file, a changed header, a wrong or unknown key)."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge.recording import crypto

KEY = bytes(range(32))
KEYS = {"k1": KEY}
CHUNK = 64


def encrypt(data: bytes, key_id: str = "k1", key: bytes = KEY, chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    crypto.encrypt_stream(io.BytesIO(data), out, key_id, key, len(data), chunk)
    return out.getvalue()


def decrypt(
    blob: bytes, start: int = 0, end: int | None = None, keys: dict[str, bytes] = KEYS
) -> bytes:
    f = io.BytesIO(blob)
    _, size = crypto.plain_size(f)
    last = size - 1 if end is None else end
    if size == 0:
        return b""
    return b"".join(crypto.decrypt_range(f, keys, start, last))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7])
def test_round_trip_of_every_size_around_the_chunk(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt(data)
    h = crypto.read_header(io.BytesIO(blob))
    assert (h.key_id, h.plain_size, h.chunk_size) == ("k1", size, CHUNK)
    assert len(blob) == h.encrypted_size
    assert decrypt(blob) == data
    assert size < 16 or data not in blob  # ciphertext, not the audio (a byte may recur)


def test_two_encryptions_of_the_same_audio_differ() -> None:
    data = os.urandom(300)
    assert encrypt(data) != encrypt(data)  # a random nonce prefix per file


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=700), a=st.integers(0, 699), b=st.integers(0, 699))
def test_any_range_decrypts_to_exactly_those_bytes(data: bytes, a: int, b: int) -> None:
    lo, hi = sorted((a % len(data), b % len(data)))
    assert decrypt(encrypt(data), lo, hi) == data[lo : hi + 1]


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def test_a_range_reads_only_the_chunks_it_covers() -> None:
    data = os.urandom(100 * CHUNK)
    f = CountingReader(encrypt(data))
    got = b"".join(crypto.decrypt_range(f, KEYS, 50 * CHUNK + 3, 51 * CHUNK + 2))
    assert got == data[50 * CHUNK + 3 : 51 * CHUNK + 3]
    assert f.bytes_read < 3 * (CHUNK + crypto.TAG) + 100  # two chunks and the header


def _chunk(blob: bytes, i: int) -> slice:
    h = crypto.read_header(io.BytesIO(blob))
    start = h.chunk_offset(i)
    return slice(start, start + CHUNK + crypto.TAG)


def test_a_changed_byte_fails_authentication() -> None:
    blob = bytearray(encrypt(os.urandom(4 * CHUNK)))
    blob[_chunk(bytes(blob), 2).start + 5] ^= 1
    with pytest.raises(crypto.CryptoError, match="chunk 2 failed authentication"):
        decrypt(bytes(blob))
    assert decrypt(bytes(blob), 0, CHUNK - 1)  # the chunks before it still play


def test_swapped_chunks_fail() -> None:
    blob = bytearray(encrypt(os.urandom(4 * CHUNK)))
    a, b = _chunk(bytes(blob), 0), _chunk(bytes(blob), 1)
    blob[a], blob[b] = bytes(blob[b]), bytes(blob[a])
    with pytest.raises(crypto.CryptoError, match="authentication"):
        decrypt(bytes(blob))


def test_a_file_cut_short_or_grown_is_refused() -> None:
    blob = encrypt(os.urandom(4 * CHUNK))
    for bad in (blob[: -crypto.TAG], blob[: len(blob) - CHUNK - crypto.TAG], blob + b"x"):
        with pytest.raises(crypto.CryptoError, match="header says"):
            crypto.plain_size(io.BytesIO(bad))
    with pytest.raises(crypto.CryptoError, match="cut short"):
        list(crypto.decrypt_range(io.BytesIO(blob[:-1]), KEYS, 0, 4 * CHUNK - 1))


def test_the_last_chunk_cannot_be_dropped_by_editing_the_size() -> None:
    data = os.urandom(3 * CHUNK)
    blob = bytearray(encrypt(data))
    h = crypto.read_header(io.BytesIO(bytes(blob)))
    # claim two chunks instead of three and cut the third: chunk 1 was not the last
    size_at = h.length - 16
    blob[size_at : size_at + 8] = (2 * CHUNK).to_bytes(8, "big")
    cut = bytes(blob[: h.chunk_offset(2)])
    with pytest.raises(crypto.CryptoError, match="authentication"):
        decrypt(cut)


def test_wrong_or_unknown_key_and_garbage_are_refused() -> None:
    blob = encrypt(os.urandom(200))
    with pytest.raises(crypto.CryptoError, match="authentication"):
        decrypt(blob, keys={"k1": bytes(32)})
    with pytest.raises(crypto.CryptoError, match="no key 'k1'"):
        decrypt(blob, keys={"k2": KEY})
    for garbage in (b"", b"RIFF....WAVEfmt ", b"CCBREC1\x00", b"CCBREC1\x00\x05ab"):
        with pytest.raises(crypto.CryptoError):
            crypto.plain_size(io.BytesIO(garbage))


def test_a_rotated_key_still_decrypts_old_files() -> None:
    old = encrypt(b"old audio" * 20, "2025", bytes(32))
    new = encrypt(b"new audio" * 20, "2026", KEY)
    ring = {"2025": bytes(32), "2026": KEY}
    assert decrypt(old, keys=ring) == b"old audio" * 20
    assert decrypt(new, keys=ring) == b"new audio" * 20


def test_a_source_that_changes_while_encrypted_is_refused() -> None:
    with pytest.raises(crypto.CryptoError, match="shorter"):
        crypto.encrypt_stream(io.BytesIO(b"abc"), io.BytesIO(), "k1", KEY, 10, CHUNK)
    with pytest.raises(crypto.CryptoError, match="grew"):
        crypto.encrypt_stream(io.BytesIO(b"abcdef"), io.BytesIO(), "k1", KEY, 3, CHUNK)
