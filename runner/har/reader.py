"""The WebSocket sessions of a HAR file, read as a stream.

A HAR (HTTP Archive) from Chromium's DevTools ("Save all as HAR") or from Playwright's recorder
holds one entry per request; a WebSocket's entry has ``_resourceType: "websocket"`` (or a 101
answer, or an ``Upgrade: websocket`` request) and its frames in ``_webSocketMessages``: ``type``
(send, receive), ``time`` (since the epoch: seconds from DevTools, milliseconds from
Playwright; told apart by size), ``opcode`` (1 text, 2 binary with base64 ``data``) and ``data``.
A HAR without that field (Firefox's export has no frames) still gives the connection.

Entries are parsed one at a time (``ijson``, C-accelerated): a HAR of a long browsing session
runs to hundreds of megabytes of page content, and only its WebSocket entries matter. Memory is
bounded by the largest single entry, not the file.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ijson  # type: ignore[import-untyped]

from runner.errors import ExitCode, WsloadError

__all__ = ["Frame", "HarError", "Session", "read_sessions"]

#: Frames kept per connection: a recording of hours of a chatty feed is not a scenario.
MAX_FRAMES = 10_000


class HarError(WsloadError):
    """A file that is not a HAR, or holds no WebSocket session to turn into a scenario."""

    exit_code = ExitCode.INVALID


@dataclass(frozen=True, slots=True)
class Frame:
    """One message of a session: ``sent`` by the browser or received; ``at`` seconds since the
    epoch; text (``str``) or binary (``bytes``)."""

    sent: bool
    at: float
    data: str | bytes


@dataclass(frozen=True, slots=True)
class Session:
    """One WebSocket connection of the recording: the ``index`` of its HAR entry, its URL (ws://
    or wss://), request headers in order, the subprotocols offered, when it started, its frames
    in order, and how many frames were left out beyond ``MAX_FRAMES``."""

    index: int
    url: str
    headers: tuple[tuple[str, str], ...]
    subprotocols: tuple[str, ...]
    started: float
    frames: tuple[Frame, ...]
    dropped: int = 0
    label: str = ""  # where it came from, for the scenario's comment ("HAR entry 3")
    #: Whether the entry carried ``_webSocketMessages`` at all: Firefox's HAR export (ESR 153 read)
    #: writes a WebSocket's handshake (101) and none of its messages; Chromium's writes them.
    messages_recorded: bool = True


def _seconds(value: Any) -> float:
    t = float(value)
    return t / 1000.0 if t > 1e11 else t  # milliseconds (Playwright) or seconds (DevTools)


def _is_websocket(entry: dict[str, Any]) -> bool:
    if entry.get("_resourceType") == "websocket" or "_webSocketMessages" in entry:
        return True
    request = entry.get("request")
    headers = request.get("headers") if isinstance(request, dict) else None
    if not isinstance(headers, list):
        return False  # (not a WebSocket's, whatever else is wrong with it)
    return any(
        isinstance(h, dict)
        and str(h.get("name", "")).lower() == "upgrade"
        and str(h.get("value", "")).lower() == "websocket"
        for h in headers
    )


def _ws_url(url: str) -> str:
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if url.startswith(http):
            return ws + url[len(http) :]
    return url


def _frame(raw: Any, where: str) -> Frame | None:
    """One ``_webSocketMessages`` item; control frames (ping, pong, close) are left out."""
    if not isinstance(raw, dict) or raw.get("type") not in ("send", "receive"):
        raise HarError(f"{where}: a message needs type 'send' or 'receive'")
    opcode = raw.get("opcode", 1)
    if isinstance(opcode, bool) or not isinstance(opcode, int | float):
        raise HarError(f"{where}: a message's opcode must be a number (1 text, 2 binary)")
    if opcode not in (1, 2):
        return None
    data = raw.get("data", "")
    if not isinstance(data, str):
        raise HarError(f"{where}: a message's data must be text")
    payload: str | bytes = data
    if opcode == 2:
        try:
            payload = base64.b64decode(data, validate=True)
        except binascii.Error:
            raise HarError(f"{where}: a binary message's data is not base64") from None
    try:
        at = _seconds(raw.get("time", 0))
    except (TypeError, ValueError):
        raise HarError(f"{where}: a message's time is not a number") from None
    if not 0 <= at < 4_102_444_800:  # (NaN fails this too) before 2100, in seconds or milliseconds
        raise HarError(f"{where}: a message's time ({raw.get('time')!r}) is no time since the epoch")
    return Frame(raw["type"] == "send", at, payload)


def _session(index: int, entry: dict[str, Any], name: str) -> Session:
    where = f"{name}: entry {index}"
    request = entry.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("url"), str):
        raise HarError(f"{where}: a WebSocket entry without request.url")
    raw_headers = request.get("headers") or []
    if not isinstance(raw_headers, list):
        raise HarError(f"{where}: request.headers must be a list")
    headers = tuple(
        (str(h["name"]), str(h.get("value", ""))) for h in raw_headers if isinstance(h, dict) and "name" in h
    )
    protocols = next((v for n, v in headers if n.lower() == "sec-websocket-protocol"), "")
    frames: list[Frame] = []
    dropped = 0
    messages = entry.get("_webSocketMessages") or []
    if not isinstance(messages, list):
        raise HarError(f"{where}: _webSocketMessages must be a list")
    for j, raw in enumerate(messages):
        frame = _frame(raw, f"{where}, message {j}")
        if frame is None:
            continue
        if len(frames) < MAX_FRAMES:
            frames.append(frame)
        else:
            dropped += 1
    frames.sort(key=lambda f: f.at)  # (stable: frames of one instant keep their order)
    return Session(
        index=index,
        url=_ws_url(request["url"]),
        headers=headers,
        subprotocols=tuple(p.strip() for p in protocols.split(",") if p.strip()),
        started=_opened(entry.get("startedDateTime"), frames),
        frames=tuple(frames),
        dropped=dropped,
        label=f"HAR entry {index + 1}",
        messages_recorded="_webSocketMessages" in entry,
    )


#: Nesting deeper than this inside one entry is refused: ijson's own item builder keeps a path
#: per level, so a 200 KB file of 100,000 brackets took 24 GB before the kernel killed it.
MAX_DEPTH = 200


def _opened(when: Any, frames: list[Frame]) -> float:
    """When the connection opened: the entry's ``startedDateTime`` (ISO 8601), else its first
    message (a session opened before another's message it received must open before it)."""
    first = frames[0].at if frames else 0.0
    if isinstance(when, str):
        try:
            at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return first
        return min(at, first) if frames else at
    return first


def _entries(path: Path) -> Iterator[Any]:
    """``log.entries``' items, one at a time, built from ijson's events (no per-level path)."""
    try:
        with path.open("rb") as f:
            if f.read(3) != b"\xef\xbb\xbf":  # a byte-order mark, as some tools write
                f.seek(0)
            stack: list[tuple[str, str | None]] = []  # open containers: (map|array, key in parent)
            key: str | None = None
            builder: Any = None
            depth = 0  # of the entry being built
            for event, value in ijson.basic_parse(f, use_float=True):
                if builder is not None:
                    builder.event(event, value)
                    if event in ("start_map", "start_array"):
                        depth += 1
                        if depth > MAX_DEPTH:
                            raise HarError(f"{path}: an entry nests more than {MAX_DEPTH} levels deep")
                    elif event in ("end_map", "end_array"):
                        depth -= 1
                        if depth == 0:
                            yield builder.value
                            builder = None
                    continue
                in_entries = stack == [("map", None), ("map", "log"), ("array", "entries")]
                if event == "map_key":
                    key = value
                elif event in ("start_map", "start_array"):
                    if in_entries:
                        builder, depth = ijson.ObjectBuilder(), 1
                        builder.event(event, value)
                    else:
                        parent_is_map = bool(stack) and stack[-1][0] == "map"
                        stack.append(
                            ("map" if event == "start_map" else "array", key if parent_is_map else None)
                        )
                    key = None
                elif event in ("end_map", "end_array"):
                    stack.pop()
                elif in_entries:
                    yield value  # a scalar where an entry should be (refused by the caller)
    except ijson.JSONError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "not JSON"
        raise HarError(f"{path}: not a HAR file (not JSON: {first[:100]})") from None
    except UnicodeDecodeError:
        raise HarError(f"{path}: not a HAR file (not UTF-8 JSON)") from None


def read_sessions(path: Path, url_filter: str | None = None) -> list[Session]:
    """The WebSocket sessions of the HAR at ``path`` (those whose URL contains ``url_filter``)."""
    if path.is_dir():
        raise HarError(f"{path}: is a directory, not a HAR file")
    if not path.is_file():
        raise HarError(f"{path}: no such file")
    sessions: list[Session] = []
    entries = skipped = 0
    for index, entry in enumerate(_entries(path)):
        entries += 1
        if not isinstance(entry, dict):
            raise HarError(f"{path}: entry {index} is not an object")
        try:
            if not _is_websocket(entry):
                continue
            session = _session(index, entry, str(path))
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
            raise HarError(f"{path}: entry {index}: a malformed WebSocket entry ({exc})") from None
        if url_filter and url_filter not in session.url:
            skipped += 1
            continue
        sessions.append(session)
    if not entries:
        raise HarError(f"{path}: not a HAR file, or one without entries (expected log.entries)")
    if not sessions:
        why = (
            f"none of its WebSocket sessions' URLs contains {url_filter!r} ({skipped} skipped)"
            if skipped
            else f"it holds {entries} requests and no WebSocket session"
        )
        raise HarError(f"{path}: nothing to import: {why}")
    return sessions
