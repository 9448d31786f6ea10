"""The direct receive path: whole, final, unmasked text and binary frames with a 7- or 16-bit
length, taken from the start of received bytes without websockets' generator parser (about
0.5 us per message instead of 2.5). Pure: bytes in, payloads out to a sink, no I/O.

The frames taken are the ones whose handling does not depend on any state: no extension, no
fragment, no control frame, no reserved bit. From the first byte of anything else (a control
frame, a fragment, a masked frame, a reserved bit or opcode, a 64-bit length, a frame above
the size limit, an incomplete frame) the caller hands the rest to websockets' parser, and it
only calls this where that parser would start a new frame (``compat.direct_receive_ready``):
each byte goes to exactly one of the two parsers, in stream order.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NO_LIMIT", "DirectSink", "take_data_frames"]

#: A size limit no frame reaches (``max_message_size: None``).
NO_LIMIT = 1 << 63


class DirectSink(Protocol):
    """Where the frames go: each method gets a frame's payload and the caller's time stamp and
    returns True to stop taking frames (the caller's queue is full, or the text was not UTF-8).
    An object with two methods rather than two callables: a method called on it needs no bound
    method object per chunk."""

    def direct_text(self, payload: bytes, now: int) -> bool: ...

    def direct_binary(self, payload: bytes, now: int) -> bool: ...


def take_data_frames(data: bytes, limit: int, sink: DirectSink, now: int) -> int:
    """Hand the payload of each whole data frame at the start of ``data`` (not above ``limit``
    bytes) to ``sink``, with ``now``; the offset of the first byte not taken. Stops after a
    frame whose method returns True."""
    size = len(data)
    pos = 0
    while size - pos >= 2:
        head = data[pos]
        length = data[pos + 1]
        start = pos + 2
        if length >= 126:  # 126: a 16-bit length follows; 127 (64-bit) or masked: not here
            if length != 126 or size - start < 2:
                break
            length = (data[start] << 8) | data[start + 1]
            start += 2
        end = start + length
        if end > size or length > limit:
            break
        if head == 0x81:
            stop = sink.direct_text(data[start:end], now)
        elif head == 0x82:
            stop = sink.direct_binary(data[start:end], now)
        else:
            break
        pos = end
        if stop:
            break
    return pos
