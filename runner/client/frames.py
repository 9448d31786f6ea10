"""Client frames (data and control) encoded without websockets' ``Frame`` objects (RFC 6455 5.2),
and the opening handshake's key. Pure: bytes in, bytes out, no I/O.

The per-message send path of a load run encodes one frame per write; websockets'
``Frame.serialize`` builds a ``Frame``, a ``BytesIO`` and draws a mask key with one
``getrandom`` call per frame (6% of a round trip). Here the two header bytes of short frames are
made once, and mask keys come from a pooled ``os.urandom`` buffer.
"""

from __future__ import annotations

import os
import struct
from binascii import b2a_base64

try:  # websockets' C helper; the same pure-Python fallback websockets itself uses otherwise
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the wheel ships the extension
    from websockets.utils import apply_mask

__all__ = ["MASK_POOL_BYTES", "MaskKeys", "encode_client_frame", "encode_control_frame", "handshake_key"]

#: Bytes of mask keys drawn from the OS CSPRNG at a time: one ``getrandom`` per 1,024 frames
#: instead of one per frame.
MASK_POOL_BYTES = 4096
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


class MaskKeys:
    """Client mask keys (RFC 6455 5.3: unpredictable, from a strong source) served 4 bytes at a
    time from a pooled ``os.urandom`` buffer, and the opening handshake's keys 16 at a time; no
    byte is ever handed out twice."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = MASK_POOL_BYTES

    def next(self, size: int = 4) -> bytes:
        """The next ``size`` bytes (4: a mask key)."""
        pos = self._pos
        if pos + size > MASK_POOL_BYTES:
            self._buf = os.urandom(MASK_POOL_BYTES)
            pos = 0
        self._pos = pos + size
        return self._buf[pos : pos + size]


_MASK_KEYS = MaskKeys()

#: The two header bytes of a masked final frame with a 7-bit length, per opcode (text 1,
#: binary 2) and length: made once instead of a ``bytes`` per message.
_SHORT_HEADS: dict[int, tuple[bytes, ...]] = {
    op: tuple(bytes((0x80 | op, 0x80 | n)) for n in range(126)) for op in (1, 2)
}


def encode_client_frame(opcode: int, payload: bytes, keys: MaskKeys = _MASK_KEYS) -> bytes:
    """One masked, final, extension-less data frame (``opcode`` 1 text or 2 binary): the bytes
    websockets' ``Frame.serialize(mask=True)`` gives for the same mask key. ``keys`` is the
    process's pool unless a caller (a test) brings its own."""
    length = len(payload)
    mask = keys.next()
    if length < 126:
        head = _SHORT_HEADS[opcode][length]
    elif length < 65536:
        head = _PACK_16(0x80 | opcode, 0x80 | 126, length)
    else:
        head = _PACK_64(0x80 | opcode, 0x80 | 127, length)
    return b"".join((head, mask, apply_mask(payload, mask)))


def encode_control_frame(
    opcode: int, payload: bytes | bytearray | memoryview, keys: MaskKeys = _MASK_KEYS
) -> bytes:
    """One masked control frame (close 8, ping 9, pong 10; final, at most 125 bytes of payload,
    as websockets' ``Frame.check`` has made sure): what ``Frame.serialize(mask=True)`` gives
    for the same mask key, in a fifth of the time (3.9 us for a close frame, measured)."""
    mask = keys.next()
    return b"".join((bytes((0x80 | opcode, 0x80 | len(payload))), mask, apply_mask(payload, mask)))


def handshake_key(keys: MaskKeys = _MASK_KEYS) -> str:
    """A ``Sec-WebSocket-Key`` (RFC 6455 4.1: 16 random bytes, base64): websockets'
    ``generate_key`` with the bytes from the pool instead of a ``getrandom`` call per open."""
    return b2a_base64(keys.next(16), newline=False).decode()  # ``b64encode``, one frame less
