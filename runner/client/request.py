"""What cannot go into an HTTP upgrade request, found before connecting.

A header value with a line break (a token read from a file or a Kubernetes secret often ends in
one), a header name that is not an HTTP token, or a URL with a space or a control character
cannot be sent as written: websockets raises for some of them deep inside the open, sends others
as a broken request the server drops. Both are the open's -1 with a text that says which input is
wrong and why, never an exception, and never the value itself (header values may be
credentials). Pure functions; ``check_request`` runs once per open (a few regex matches).
"""

from __future__ import annotations

import re

from runner.client.codes import ErrorKind, LastError
from runner.client.options import ConnectOptions

__all__ = ["check_request", "url_problem"]

#: RFC 9110 5.6.2: a header name (and a subprotocol) is a token.
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+").fullmatch
#: What websockets lets through in a header value (RFC 9110 5.5: visible characters, space,
#: tab, and bytes 0x80-0xFF as obs-text).
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*").fullmatch
#: Characters that cannot stand in a request line as written: space and the controls.
_URL_BAD = re.compile(r"[\x00-\x20\x7f]").search

_CONTROL_NAMES = {"\n": "a line break (LF)", "\r": "a line break (CR)", "\t": "a tab", " ": "a space"}
_TOKEN_CHARS = "letters, digits and !#$%&'*+-.^_`|~"


def _char(c: str) -> str:
    """A character named for an error text: ``' ' (a space)``, ``U+0000``."""
    named = _CONTROL_NAMES.get(c)
    if named is not None:
        return f"{named}"
    if c.isprintable():
        return f"{c!r}"
    return f"U+{ord(c):04X}"


def _value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a header value (without quoting any of it), or None."""
    if _VALUE(value):
        return None
    if "\r" in value or "\n" in value:
        return "its value contains a line break (CR/LF)"
    for i, c in enumerate(value):
        if not _VALUE(c):
            if ord(c) < 0x20 or ord(c) == 0x7F:
                return f"its value contains a control character (U+{ord(c):04X}) at position {i}"
            return (
                f"its value contains a character an HTTP header cannot carry at position {i} "
                "(only Latin-1 text is allowed)"
            )
    return None  # pragma: no cover - the fullmatch above failed on some character


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a header name (or subprotocol), or None."""
    if _TOKEN(name):
        return None
    if not name:
        return "the name is empty"
    bad = next(c for c in name if not _TOKEN(c))
    return f"the name contains {_char(bad)}; a name may only contain {_TOKEN_CHARS}"


def check_request(options: ConnectOptions) -> LastError | None:
    """The first header, origin or subprotocol of ``options`` that cannot be sent, as the open's
    ARGUMENT error (names are shown, values never), or None. Worded ``header 'NAME' cannot be
    sent: ...``: a sensitive name followed by a colon would make the reports mask the reason."""
    for name, value in options.headers:
        problem = _name_problem(name)
        if problem is None:
            if type(value) is not str:
                problem = f"its value is a {type(value).__name__}, not text"
            else:
                problem = _value_problem(value)
        if problem is not None:
            return LastError.of(ErrorKind.ARGUMENT, f"header {name!r} cannot be sent: {problem}")
    if options.origin is not None:
        problem = _value_problem(options.origin)
        if problem is not None:
            return LastError.of(ErrorKind.ARGUMENT, f"origin cannot be sent: {problem}")
    for subprotocol in options.subprotocols:
        problem = _name_problem(subprotocol)
        if problem is not None:
            return LastError.of(ErrorKind.ARGUMENT, f"subprotocol {subprotocol!r} cannot be sent: {problem}")
    return None


def _shown(url: str) -> str:
    """``url`` for an error text, with the password of any user information masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for delimiter in "/?#":
        at = rest.find(delimiter)
        if at != -1:
            end = min(end, at)
    authority = rest[:end]
    if "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}{rest[end:]}"


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot go on the request line as written (a space or a control character
    anywhere in it: urllib would drop tabs and line breaks silently and send another path), or
    None. Non-ASCII text is fine: it is percent-encoded as an IRI. The URL is shown with its
    password masked, and positions are counted in what is shown."""
    if _URL_BAD(url) is None:
        return None
    shown = _shown(url)
    found = _URL_BAD(shown)
    if found is None:  # only in the password, which is not shown
        return f"{shown!r}: the password contains a space or a control character; percent-encode it"
    c = found.group()
    hint = "write it as %20" if c == " " else "percent-encode it or remove it"
    what = _char(c) if c in _CONTROL_NAMES else f"a control character (U+{ord(c):04X})"
    return f"{shown!r} contains {what} at character {found.start() + 1}; {hint}"
