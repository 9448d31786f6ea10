"""Recorded WebSocket sessions (``runner.har.reader``) written as a scenario: YAML text with a
comment per step giving the original time.

What it decides, so the scenario runs against the service it came from:

- one connection per session, named after its URL's last path segment; the request headers a
  server may need are kept, those the browser or the HTTP layer makes are dropped (``_DROPPED``);
  ``Sec-WebSocket-Protocol`` becomes ``subprotocols``;
- sent messages are ``write`` steps (JSON when they parse as an object or array, text otherwise,
  binary as base64); received ones ``read`` steps expecting the recorded JSON's stable fields
  (strings and booleans shorter than 64 characters that look like no id, time or token);
- a request carrying an id field (``id``, ``requestId``, ``seq`` ...) and the later message with
  the same id are a pair: the read matches on that id, so pushes the server interleaves are
  skipped. When a session has pairs, its other received messages are not read (their order
  against the answers is the server's, not the scenario's) but listed as comments;
- a string of 8 characters or more that an answer gave and a later request sends back (a session
  id, a token) is captured from that answer and sent as ``{{ variable }}``;
- secrets never reach the file: ``Cookie``, ``Authorization`` and other headers secret by name,
  JSON fields named like a token, password or key in what the browser sent, and anything shaped
  like a JWT, become ``${WSLOAD_...}`` references; the caller prints their names. Captured values
  that look secret are declared under ``secrets:``;
- the recorded gaps before each write become ``sleep`` steps when ``think_scale`` > 0 (gaps under
  50 ms left out, each capped at 60 s).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import yaml

from runner.har.reader import Session

__all__ = ["Imported", "convert"]

#: Request headers a scenario does not send itself: made by the browser, the HTTP layer or the
#: WebSocket handshake (wsload makes its own), or describing the browser.
_DROPPED = frozenset(
    {
        "host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version",
        "sec-websocket-extensions", "sec-websocket-protocol", "accept-encoding", "accept-language",
        "cache-control", "pragma", "user-agent", "content-length", "accept",
    }
)  # fmt: skip
_DROPPED_PREFIXES = ("sec-fetch-", "sec-ch-", ":")
#: Header names whose values are secret (as in ``runner.loader``'s rule for headers).
_SECRET_HEADER = re.compile(
    r"^(authorization|proxy-authorization|cookie)$|token|key|secret|password|session|auth", re.I
)
_SECRET_FIELD = re.compile(r"token|password|passwd|secret|api_?key|apikey|credential|authorization", re.I)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_ID_FIELDS = (
    "id", "requestId", "request_id", "correlationId", "correlation_id", "seq", "msgId", "messageId",
    "ref", "rid", "cid",
)  # fmt: skip
_VOLATILE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-|^\d{4}-\d{2}-\d{2}[T ]\d{2}:|^[A-Za-z0-9+/_-]{24,}={0,2}$", re.I
)
_MIN_CAPTURE = 8
_MIN_GAP_S = 0.05
_MAX_GAP_S = 60.0


@dataclass(frozen=True, slots=True)
class Imported:
    """The scenario's text, the environment variables it needs (secrets, never their values),
    and notes for the user (pushes not read, frames left out)."""

    text: str
    env: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(slots=True)
class _State:
    """What the conversion collects across sessions."""

    env: dict[str, str] = field(default_factory=dict)  # secret value -> variable name
    secrets: list[str] = field(default_factory=list)  # captured variables that are secret
    notes: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def env_ref(self, value: str, hint: str) -> str:
        name = self.env.get(value)
        if name is None:
            base = "WSLOAD_" + (re.sub(r"[^A-Za-z0-9]+", "_", hint).strip("_").upper() or "SECRET")
            name, n = base, 1
            while name in self.env.values():
                n += 1
                name = f"{base}_{n}"
            self.env[value] = name
        return "${" + name + "}"

    def unique(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_") or "ws"
        if base[0].isdigit():
            base = "ws_" + base
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}{n}"
        self.names.add(name)
        return name


def _json(text: str | bytes) -> Any:
    if not isinstance(text, str) or text[:1] not in ("{", "["):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(JMESPath, key, value) of every scalar inside ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            quoted = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else json.dumps(key)
            yield from (
                _leaves(v, f"{path}.{quoted}" if path else quoted)
                if isinstance(v, dict | list)
                else [(f"{path}.{quoted}" if path else quoted, key, v)]
            )
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")


def _hide_secrets(value: Any, state: _State, key: str = "") -> Any:
    """A sent JSON value with its secret fields and JWT-shaped strings as ``${ENV}``."""
    if isinstance(value, dict):
        return {k: _hide_secrets(v, state, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_secrets(v, state, key) for v in value]
    if isinstance(value, str) and value.startswith("{{ "):
        return value  # a value captured from an answer (``_render_sent``), not the recorded one
    if isinstance(value, str) and value and (_SECRET_FIELD.search(key) or _JWT.fullmatch(value)):
        return state.env_ref(value, key or "token")
    if isinstance(value, str) and _JWT.search(value):
        return _JWT.sub(lambda m: state.env_ref(m.group(0), "token"), value)
    return value


def _masked(value: Any, key: str = "") -> Any:
    """A received JSON value for a comment: fields named like a secret shown as ``***``."""
    if isinstance(value, dict):
        return {k: _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, key) for v in value]
    return "***" if isinstance(value, str) and _SECRET_FIELD.search(key) else value


def _stable(value: Any, key: str = "", captured: Collection[str] = ()) -> Any:
    """The recorded answer's fields a run can expect again: short strings and booleans that look
    like no id, time or token, and were not captured (they change per session); None: none."""
    if isinstance(value, dict):
        kept = {
            k: s
            for k, v in value.items()
            if k not in _ID_FIELDS and (s := _stable(v, str(k), captured)) is not None
        }
        return kept or None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) < 64 and not _VOLATILE.search(value) and value not in captured:
        if (
            _SECRET_FIELD.search(key)
            or _JWT.search(value)
            or re.search(r"session|time|date|stamp", key, re.I)
        ):
            return None
        return value
    return None


def _id_of(message: Any) -> tuple[str, Any] | None:
    if isinstance(message, dict):
        for key in _ID_FIELDS:
            value = message.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return key, value
    return None


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**9, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]


def _render_sent(value: Any, reuse: dict[str, str]) -> Any:
    """A sent JSON value with the values an earlier answer gave as ``{{ variable }}``."""
    if isinstance(value, dict):
        return {k: _render_sent(v, reuse) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_sent(v, reuse) for v in value]
    if isinstance(value, str):
        for given, variable in reuse.items():
            value = value.replace(given, "{{ " + variable + " }}")
    return value


def _session_steps(session: Session, state: _State, think_scale: float) -> tuple[dict[str, Any], list[str]]:
    """The connection spec and the step lines (YAML, indented for ``steps:``) of one session."""
    parts = urlsplit(session.url)
    conn = state.unique(parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.hostname or "ws")
    spec: dict[str, Any] = {"url": session.url, "timeout": "10s"}
    headers: dict[str, str] = {}
    for name, value in session.headers:
        low = name.lower()
        if low in _DROPPED or low.startswith(_DROPPED_PREFIXES):
            continue
        if low == "origin":
            spec["origin"] = value
        elif _SECRET_HEADER.search(low):
            headers[name] = state.env_ref(value, name)
        else:
            headers[name] = value
    if headers:
        spec["headers"] = headers
    if session.subprotocols:
        spec["subprotocols"] = list(session.subprotocols)
    if session.dropped:
        state.notes.append(
            f"{conn}: {session.dropped} messages after the first {len(session.frames)} were left out"
        )

    parsed = [_json(f.data) for f in session.frames]
    # Pairs: a request with an id, and the first later message answering with the same id.
    answer_of: dict[int, int] = {}
    answered: set[int] = set()
    for i, frame in enumerate(session.frames):
        ident = _id_of(parsed[i]) if frame.sent else None
        if ident is None:
            continue
        key, value = ident
        for j in range(i + 1, len(session.frames)):
            other = parsed[j]
            if (
                not session.frames[j].sent
                and j not in answered
                and isinstance(other, dict)
                and other.get(key) == value
            ):
                answer_of[i] = j
                answered.add(j)
                break
    paired = bool(answer_of)
    request_of = {j: i for i, j in answer_of.items()}

    # Captures: a string an answer gave (8+ characters) that a later request sends back.
    reuse: dict[str, str] = {}  # value -> variable
    captures: dict[int, dict[str, str]] = {}  # frame index of the answer -> {variable: path}
    for j, message in enumerate(parsed):
        if session.frames[j].sent or (paired and j not in request_of) or message is None:
            continue
        for path, key, value in _leaves(message):
            if not isinstance(value, str) or len(value) < _MIN_CAPTURE or value in reuse:
                continue
            later = any(
                session.frames[k].sent
                and isinstance(session.frames[k].data, str)
                and value in session.frames[k].data
                for k in range(j + 1, len(session.frames))
            )
            if later:
                var = state.unique(re.sub(r"[^A-Za-z0-9_]", "_", key).lower() or "value")
                reuse[value] = var
                captures.setdefault(j, {})[var] = path
                if _SECRET_FIELD.search(key) or re.search(r"session", key, re.I) or _JWT.search(value):
                    state.secrets.append(var)

    lines = [f"  # {session.label or f'session {session.index + 1}'}: {_redact(session.url)}"]
    lines.append(f"  - open: {conn}")
    previous = session.started
    for i, frame in enumerate(session.frames):
        at = f"+{frame.at - session.started:.3f}s ({_clock(frame.at)} UTC)"
        message = parsed[i]
        if frame.sent:
            gap = frame.at - previous
            if think_scale > 0 and gap * think_scale >= _MIN_GAP_S:
                lines.append(f"  - sleep: {min(gap * think_scale, _MAX_GAP_S):.3f}s")
            lines.append(f"  # sent {at}")
            if isinstance(frame.data, bytes):
                body = {"connection": conn, "binary": {"base64": base64.b64encode(frame.data).decode()}}
            elif message is not None:
                body = {"connection": conn, "json": _hide_secrets(_render_sent(message, reuse), state)}
            else:
                body = {"connection": conn, "text": _hide_secrets(_render_sent(frame.data, reuse), state)}
            lines.append(f"  - write: {_flow(body)}")
        elif paired and i not in request_of:
            if isinstance(frame.data, bytes):
                shown = f"<{len(frame.data)} bytes>"
            else:
                shown = json.dumps(_masked(message)) if message is not None else frame.data
                for given in reuse:
                    shown = shown.replace(given, "***")
            lines.append(f"  # pushed by the server {at}, not read: {_redact(shown)[:160]}")
        else:
            lines.append(f"  # received {at}")
            read: dict[str, Any] = {"connection": conn, "timeout": "10s"}
            if i in request_of:
                id_key, id_value = _id_of(parsed[request_of[i]]) or ("id", None)
                read["match"] = {"json": {id_key: id_value}}
            lines.append(f"  - read: {_flow(read)}")
            expect = _stable(message, captured=reuse) if message is not None else None
            if isinstance(frame.data, bytes):
                lines.append("    expect: {binary: true}")
            elif expect:
                lines.append(f"    expect: {_flow({'json': expect})}")
            if i in captures:
                lines.append(f"    capture: {_flow(captures[i])}")
        previous = frame.at
    lines.append(f"  - close: {conn}")
    if paired:
        pushes = sum(1 for i, f in enumerate(session.frames) if not f.sent and i not in request_of)
        if pushes:
            state.notes.append(
                f"{conn}: {pushes} messages pushed by the server are comments, not reads (the answers "
                "are matched by their id; read pushes where your test needs them)"
            )
    return {conn: spec}, lines


def _redact(text: str) -> str:
    """A text for a comment: JWT-shaped strings and URL passwords left out."""
    text = _JWT.sub("***", text)
    return re.sub(r"(://[^/:@]+:)[^@/]+@", r"\1***@", text)


def convert(sessions: list[Session], *, source: str, think_scale: float = 0.0) -> Imported:
    """The scenario for ``sessions`` (in the recording's order), from the HAR named ``source``."""
    state = _State()
    connections: dict[str, Any] = {}
    steps: list[str] = []
    for session in sessions:
        spec, lines = _session_steps(session, state, think_scale)
        connections.update(spec)
        steps += lines
    head = [
        f"# Imported by `wsload import` from {source}: {len(sessions)} WebSocket session(s).",
        "# Review the expectations; add `load:` to make it a load test.",
    ]
    if state.env:
        names = ", ".join(sorted(state.env.values()))
        head.append(f"# Secrets from the recording are read from the environment: {names}")
    body = {"name": f"imported from {source}", "connections": connections}
    text = "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    if state.secrets:
        text += f"secrets: {_flow(sorted(set(state.secrets)))}\n"
    text += "steps:\n" + "\n".join(steps) + "\n"
    return Imported(text, tuple(sorted(state.env.values())), tuple(state.notes))
