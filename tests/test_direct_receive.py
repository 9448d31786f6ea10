"""The direct receive path's frame splitting (``runner.client.direct.take_data_frames``), pure:
bytes in, payloads out. It takes exactly the whole, final, unmasked text and binary frames with a
7- or 16-bit length at the start of the bytes, and stops at the first byte of anything else, so
that byte can go to websockets' parser."""

from __future__ import annotations

import struct

import pytest
from hostile_servers import close_frame, frame

from runner.client.direct import NO_LIMIT, take_data_frames


class Sink:
    """Records what the direct path hands over; ``stop_after`` messages, it asks to stop."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.got: list[tuple[str, bytes, int]] = []
        self.stop_after = stop_after

    def direct_text(self, payload: bytes, now: int) -> bool:
        self.got.append(("text", payload, now))
        return self.stop_after is not None and len(self.got) >= self.stop_after

    def direct_binary(self, payload: bytes, now: int) -> bool:
        self.got.append(("binary", payload, now))
        return self.stop_after is not None and len(self.got) >= self.stop_after


def _take(
    data: bytes, limit: int = NO_LIMIT, stop_after: int | None = None
) -> tuple[int, list[tuple[str, bytes]]]:
    sink = Sink(stop_after)
    pos = take_data_frames(data, limit, sink, 42)
    assert all(now == 42 for _, _, now in sink.got)  # the caller's time stamp, passed through
    return pos, [(kind, payload) for kind, payload, _ in sink.got]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (frame(0x1, b"hello"), [("text", b"hello")]),
        (frame(0x2, bytes(range(50))), [("binary", bytes(range(50)))]),
        (frame(0x1, b""), [("text", b"")]),
        (frame(0x2, b""), [("binary", b"")]),
        (frame(0x1, b"f" * 125), [("text", b"f" * 125)]),  # the longest 7-bit length
        (frame(0x1, b"g" * 126), [("text", b"g" * 126)]),  # the shortest 16-bit length
        (frame(0x2, b"m" * 65535), [("binary", b"m" * 65535)]),  # the longest 16-bit length
        (bytes([0x81, 126, 0, 5]) + b"short", [("text", b"short")]),  # not minimal: allowed
        (frame(0x1, b"\xff\xfe"), [("text", b"\xff\xfe")]),  # UTF-8 is the caller's to check
    ],
    ids=[
        "text",
        "binary",
        "empty-text",
        "empty-binary",
        "7-bit",
        "16-bit",
        "16-bit-max",
        "non-minimal",
        "not-utf8",
    ],
)
def test_whole_data_frames_are_taken(data: bytes, expected: list[tuple[str, bytes]]) -> None:
    """Each whole, final, unmasked data frame with a 7- or 16-bit length is handed over whole."""
    assert _take(data + data) == (2 * len(data), expected * 2)


@pytest.mark.parametrize(
    "other",
    [
        frame(0x9, b"p"),  # ping
        frame(0xA, b"p"),  # pong
        close_frame(1000, b"bye"),
        frame(0x1, b"frag", fin=False),  # the first fragment of a message
        frame(0x0, b"ment"),  # a continuation
        frame(0x1, b"masked", mask=True),
        frame(0x1, b"deflated", rsv1=True),
        bytes([0x80 | 0x20 | 0x1, 1]) + b"x",  # RSV2
        bytes([0x80 | 0x10 | 0x2, 1]) + b"x",  # RSV3
        frame(0x3, b"x"),  # a reserved opcode
        frame(0x2, b"z" * 70000),  # a 64-bit length
        bytes([0x82, 127]) + struct.pack("!Q", 5) + b"small",  # a 64-bit length for a small frame
    ],
    ids=[
        "ping",
        "pong",
        "close",
        "first-fragment",
        "continuation",
        "masked",
        "rsv1",
        "rsv2",
        "rsv3",
        "reserved-opcode",
        "64-bit",
        "64-bit-small",
    ],
)
def test_anything_else_stops_at_its_first_byte(other: bytes) -> None:
    """A control frame, a fragment, a masked frame, a reserved bit or opcode or a 64-bit length
    stops the path at its first byte, after the data frames before it; nothing after is taken."""
    before = frame(0x1, b"a") + frame(0x2, b"b" * 200)
    pos, got = _take(before + other + frame(0x1, b"after"))
    assert pos == len(before)
    assert got == [("text", b"a"), ("binary", b"b" * 200)]


def test_an_incomplete_frame_is_left_at_every_cut() -> None:
    """Cut anywhere, the bytes give exactly the frames that are whole before the cut, and the
    offset of the first byte of the incomplete one."""
    frames = [frame(0x1, b"hi"), frame(0x2, b"x" * 300), frame(0x1, b""), frame(0x1, b"y" * 126)]
    stream = b"".join(frames)
    for cut in range(len(stream) + 1):
        whole, end = 0, 0
        for f in frames:
            if end + len(f) > cut:
                break
            whole, end = whole + 1, end + len(f)
        pos, got = _take(stream[:cut])
        assert (pos, len(got)) == (end, whole), cut


@pytest.mark.parametrize("limit", [0, 10, 125, 126, 300])
def test_frames_above_the_limit_are_left(limit: int) -> None:
    """A frame of exactly ``limit`` bytes is taken; one byte more is left (for websockets' parser
    to fail with its size error)."""
    at = frame(0x2, b"x" * limit)
    above = frame(0x2, b"x" * (limit + 1))
    assert _take(at + above, limit) == (len(at), [("binary", b"x" * limit)])


def test_a_sink_asking_to_stop_ends_after_its_frame() -> None:
    """When the sink returns True (the queue is full, or the text was not UTF-8) nothing after
    that frame is taken, and the offset is just past it."""
    one = frame(0x1, b"one")
    pos, got = _take(one * 5, stop_after=2)
    assert (pos, got) == (2 * len(one), [("text", b"one")] * 2)


def test_nothing_is_taken_from_less_than_a_header() -> None:
    """Zero or one byte, or a 16-bit length cut short, gives offset 0 and no call."""
    for data in (b"", b"\x81", bytes([0x81, 126]), bytes([0x81, 126, 0])):
        assert _take(data) == (0, [])
