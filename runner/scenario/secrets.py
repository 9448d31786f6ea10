"""Secret values, registered when they are made and masked in every text that leaves wsload.

What is secret: the value of every sensitive header (Authorization, Proxy-Authorization, Cookie,
names that say token, key, secret, password, session or auth, and headers a connection lists in
``secretHeaders``), every URL userinfo, every ``${ENV}`` value, private keys, and every variable or
capture the scenario lists under ``secrets:`` or that feeds a sensitive header (``--secret-var``
values too). Static ones are known when the scenario loads (``Scenario.secrets``); the rest are
registered by the engine the moment they are rendered or captured, in the process that makes them.

A ``SecretRegistry`` holds the values and the forms they take in text (JSON-escaped once and
twice, ``repr``-escaped, percent-encoded, YAML single-quoted, the Basic credentials of a userinfo,
each long line of a multi-line value). A run owns one (``RunContext.secrets``) and its recorder
masks every error and failure text as it is recorded, so worker processes send masked deltas and
raw values never reach a result; reports mask once more with the static secrets.

Matching: a regular expression over all forms while there are few (C speed); above
``REGEX_FORMS`` an index of the forms by their last (up to) 8 characters, looked up at each
position of a text (a run where each user logs in with its own token can hold thousands, and a
regex alternation of thousands of literals is slow to build and to run; tokens often share their
beginning, JWTs their whole header, so the end is what tells them apart). A sorted list of the
forms answers "does this text end in the beginning of a secret" for texts cut with an ellipsis.

Parts of a secret: a peer that cuts what it echoes (a close reason has at most 123 bytes) or shows
only a token's tail leaves part of a secret in a text. Any run of ``PARTIAL_MIN`` characters or
more that is the beginning or the end of a form is masked too, wherever it stands: each position
whose next ``PARTIAL_MIN`` characters begin (or end) a form is extended as far as it matches, by a
look-up in the sorted forms (or the sorted reversed forms); the longest match is at one of the two
neighbours of the text's insertion point. Ordinary words that happen to begin a secret (a password
``password123`` masks ``password``) are masked with it: safety first.
At most ``MAX_SECRETS`` values are kept, the least recently registered dropped first, so a long
run that makes a new token per iteration holds bounded memory; a value in use is registered again
at every use and stays.
"""

from __future__ import annotations

import base64
import json
import re
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

__all__ = [
    "MASK",
    "MAX_SECRETS",
    "MIN_SECRET_LENGTH",
    "PARTIAL_MIN",
    "SENSITIVE_HEADERS",
    "SecretRegistry",
    "SecretText",
    "basic_credentials",
    "is_sensitive_header",
    "mask_excerpt",
    "secret_forms",
    "userinfo_secrets",
    "value_texts",
]

MASK = "***"
ELLIPSIS = "\u2026"  # how runner.expect.describe shortens long values
#: Shorter values are not masked as substrings: masking every "1" would make reports unreadable.
MIN_SECRET_LENGTH = 3
#: A run of this many characters or more that begins or ends a secret is masked wherever it
#: stands (see the module docstring): 7 characters of a 28-character token tell little about it,
#: and values that merely share a shorter beginning with a secret (token-1, token-2) stay readable.
PARTIAL_MIN = 8
#: Values kept per registry (each with its ~8 forms, about 1 KiB): see the module docstring.
MAX_SECRETS = 10_000
#: Up to this many forms one regular expression masks them; above, the index does.
REGEX_FORMS = 256
#: The index keys a form by this many of its last characters (all of a shorter one).
_ANCHOR = 8
#: Masked texts remembered (error texts repeat: a failing load run records the same few), and
#: the longest text remembered (whole reports are masked once; keeping them would cost memory).
_CACHE_SIZE = 1024
_CACHE_TEXT = 2048

#: Header names that always carry credentials; ``is_sensitive_header`` adds names by their words.
SENSITIVE_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
)
_SENSITIVE_WORDS = ("token", "secret", "key", "auth", "password", "session")
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})

_NAMES = "|".join(re.escape(h) for h in SENSITIVE_HEADERS)
#: A value that follows a credentials header name in any text (``Cookie: x``, ``"Authorization": "x"``,
#: not the comparison ``"Authorization" == 'x'`` of a failure message).
_HEADER_RE = re.compile(rf"""(?i)(\b(?:{_NAMES})\b["']?\s*(?::|=(?!=))\s*["']?)([^"'\r\n]+)""")
#: A YAML line (optionally behind an excerpt's ``  7 | `` gutter) whose key names a credential,
#: for the quoted source lines of validation errors; ``secrets:`` and ``secretHeaders:`` list
#: names, not values.
_YAML_KEY_RE = re.compile(
    r"""(?im)^((?:\s*\d*\s\|)?\s*(?:-\s+)?(?!["']?(?:secrets|secretHeaders)["']?\s*:)["']?[\w.-]*"""
    r"""(?:authorization|cookie|token|secret|password|passwd|api[-_]?key|session)[\w.-]*["']?\s*:[ \t]+)"""
    r"""(?=\S)(?![|>][-+0-9]*\s*$)([^\r\n]+)"""
)
_AUTH_SCHEME_RE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*\s+(\S.*?)\s*$", re.S)


def is_sensitive_header(name: str) -> bool:
    """Whether a header's value is a credential that outputs must mask."""
    low = name.lower()
    return low in SENSITIVE_HEADERS or any(w in low for w in _SENSITIVE_WORDS)


class SecretText(str):
    """A ``--secret-var`` value: a ``str`` that says it is secret.

    Variables travel as ``Mapping[str, str]`` to worker processes and cluster jobs (pickled), and
    the loader of each process must know which are secret; a subclass of ``str`` carries that
    through every path that already passes variables, with no new parameter on any of them.
    ``repr`` is masked so a logged mapping does not show it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SecretText({MASK!r})"


def secret_forms(value: str) -> set[str]:
    """Every form ``value`` can take in an output: as is, JSON-escaped once and twice (with and
    without ``\\uXXXX``), ``repr``-escaped, percent-encoded, YAML single-quoted, each line of at
    least 16 characters of a multi-line value (PEM keys), and a URL from its ``://`` on; forms
    shorter than ``MIN_SECRET_LENGTH`` are left out."""
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    once = json.dumps(value)[1:-1]
    once_utf8 = json.dumps(value, ensure_ascii=False)[1:-1]
    forms = {
        value,
        once,
        once_utf8,
        json.dumps(once)[1:-1],
        json.dumps(once_utf8, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
        value.replace("'", "''"),
    }
    if "\n" in value or "\r" in value:
        forms.update(line.strip() for line in value.splitlines() if len(line.strip()) >= 16)
    scheme = value.find("://")
    if scheme > 0 and len(value) - scheme >= 2 * MIN_SECRET_LENGTH:
        forms.add(value[scheme:])  # a URL with its scheme changed (an error suggesting ws:// for http://)
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def basic_credentials(user: str, password: str) -> str:
    """The ``Authorization: Basic`` credentials websockets sends for a URL's userinfo."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def userinfo_secrets(url: str) -> list[str]:
    """The secret parts of a URL's userinfo: the password (as written and decoded), the whole
    ``user:password`` and its Basic credentials; a userinfo without a password is all secret."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return []
    rest = url[scheme_end + 3 :]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    info, at, _host = authority.rpartition("@")
    if not at or not info:
        return []
    user, colon, password = info.partition(":")
    if not colon:
        return [info, unquote(info)]
    plain_user, plain_password = unquote(user), unquote(password)
    found = [info, password, plain_password, f"{plain_user}:{plain_password}"]
    found.append(basic_credentials(plain_user, plain_password))
    return [s for s in found if s]


def value_texts(value: object) -> Iterable[str]:
    """The texts a secret value can show: itself, or for a container (a captured object) its
    strings and numbers and the compact JSON a template renders it as."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, Mapping | list | tuple):
        yield json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        items = value.values() if isinstance(value, Mapping) else value
        for item in items:
            yield from value_texts(item)


class SecretRegistry:
    """The secret values of a run and their forms; ``mask`` replaces them with ``***``.

    ``add*`` may be called for every use of a value: a known value costs a dict look-up.
    """

    __slots__ = (
        "_by_end",
        "_cache",
        "_forms",
        "_heads",
        "_limit",
        "_longest",
        "_pattern",
        "_pinned",
        "_reversed",
        "_sorted",
        "_tails",
        "_values",
    )

    def __init__(self, values: Iterable[object] = (), *, limit: int = MAX_SECRETS) -> None:
        """``values`` (the scenario's static secrets) are kept for good; up to ``limit`` values
        registered later are kept, the least recently registered dropped first."""
        self._limit = limit
        #: value -> its forms, oldest registration first (the order ``limit`` evicts in)
        self._values: dict[str, tuple[str, ...]] = {}
        self._pinned: set[str] = set()
        self._forms: dict[str, int] = {}  # form -> how many values have it
        #: anchor length -> last characters -> forms that end in them
        self._by_end: dict[int, dict[str, list[str]]] = {}
        self._sorted: list[str] = []  # every form, in order (prefix look-ups)
        self._reversed: list[str] = []  # every form reversed, in order (suffix look-ups)
        #: the first and the last PARTIAL_MIN characters of the forms -> how many forms have them
        self._heads: dict[str, int] = {}
        self._tails: dict[str, int] = {}
        self._longest = 0
        self._pattern: re.Pattern[str] | None = None
        self._cache: dict[str, str] = {}
        for value in values:
            for text in map(str, value_texts(value)):
                if text not in self._pinned and self._register(text):
                    self._pinned.add(text)  # its forms stay indexed for good

    def __len__(self) -> int:
        return len(self._values) + len(self._pinned)

    def __contains__(self, value: object) -> bool:
        return value in self._values or value in self._pinned

    # --- registering -------------------------------------------------------------------------

    def add(self, value: object) -> None:
        """Register a value (a container registers its strings and numbers)."""
        if type(value) is str:
            self._add(value)
            return
        for text in value_texts(value):
            self._add(str(text))  # a ``SecretText`` as a plain str

    def pin(self, value: object) -> None:
        """Register a value for good, like those given at construction: never dropped by the
        ``limit`` (a data file's secret column: a row's value may be echoed by an iteration that
        outlives 10,000 newer picks). Bounded by the data file, which is bounded in size."""
        for text in value_texts(value) if type(value) is not str else (value,):
            text = str(text)
            if text in self._pinned:
                continue
            if text in self._values:
                del self._values[text]  # its forms stay registered, now for good
                self._pinned.add(text)
            elif self._register(text):
                self._pinned.add(text)

    def add_header(self, name: str, value: str, parts: Iterable[str] = ()) -> None:
        """A sensitive header's value as sent, the credentials after an Authorization scheme
        (``Bearer x`` -> ``x``), and ``parts``: the values of the variables it was made from."""
        self._add(value)
        if name.lower() in _CREDENTIAL_HEADERS:
            scheme = _AUTH_SCHEME_RE.match(value)
            if scheme:
                self._add(scheme.group(1))
        for part in parts:
            self._add(part)

    def add_url(self, url: str) -> None:
        """A URL's userinfo, if it has one."""
        if "@" in url:
            for part in userinfo_secrets(url):
                self._add(part)

    def _add(self, value: str) -> None:
        values = self._values
        if value in values:
            if len(values) > self._limit // 2:  # keep a value in use from being evicted
                values[value] = values.pop(value)
            return
        if value in self._pinned:
            return
        forms = self._register(value)
        if forms:
            values[value] = forms
            if len(values) > self._limit:
                self._drop(next(iter(values)))

    def _register(self, value: str) -> tuple[str, ...]:
        """Index ``value``'s forms and return them; none when it is too short to mask."""
        if len(value) < MIN_SECRET_LENGTH:
            return ()
        forms = tuple(sorted(secret_forms(value)))
        for form in forms:
            n = self._forms.get(form, 0)
            self._forms[form] = n + 1
            if n == 0:
                anchor = min(len(form), _ANCHOR)
                self._by_end.setdefault(anchor, {}).setdefault(form[-anchor:], []).append(form)
                insort(self._sorted, form)
                insort(self._reversed, form[::-1])
                if len(form) >= PARTIAL_MIN:
                    for grams, gram in (
                        (self._heads, form[:PARTIAL_MIN]),
                        (self._tails, form[-PARTIAL_MIN:]),
                    ):
                        grams[gram] = grams.get(gram, 0) + 1
                self._longest = max(self._longest, len(form))
        self._pattern = None
        self._cache.clear()
        return forms

    def _grams(self, form: str) -> tuple[tuple[dict[str, int], str], ...]:
        """The index entries of ``form``'s first and last ``PARTIAL_MIN`` characters."""
        if len(form) < PARTIAL_MIN:
            return ()
        return ((self._heads, form[:PARTIAL_MIN]), (self._tails, form[-PARTIAL_MIN:]))

    def _drop(self, value: str) -> None:
        for form in self._values.pop(value):
            n = self._forms[form] - 1
            if n:
                self._forms[form] = n
                continue
            del self._forms[form]
            anchor = min(len(form), _ANCHOR)
            buckets = self._by_end[anchor]
            buckets[form[-anchor:]].remove(form)
            if not buckets[form[-anchor:]]:
                del buckets[form[-anchor:]]
            del self._sorted[bisect_left(self._sorted, form)]
            del self._reversed[bisect_left(self._reversed, form[::-1])]
            for grams, gram in self._grams(form):
                if grams[gram] == 1:
                    del grams[gram]
                else:
                    grams[gram] -= 1
        self._pattern = None
        self._cache.clear()

    # --- masking -----------------------------------------------------------------------------

    def mask(self, text: str) -> str:
        """``text`` with every registered form, any beginning of one cut by an ellipsis, and every
        value after a credentials header name (``Cookie: ...``) replaced by ``***``."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        masked = text
        if self._forms:
            masked = self._mask_values(masked)
            if ELLIPSIS in masked:
                masked = self._cut(masked)
            masked = self._mask_partials(masked)
        masked = _HEADER_RE.sub(_keep_name, masked)
        if len(text) <= _CACHE_TEXT:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[text] = masked
        return masked

    def mask_tree(self, value: Any) -> Any:
        """A JSON-able tree with every string (keys included) masked; numbers stay numbers."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {self.mask(k): self.mask_tree(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_tree(v) for v in value]
        return value

    def _mask_values(self, text: str) -> str:
        if len(self._forms) <= REGEX_FORMS:
            pattern = self._pattern
            if pattern is None:
                ordered = sorted(self._forms, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(map(re.escape, ordered)))
            return pattern.sub(MASK, text)
        # The index: at each end position, the forms whose last characters end there; every
        # occurrence found is masked, overlapping ones joined, so no part of a secret is left.
        found: list[tuple[int, int]] = []
        anchors = [(n, buckets) for n, buckets in self._by_end.items() if buckets]
        for end in range(MIN_SECRET_LENGTH, len(text) + 1):
            for n, buckets in anchors:
                if n > end:
                    continue
                bucket = buckets.get(text[end - n : end])
                if bucket is None:
                    continue
                for form in bucket:
                    start = end - len(form)
                    if start >= 0 and text.startswith(form, start):
                        found.append((start, end))
        return _masked_spans(text, found)

    def _mask_partials(self, text: str) -> str:
        """Every run of ``PARTIAL_MIN`` or more characters that begins or ends a form, masked."""
        heads, tails, n = self._heads, self._tails, PARTIAL_MIN
        if not heads or len(text) < n:
            return text
        spans: list[tuple[int, int]] = []
        longest = self._longest
        for i in range(len(text) - n + 1):
            gram = text[i : i + n]
            if gram in heads:
                run = _longest_common(text[i : i + longest], self._sorted)
                if run >= n:
                    spans.append((i, i + run))
            if gram in tails:
                end = i + n
                run = _longest_common(text[max(0, end - longest) : end][::-1], self._reversed)
                if run >= n:
                    spans.append((end - run, end))
        return _masked_spans(text, spans)

    def _cut(self, text: str) -> str:
        """A value shortened with an ellipsis may end in the first part of a secret: mask it.
        (In the sorted forms, the first one not before ``tail`` starts with it if any does.)"""
        parts = text.split(ELLIPSIS)
        ordered = self._sorted
        for n, part in enumerate(parts[:-1]):
            for k in range(max(0, len(part) - self._longest), len(part) - MIN_SECRET_LENGTH + 1):
                tail = part[k:]
                i = bisect_left(ordered, tail)
                if i < len(ordered) and ordered[i].startswith(tail):
                    parts[n] = part[:k] + MASK
                    break
        return ELLIPSIS.join(parts)


def _masked_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each span (start, end) replaced by ``MASK``, overlapping ones joined, so no
    part of a secret is left between two masks."""
    if not spans:
        return text
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[str] = []
    pos = 0
    for start, end in merged:
        out.append(text[pos:start])
        out.append(MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _longest_common(text: str, ordered: list[str]) -> int:
    """The longest beginning ``text`` shares with any string of ``ordered`` (sorted): one of the
    two neighbours of its insertion point has it."""
    i = bisect_left(ordered, text)
    best = 0
    for j in (i - 1, i):
        if 0 <= j < len(ordered):
            other = ordered[j]
            k = 0
            limit = min(len(text), len(other))
            while k < limit and text[k] == other[k]:
                k += 1
            best = max(best, k)
    return best


def _keep_name(match: re.Match[str]) -> str:
    return match.group(1) + MASK


def mask_excerpt(text: str, registry: SecretRegistry) -> str:
    """Quoted source lines of a validation error: registered values, and the value of any YAML
    key that names a credential (``Cookie: x``), known or not (the file may not have parsed)."""
    return _YAML_KEY_RE.sub(_keep_name, registry.mask(text))
