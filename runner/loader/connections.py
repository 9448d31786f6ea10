"""A scenario's ``connections:`` (the options of ``webSocketOpen()``) and its target, checked as
the client will use them: a URL or target that passes here cannot fail to parse at run time,
secret headers are named and kept as ``Secret``, and a key file is read once, at load."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from runner.errors import UsageError
from runner.loader.document import Document
from runner.loader.secrets_scan import secret_header_names
from runner.scenario import model as m
from runner.scenario.source import Path
from runner.scenario.validation import closest

__all__ = ["check_target", "connection_spec", "target_problem", "url_problem"]


def connection_spec(
    doc: Document, name: str, spec: dict[str, Any], path: Path, target: str | None
) -> m.ConnectionSpec:
    """One connection's options; ``target`` (the file's or ``--target``) is what a relative URL
    is relative to."""
    url_text = spec["url"]
    url = doc.template_in(url_text, (*path, "url"), doc.known | doc.all_captures)
    _check_url(doc, url_text, (*path, "url"), target)
    secret_headers = _secret_headers(doc, spec, path)
    headers = _headers(doc, spec, path, secret_headers)
    ignore = _ignore_ssl_errors(doc, spec, path)
    ssl_config = (
        _client_certificate(doc, spec["sslConfig"], (*path, "sslConfig")) if "sslConfig" in spec else None
    )
    ca = doc.pem(spec["caCertificates"], (*path, "caCertificates")) if "caCertificates" in spec else None
    max_size: int | None = 1 << 20
    if "maxMessageSize" in spec:
        raw = spec["maxMessageSize"]
        max_size = None if raw is None else doc.size(raw, (*path, "maxMessageSize"))
    return m.ConnectionSpec(
        name=name,
        url=url,
        location=doc.location(path),
        headers=headers,
        timeout_s=doc.duration(spec["timeout"], (*path, "timeout")) if "timeout" in spec else None,
        ignore_ssl_errors=ignore,
        ssl_config=ssl_config,
        ca_certificates=ca,
        subprotocols=tuple(spec.get("subprotocols") or ()),
        origin=spec.get("origin"),
        compression=bool(spec.get("compression", False)),
        max_message_size=max_size,
        source_address=spec.get("sourceAddress"),
        secret_headers=frozenset(secret_headers),
    )


def _headers(
    doc: Document, spec: dict[str, Any], path: Path, secret_headers: set[str]
) -> tuple[tuple[str, Any], ...]:
    """The headers as templates; a secret header without variables is a ``Secret`` literal."""
    headers: list[tuple[str, Any]] = []
    for hname, hvalue in (spec.get("headers") or {}).items():
        text = hvalue if isinstance(hvalue, str) else json.dumps(hvalue)
        secret = hname.lower() in secret_headers
        t = doc.template_in(text, (*path, "headers", hname), doc.known | doc.all_captures)
        headers.append((hname, m.Secret(text) if secret and t.is_static else t))
    return tuple(headers)


def _secret_headers(doc: Document, spec: dict[str, Any], path: Path) -> set[str]:
    """The connection's secret headers (lower case); each ``secretHeaders`` entry must name
    one of its headers."""
    declared = [str(n) for n in spec.get("headers") or {}]
    lower = {n.lower() for n in declared}
    for i, name in enumerate(spec.get("secretHeaders") or []):
        if name.lower() in lower:
            continue
        hint = closest(name, declared)
        if hint:
            extra = f", did you mean '{hint}'?"
        else:
            extra = f" (headers: {', '.join(declared)})" if declared else "; it has no headers"
        doc.problem((*path, "secretHeaders", i), f"'{name}' is not a header of this connection{extra}")
    return secret_header_names(spec)


def _ignore_ssl_errors(doc: Document, spec: dict[str, Any], path: Path) -> Any:
    """``ignoreSslErrors``: None (verify), the errors listed, or ``ALL_SSL_ERRORS``."""
    if "ignoreSslErrors" not in spec:
        return None
    value = spec["ignoreSslErrors"]
    if isinstance(value, list):
        return frozenset(value) if value else m.ALL_SSL_ERRORS
    if value is False:
        # The manual's rule (any non-list value ignores all) would turn `false` into
        # "ignore everything": refuse the trap instead of guessing either way.
        doc.problem(
            (*path, "ignoreSslErrors"),
            "false would ignore every certificate error (in webSocketOpen() any value that is "
            "not a list ignores all); leave ignoreSslErrors out to verify certificates",
        )
        return None
    return m.ALL_SSL_ERRORS


def _client_certificate(doc: Document, cfg: dict[str, Any], path: Path) -> m.ClientCertificate:
    """``sslConfig``: the client's certificate and its private key (a secret)."""
    cert = doc.pem(cfg["localCertificate"], (*path, "localCertificate"))
    key = doc.pem(cfg["privateKey"]["key"], (*path, "privateKey", "key"), secret=True)
    return m.ClientCertificate(cert, m.Secret(key), cfg["privateKey"]["algorithm"])


def _check_url(doc: Document, url: str, path: Path, target: str | None) -> None:
    """A connection's URL: ws:// or wss://, or a path relative to ``target``. A URL with
    templates is checked when it is opened, once its variables have values."""
    if url.startswith("{{"):
        return  # the whole URL comes from a variable
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme in ("http", "https"):
            doc.problem(path, f"'{url}' is an {scheme}:// URL; use ws:// or wss:// (e.g. 'ws{url[4:]}')")
        elif scheme not in ("ws", "wss"):
            doc.problem(path, f"unsupported scheme '{scheme}://'; use ws:// or wss://")
        elif "{{" not in url and (problem := url_problem(url)) is not None:
            doc.problem(path, problem)
    elif target is None:
        doc.problem(
            path,
            f"relative url '{url}' needs a target: set 'target' (or pass --target) or give a ws:// URL",
        )
    elif not url.startswith("/"):
        doc.problem(path, f"relative url '{url}' must start with '/' (or be a ws:// or wss:// URL)")
    elif "{{" not in url and (bad := _unsafe_character(url)) is not None:
        doc.problem(path, bad)


def check_target(doc: Document, target: str, path: Path) -> None:
    """The scenario's target at ``path``; ``()`` is ``--target``, the command line's mistake
    (``UsageError``), not the file's."""
    problem = target_problem(target)
    if problem is None:
        return
    if not path:
        raise UsageError(f"command line: --target: {problem}")
    doc.problem(path, problem)


def target_problem(target: str) -> str | None:
    """What is wrong with a ``target`` (the file's or ``--target``), or None when it is usable:
    ``embedded``, ``embedded-tls`` or an absolute ws:// or wss:// URL."""
    if target in ("embedded", "embedded-tls"):
        return None
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme in ("http", "https"):
        return f"target '{target}' uses {scheme}://; use ws:// or wss:// (e.g. 'ws{target[4:]}')"
    if scheme not in ("ws", "wss"):
        return f"target '{target}' must be a ws:// or wss:// URL, 'embedded' or 'embedded-tls'"
    problem = url_problem(target)
    return None if problem is None else f"not a valid URL: {problem}"


def url_problem(url: str) -> str | None:
    """What is wrong with an absolute ws:// or wss:// URL, or None: parsed as the client will parse
    it when it opens (``urllib``, then ``websockets``), so a URL that passes cannot fail to parse
    at run time. The URL itself is not repeated: it may hold a password or an ``${ENV}`` value."""
    bad = _unsafe_character(url)
    if bad is not None:
        return bad
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        if "Invalid IPv6 URL" in str(exc):
            return "the host has an unclosed '[' or a stray ']' (an IPv6 address is written [::1])"
        return f"the host is not valid: {exc}"  # e.g. 'zz' does not appear to be an IPv6 address
    host_port = parts.netloc.rpartition("@")[2]
    port_text = host_port.rpartition("]")[2] if host_port.startswith("[") else host_port
    if port_text.endswith(":"):  # 'ws://host:' (an empty variable in a shell): not port 80
        return "the port after ':' is empty (give ws://HOST:PORT, or no ':' for the default port)"
    port_text = port_text.partition(":")[2] if ":" in port_text else ""
    if port_text and not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        return f"port '{port_text[:20]}' is not a number from 1 to 65535"
    if not parts.hostname:
        return "has no host (expected ws://HOST[:PORT]/PATH)"
    try:
        parse_uri(url)
    except InvalidURI as exc:
        return f"not a valid WebSocket URL: {exc.msg}"
    except ValueError as exc:
        return f"not a valid WebSocket URL: {exc}"
    return None


def _unsafe_character(url: str) -> str | None:
    """A space or control character in a URL: it cannot be sent in the HTTP request line."""
    for index, char in enumerate(url):
        if char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F:
            what = "a space" if char == " " else f"the character {char!r}"
            return f"contains {what} at position {index + 1}; percent-encode it (%20 for a space)"
    return None
