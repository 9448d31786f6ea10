"""Client data frames encoded without websockets (``runner.client.frames``), pure: the bytes
websockets' own serializer gives, at every length boundary, with fresh mask keys."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from runner.client.frames import (
    MASK_POOL_BYTES,
    MaskKeys,
    encode_client_frame,
    encode_control_frame,
    handshake_key,
)


def _parse(data: bytes) -> Frame:
    """Parse one masked client frame as a server would (websockets' own parser)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    gen = Frame.parse(reader.read_exact, mask=True)
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_encoded_frame_round_trips_at_every_length_boundary(opcode: Opcode, size: int) -> None:
    """7-, 16- and 64-bit payload lengths parse back to the same final, masked frame."""
    payload = bytes(i % 251 for i in range(size)) if opcode is Opcode.BINARY else b"a" * size
    data = encode_client_frame(int(opcode), payload)
    frame = _parse(data)
    assert frame.opcode is opcode
    assert frame.fin
    assert bytes(frame.data) == payload
    assert data[1] & 0x80  # the mask bit
    header = 2 + (0 if size < 126 else 2 if size < 65536 else 8)
    assert len(data) == header + 4 + size


class FixedKeys(MaskKeys):
    """Always the same mask key, to compare bytes with websockets' serializer."""

    def next(self, size: int = 4) -> bytes:
        return b"\x01\x02\x03\x04"


def test_encoded_frame_matches_websockets_serialize(monkeypatch: pytest.MonkeyPatch) -> None:
    """Byte for byte what ``Frame.serialize(mask=True)`` writes for the same mask key."""
    keys = FixedKeys()
    monkeypatch.setattr("secrets.token_bytes", lambda n: keys.next())  # websockets' key source
    for opcode in (Opcode.TEXT, Opcode.BINARY):
        for payload in (b"", b'{"seq":1}', b"x" * 300, b"y" * 70000):
            expected = Frame(opcode, payload).serialize(mask=True)
            assert encode_client_frame(int(opcode), payload, keys) == expected


def test_mask_keys_are_not_reused_across_pool_refills() -> None:
    """Each key is 4 fresh bytes; a pool refill happens every 1,024 keys."""
    keys = MaskKeys()
    seen = [keys.next() for _ in range(3 * MASK_POOL_BYTES // 4)]
    assert all(len(k) == 4 for k in seen)
    assert len(set(seen)) > len(seen) * 0.99  # random 32-bit keys: collisions are rare


@pytest.mark.parametrize("opcode", [Opcode.CLOSE, Opcode.PING, Opcode.PONG])
def test_control_frames_match_websockets_serialize(opcode: Opcode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Close, ping and pong frames, 0 to 125 bytes: byte for byte what ``Frame.serialize``
    writes for the same mask key, and what a server's parser reads back."""
    keys = FixedKeys()
    monkeypatch.setattr("secrets.token_bytes", lambda n: keys.next())
    for payload in (b"", b"\x03\xe8", b"\x03\xe8bye", b"p" * 125):
        expected = Frame(opcode, payload).serialize(mask=True)
        data = encode_control_frame(int(opcode), payload, keys)
        assert data == expected
        frame = _parse(data)
        assert frame.opcode is opcode and frame.fin and bytes(frame.data) == payload


def test_handshake_keys_are_16_fresh_bytes_each() -> None:
    """``Sec-WebSocket-Key``: base64 of 16 bytes (RFC 6455 4.1), none repeated across refills."""
    import base64

    keys = [handshake_key() for _ in range(3 * MASK_POOL_BYTES // 16)]
    assert all(len(base64.b64decode(k, validate=True)) == 16 for k in keys)
    assert len(set(keys)) == len(keys)
