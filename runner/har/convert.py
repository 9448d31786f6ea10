"""Recorded WebSocket sessions (``runner.har.reader``, ``runner.har.record``) written as a
scenario: YAML text with a comment per step giving the original time.

What it decides, so the scenario runs against the service it came from:

- one connection per session, named after its URL's last path segment; the request headers a
  server may need are kept, those the browser or the HTTP layer makes are dropped (``_DROPPED``);
  ``Sec-WebSocket-Protocol`` becomes ``subprotocols``. Sessions are replayed in the recorded
  order of their steps, interleaved when they were open at the same time (a page with two
  sockets in one room), each step where it happened;
- sent messages are ``write`` steps (JSON when they parse as an object or array, text otherwise,
  binary as base64); received ones ``read`` steps expecting what can be expected again: the JSON's
  short strings and booleans that look like no id, time, token or per-session value, the presence
  of its top-level fields, or a short text answer itself;
- a request carrying an id field (``id``, ``requestId``, ``seq`` ... at the top or one level down)
  and the later message with the same id (``5`` and ``"5"`` are one id) are a pair: the read
  matches on that id, so pushes the server interleaves are skipped. When a session has pairs, its
  other received messages are not read (their order against the answers is the server's) but
  listed as comments;
- a string of 8 characters or more that an answer gave and a later request sends back (a session
  id, a token) is captured from that answer and sent as ``{{ variable }}``;
- secrets never reach the file: ``Cookie``, ``Authorization`` and other headers secret by name,
  a URL's password and its query parameters named like a secret, subprotocols that carry a token,
  JSON fields named like a token, password or key in what the browser sent, and anything shaped
  like a JWT, become ``${WSLOAD_...}`` references (the caller prints their names); answers' fields
  named so are neither expected nor quoted. Captured values that look secret are declared under
  ``secrets:``;
- recorded text that would read as a template (``{{``) or an environment reference (``${``) is
  escaped, so the run sends what was recorded; every comment is one line, control characters
  escaped, so no recorded message can become a step;
- the recorded gaps before each write become ``sleep`` steps when ``think_scale`` > 0 (gaps under
  50 ms left out, each capped at 60 s);
- at most ``MAX_FRAMES_OUT`` messages are written (a scenario holds at most 10,000 steps); the
  rest are counted in a note.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

from runner.har.reader import Session

__all__ = ["Imported", "convert", "redact_url"]

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
#: Header names whose values are secret (the loader's rule for headers, and CSRF tokens).
_SECRET_HEADER = re.compile(
    r"^(authorization|proxy-authorization|cookie)$|token|key|secret|password|session|auth|csrf|xsrf", re.I
)
#: Field and parameter names whose values are secret: whole words (``pass``, ``pwd``, ``pin``,
#: ``sid`` ...) or parts of a name (``accessToken``, ``api_key``, ``private_key``).
_SECRET_FIELD = re.compile(
    r"token|passw|passwd|secret|api_?key|apikey|access_?key|private_?key|credential|authoriz|bearer|"
    r"session_?id|signature|cookie|(^|[_.-])(pass|pwd|pin|otp|sid|auth|sig|key|jwt|code)([_.-]|$)",
    re.I,
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_ID_FIELDS = (
    "id", "requestId", "request_id", "correlationId", "correlation_id", "seq", "msgId", "messageId",
    "ref", "rid", "cid",
)  # fmt: skip
#: Values that change per session or per run: ids, times, tokens, anything with a run of digits.
_VOLATILE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-|^\d{4}-\d{2}-\d{2}[T ]\d{2}:|^[A-Za-z0-9+/_-]{24,}={0,2}$|\d{2}", re.I
)
_VOLATILE_KEY = re.compile(r"(id|Id|ID)$|uuid|nonce|session|time|date|stamp|token|key|client|conn", re.I)
_MIN_CAPTURE = 8
_MAX_CAPTURES = 200
_MIN_GAP_S = 0.05
_MAX_GAP_S = 60.0
#: Messages written at most: with opens, closes and sleeps under the 10,000 steps of a file.
MAX_FRAMES_OUT = 4_000


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


def redact_url(url: str) -> str:
    """A URL for a comment or a message: its password and secret-looking query values as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _JWT.sub("***", url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}" if ":" in user else netloc
    query = urlencode(
        [(k, "***" if _secret_param(k, v) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return _JWT.sub("***", urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def _secret_param(name: str, value: str) -> bool:
    return bool(value) and bool(_SECRET_FIELD.search(name) or _JWT.search(value))


def _url(url: str, state: _State) -> str:
    """The connection's URL with its password and secret query values as ``${ENV}``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _escape(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            name, password = user.split(":", 1)
            netloc = f"{name}:{state.env_ref(password, 'url password')}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{k}={state.env_ref(v, k) if _secret_param(k, v) else _escape(v)}" for k, v in pairs)
    return urlunsplit((parts.scheme, netloc, _escape(parts.path), query, ""))


def _escape(text: str) -> str:
    """Recorded text as the scenario must write it to send it as recorded: ``{{`` as a literal,
    ``${`` as ``$${`` (else a template or an environment reference)."""
    if "{{" in text:
        text = text.replace("{{", "\x00")
        text = text.replace("\x00", "{{ '{{' }}")
    return text.replace("${", "$${")


def _comment(text: str, limit: int = 160) -> str:
    """Text for a ``#`` comment: one line (control characters escaped), at most ``limit``."""
    one = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _json(text: str | bytes) -> Any:
    if not isinstance(text, str) or text[:1] not in ("{", "["):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _leaves(value: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, str, Any]]:
    """(JMESPath, key, value) of every scalar inside ``value`` (at most 32 levels down)."""
    if depth > 32:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            quoted = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else json.dumps(key)
            here = f"{path}.{quoted}" if path else quoted
            if isinstance(v, dict | list):
                yield from _leaves(v, here, depth + 1)
            else:
                yield here, key, v
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]", depth + 1)


def _sent(value: Any, state: _State, reuse: dict[str, str], key: str = "") -> Any:
    """A sent JSON value as the scenario writes it: values an earlier answer gave as
    ``{{ variable }}``, secret fields and JWTs as ``${ENV}``, the rest escaped."""
    if isinstance(value, dict):
        return {k: _sent(v, state, reuse, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_sent(v, state, reuse, key) for v in value]
    if not isinstance(value, str):
        return value
    if value in reuse:
        return "{{ " + reuse[value] + " }}"
    if value and (_SECRET_FIELD.search(key) or _JWT.fullmatch(value)):
        return state.env_ref(value, key or "token")
    return _sent_text(value, state, reuse)


def _sent_text(text: str, state: _State, reuse: dict[str, str]) -> str:
    """Sent text: escaped, with JWTs as ``${ENV}`` and captured values as templates."""
    marks: dict[str, str] = {}
    for n, (given, variable) in enumerate(reuse.items()):
        if given in text:
            mark = f"\x01{n}\x01"
            text = text.replace(given, mark)
            marks[mark] = "{{ " + variable + " }}"
    secrets: dict[str, str] = {}
    for n, token in enumerate(dict.fromkeys(_JWT.findall(text))):
        mark = f"\x02{n}\x02"
        text = text.replace(token, mark)
        secrets[mark] = state.env_ref(token, "token")
    text = _escape(text)
    for mark, replacement in (*marks.items(), *secrets.items()):
        text = text.replace(mark, replacement)
    return text


def _masked(value: Any, key: str = "") -> Any:
    """A received JSON value for a comment: fields named like a secret, and JWTs, as ``***``."""
    if isinstance(value, dict):
        return {k: _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, key) for v in value]
    if isinstance(value, str) and (_SECRET_FIELD.search(key) or _JWT.search(value)):
        return "***"
    return value


def _stable(value: Any, key: str = "", captured: Collection[str] = ()) -> Any:
    """The recorded answer's fields a run can expect again: short strings and booleans that look
    like no id, time, token or per-session value, and were not captured; None: none."""
    if isinstance(value, dict):
        kept = {
            k: s
            for k, v in value.items()
            if k not in _ID_FIELDS and (s := _stable(v, str(k), captured)) is not None
        }
        return kept or None
    if isinstance(value, bool):
        return None if _SECRET_FIELD.search(key) else value
    if (
        isinstance(value, str)
        and len(value) < 64
        and not _VOLATILE.search(value)
        and value not in captured
        and not _SECRET_FIELD.search(key)
        and not _VOLATILE_KEY.search(key)
        and not _JWT.search(value)
    ):
        return _escape(value)
    return None


def _present(message: Any) -> list[str]:
    """``that`` checks that the recorded answer's top-level fields are there again (those with
    a plain name and a value): its shape, when its values cannot be expected."""
    if not isinstance(message, dict):
        return []
    return [
        f"{k} != null"
        for k, v in list(message.items())[:8]
        if v is not None
        and isinstance(k, str)
        and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)
        and k not in ("null", "true", "false")
    ]


def _id_of(message: Any) -> tuple[tuple[str, ...], str] | None:
    """A message's id field (its path: at the top, or one level down) and the id as text."""
    if not isinstance(message, dict):
        return None
    for key in _ID_FIELDS:
        value = message.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return (key,), str(value)
    for outer, inner in message.items():
        if isinstance(inner, dict):
            for key in _ID_FIELDS:
                value = inner.get(key)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    return (str(outer), key), str(value)
    return None


def _id_at(message: Any, path: tuple[str, ...]) -> str | None:
    for key in path:
        if not isinstance(message, dict):
            return None
        message = message.get(key)
    return str(message) if isinstance(message, str | int) and not isinstance(message, bool) else None


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**9, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]


#: One step (or comment) of the scenario: when it happened, and its lines.
_Event = tuple[float, int, list[str]]


def _captures(
    session: Session, parsed: list[Any], readable: Collection[int], state: _State
) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """Values an answer gave that a later request sends back: value -> variable, and per answer
    (frame index) its captures (variable -> JMESPath). Linear in the session: each sent
    message's strings (and a text message's words) are indexed by their last sending."""
    last_sent: dict[str, int] = {}
    for k, frame in enumerate(session.frames):
        if not frame.sent or not isinstance(frame.data, str):
            continue
        message = parsed[k]
        words = (
            [v for _, _, v in _leaves(message) if isinstance(v, str)]
            if message is not None
            else re.findall(r"[A-Za-z0-9_\-.~+/=:]{8,}", frame.data)
        )
        for word in words:
            last_sent[word] = k
    reuse: dict[str, str] = {}
    captures: dict[int, dict[str, str]] = {}
    for j in readable:
        message = parsed[j]
        if message is None:
            continue
        for path, key, value in _leaves(message):
            if not isinstance(value, str) or len(value) < _MIN_CAPTURE or value in reuse:
                continue
            if last_sent.get(value, -1) > j and len(reuse) < _MAX_CAPTURES:
                var = state.unique(re.sub(r"[^A-Za-z0-9_]", "_", key).lower() or "value")
                reuse[value] = var
                captures.setdefault(j, {})[var] = path
                if _SECRET_FIELD.search(key) or _VOLATILE_KEY.search(key) or _JWT.search(value):
                    state.secrets.append(var)
    return reuse, captures


def _session_steps(
    session: Session, state: _State, think_scale: float, frames: int
) -> tuple[dict[str, Any], list[_Event]]:
    """The connection spec and the steps (with their times) of one session, its first
    ``frames`` messages."""
    parts = urlsplit(session.url)
    conn = state.unique(parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.hostname or "ws")
    spec: dict[str, Any] = {"url": _url(session.url, state), "timeout": "10s"}
    headers: dict[str, str] = {}
    for name, value in session.headers:
        low = name.lower()
        if low in _DROPPED or low.startswith(_DROPPED_PREFIXES):
            continue
        if low == "origin":
            spec["origin"] = _escape(value)
        elif _SECRET_HEADER.search(low) or _JWT.search(value):
            headers[name] = state.env_ref(value, name)
        else:
            headers[name] = _escape(value)
    if headers:
        spec["headers"] = headers
    if session.subprotocols:
        spec["subprotocols"] = [
            state.env_ref(p, "subprotocol")
            if _JWT.search(p)
            or (re.search(r"bearer|token|auth", p, re.I) and re.search(r"[A-Za-z0-9_=-]{16,}", p))
            else _escape(p)
            for p in session.subprotocols
        ]
    kept = session.frames[:frames]
    left = len(session.frames) - len(kept) + session.dropped
    if left:
        state.notes.append(f"{conn}: {left} messages after the first {len(kept)} were left out")

    parsed = [_json(f.data) for f in kept]
    # Pairs: a request with an id, and the first later message answering with the same id.
    request_of: dict[int, int] = {}  # answer -> request
    waiting: dict[tuple[tuple[str, ...], str], list[int]] = {}
    for i, frame in enumerate(kept):
        if frame.sent:
            ident = _id_of(parsed[i])
            if ident is not None:
                waiting.setdefault(ident, []).append(i)
        elif waiting and isinstance(parsed[i], dict):
            for (path, value), requests in waiting.items():
                if requests and _id_at(parsed[i], path) == value:
                    request_of[i] = requests.pop(0)
                    break
    paired = bool(request_of)
    readable = [i for i, f in enumerate(kept) if not f.sent and (not paired or i in request_of)]
    reuse, captures = _captures(
        Session(session.index, session.url, (), (), session.started, kept), parsed, readable, state
    )

    events: list[_Event] = []
    started = (
        min(session.started, kept[0].at)
        if kept and session.started
        else (kept[0].at if kept else session.started)
    )
    label = _comment(f"{session.label or f'session {session.index + 1}'}: {redact_url(session.url)}")
    opening = [f"  # {label}"]
    if not session.messages_recorded:  # said in the file too, not only on the import's stderr
        opening.append(
            "  # no messages in the recording (Firefox's HAR export writes none): open and close only"
        )
    events.append((started, 0, [*opening, f"  - open: {conn}"]))
    previous = started
    order = 1
    for i, frame in enumerate(kept):
        at = f"+{frame.at - started:.3f}s ({_clock(frame.at)} UTC)"
        message = parsed[i]
        lines: list[str] = []
        if frame.sent:
            gap = frame.at - previous
            if think_scale > 0 and gap * think_scale >= _MIN_GAP_S:
                lines.append(f"  - sleep: {min(gap * think_scale, _MAX_GAP_S):.3f}s")
            lines.append(f"  # {conn}: sent {at}")
            if isinstance(frame.data, bytes):
                body: dict[str, Any] = {
                    "connection": conn,
                    "binary": {"base64": base64.b64encode(frame.data).decode()},
                }
            elif message is not None:
                body = {"connection": conn, "json": _sent(message, state, reuse)}
            else:
                body = {"connection": conn, "text": _sent_text(frame.data, state, reuse)}
            lines.append(f"  - write: {_flow(body)}")
        elif i not in readable:
            if isinstance(frame.data, bytes):
                shown = f"<{len(frame.data)} bytes>"
            else:
                shown = json.dumps(_masked(message)) if message is not None else _JWT.sub("***", frame.data)
                for given in reuse:
                    shown = shown.replace(given, "***")
            lines.append(f"  # {conn}: pushed by the server {at}, not read: {_comment(shown)}")
        else:
            lines.append(f"  # {conn}: received {at}")
            read: dict[str, Any] = {"connection": conn, "timeout": "10s"}
            if i in request_of:
                ident = _id_of(parsed[request_of[i]])
                if ident is not None:
                    path, value = ident
                    raw = _id_at(parsed[i], path)
                    literal: Any = value
                    if isinstance(_dig(parsed[i], path), int):
                        literal = int(value) if raw is not None and value.lstrip("-").isdigit() else value
                    match: Any = literal
                    for key in reversed(path):
                        match = {key: match}
                    read["match"] = {"json": match}
            lines.append(f"  - read: {_flow(read)}")
            expect: dict[str, Any] = {}
            if isinstance(frame.data, bytes):
                expect["binary"] = True
            elif message is not None:
                stable = _stable(message, captured=reuse)
                if stable:
                    expect["json"] = stable
                present = _present(message)
                if present:
                    expect["that"] = present
            elif (
                len(frame.data) <= 120
                and not _VOLATILE.search(frame.data)
                and not _JWT.search(frame.data)
                and not any(given in frame.data for given in reuse)
            ):
                expect["text"] = _escape(frame.data)
            else:
                lines.append("    # (its text looked particular to that session: not checked)")
            if expect:
                lines.append(f"    expect: {_flow(expect)}")
            if i in captures:
                lines.append(f"    capture: {_flow(captures[i])}")
        events.append((frame.at, order, lines))
        order += 1
        previous = frame.at
    ended = kept[-1].at if kept else started
    events.append((ended, order, [f"  - close: {conn}"]))
    if paired:
        pushes = sum(1 for i, f in enumerate(kept) if not f.sent and i not in readable)
        if pushes:
            state.notes.append(
                f"{conn}: {pushes} messages pushed by the server are comments, not reads (the answers "
                "are matched by their id; read pushes where your test needs them)"
            )
    return {conn: spec}, events


def _dig(message: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(message, dict):
            return None
        message = message.get(key)
    return message


def convert(sessions: list[Session], *, source: str, think_scale: float = 0.0) -> Imported:
    """The scenario for ``sessions``, their steps in the recorded order, from ``source``."""
    state = _State()
    connections: dict[str, Any] = {}
    events: list[tuple[float, int, int, list[str]]] = []
    budget = MAX_FRAMES_OUT
    for n, session in enumerate(sessions):
        take = min(budget, len(session.frames))
        budget -= take
        spec, steps = _session_steps(session, state, think_scale, take)
        connections.update(spec)
        events += [(at, n, order, lines) for at, order, lines in steps]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    silent = [s for s in sessions if not s.messages_recorded]
    if silent:
        state.notes.append(
            f"{len(silent)} of {len(sessions)} connection(s) came without their messages (the HAR has "
            "no _webSocketMessages: Firefox's export writes none, Chromium's does): the scenario "
            "opens and closes them only; record the session in Chromium, or through `wsload record`, "
            "for the conversation"
        )
    origin = _comment(redact_url(source))
    head = [
        f"# Imported by `wsload import` from {origin}: {len(sessions)} WebSocket session(s).",
        "# Review the expectations; add `load:` to make it a load test.",
    ]
    if state.env:
        names = ", ".join(sorted(state.env.values()))
        head.append(f"# Secrets from the recording are read from the environment: {names}")
    body = {"name": _escape(f"imported from {redact_url(source)}"), "connections": connections}
    text = "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    if state.secrets:
        text += f"secrets: {_flow(sorted(set(state.secrets)))}\n"
    text += "steps:\n" + "\n".join(line for event in events for line in event[3]) + "\n"
    return Imported(text, tuple(sorted(state.env.values())), tuple(state.notes))
