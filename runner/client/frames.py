"""Client data frames encoded without websockets' ``Frame`` objects (RFC 6455 5.2). Pure: bytes
in, bytes out, no I/O.

The per-message send path of a load run encodes one frame per write; websockets'
``Frame.serialize`` builds a ``Frame``, a ``BytesIO`` and draws a mask key with one
``getrandom`` call per frame (6% of a round trip). Here the two header bytes of short frames are
made once, and mask keys come from a pooled ``os.urandom`` buffer.
"""

from __future__ import annotations

import os
import struct

from runner.client.compat import apply_mask

__all__ = ["MASK_POOL_BYTES", "MaskKeys", "encode_client_frame"]

#: Bytes of mask keys drawn from the OS CSPRNG at a time: one ``getrandom`` per 1,024 frames
#: instead of one per frame.
MASK_POOL_BYTES = 4096
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


class MaskKeys:
    """Client mask keys (RFC 6455 5.3: unpredictable, from a strong source) served 4 bytes at a
    time from a pooled ``os.urandom`` buffer; no key is ever handed out twice."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = MASK_POOL_BYTES

    def next(self) -> bytes:
        pos = self._pos
        if pos >= MASK_POOL_BYTES:
            self._buf = os.urandom(MASK_POOL_BYTES)
            pos = 0
        self._pos = pos + 4
        return self._buf[pos : pos + 4]


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
