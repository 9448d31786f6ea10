"""What a content check's expressions mean, worked out without running them: the JMESPath a
``that`` entry stands for, why one cannot be evaluated, and how large a regular expression
unrolls. Pure functions of the text, so the loader refuses at load what would fail (or eat
gigabytes) at run time, and the checks (``runner.checks.expect``) evaluate what was accepted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from runner.runtime import lazy_module
from runner.scenario.validation import closest

if TYPE_CHECKING:
    import jmespath
else:  # loaded at first use (``runner.runtime.lazy_module``)
    jmespath = lazy_module("jmespath")

__all__ = ["MAX_REGEX_SIZE", "MAX_REGEX_TOTAL", "regex_size", "that_expression", "that_problem"]


#: JMESPath's comparators; a JSON value written beside one is a value (see ``that_expression``).
_COMPARATORS = frozenset({"eq", "ne", "lt", "lte", "gt", "gte"})
#: Tokens that end an operand on its right / start one on its left.
_ENDS_OPERAND = _COMPARATORS | {"eof", "rparen", "rbracket", "rbrace", "and", "or", "comma", "pipe"}
_STARTS_OPERAND = _COMPARATORS | {"lparen", "filter", "lbracket", "lbrace", "and", "or", "not", "comma"}
_STARTS_OPERAND |= {"colon", "pipe"}
_JSON_SCALAR_RE = re.compile(r'-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|"(?:[^"\\]|\\.)*"')


def that_expression(text: str) -> str:
    """The JMESPath expression a ``that`` entry means: the entry itself, except that a JSON value
    written beside a comparator (``3``, ``-1.5``, ``true``, ``null``, and on its right ``"text"``)
    is that value, as it was before ``that`` took whole JMESPath expressions (``result.count >= 3``,
    ``session != null``). In JMESPath proper a bare number is not an expression, and ``null`` or
    ``"text"`` would be field names; such a field is still reachable as ``@.null`` or in a longer
    path. Everything else is plain JMESPath: ``a == `1```, ``a == b`` (two paths), ``name == 'x'``.
    Raises ``jmespath`` errors for text that is not an expression at all.
    """
    tokens = list(jmespath.lexer.Lexer().tokenize(text))
    starts = [t["start"] for t in tokens]
    replace: dict[int, tuple[int, str]] = {}  # start -> (end, replacement)

    def operand(first: int, last: int, *, right: bool) -> None:
        if first > last:
            return
        begin, end = starts[first], starts[last + 1] if last + 1 < len(tokens) else len(text)
        raw = text[begin:end].strip()
        if raw.startswith('"') and not right:
            return  # on the left, as before, "X-Trace" is a (quoted) field name
        if _JSON_SCALAR_RE.fullmatch(raw):  # JSON text is a JMESPath literal between backticks
            replace[begin] = (begin + len(raw), "`" + raw.replace("`", "\\`") + "`")

    for k, token in enumerate(tokens):
        if token["type"] not in _COMPARATORS:
            continue
        last = k + 1  # the operand on the right: up to the token that ends it
        while last < len(tokens) and tokens[last]["type"] not in _ENDS_OPERAND:
            last += 1
        operand(k + 1, last - 1, right=True)
        first = k - 1  # and on the left, back to the token that starts it
        while first >= 0 and tokens[first]["type"] not in _STARTS_OPERAND:
            first -= 1
        operand(first + 1, k - 1, right=False)
    out, at = [], 0
    for begin in sorted(replace):
        end, value = replace[begin]
        out.append(text[at:begin])
        out.append(value)
        at = end
    out.append(text[at:])
    return "".join(out)


def that_problem(text: str) -> str | None:
    """Why a ``that`` entry cannot be evaluated, or None: JMESPath syntax, an unknown function, a
    function given the wrong number of arguments."""
    try:
        parsed = jmespath.compile(that_expression(text)).parsed
    except Exception as exc:  # jmespath raises several unrelated error types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"'{text}' is not a JMESPath expression: {first} (e.g. 'result.count >= 3', "
            "\"status == 'ok'\", 'a == b', 'length(items) > `0`')"
        )
    table = jmespath.functions.Functions().FUNCTION_TABLE
    todo = [parsed]
    while todo:
        node = todo.pop()
        if node.get("type") == "function_expression":
            name = node["value"]
            if name not in table:
                hint = closest(name, table)
                extra = f", did you mean '{hint}'?" if hint else ""
                return f"'{text}': JMESPath has no function '{name}'{extra}"
            signature = table[name]["signature"]
            given = len(node["children"])
            variadic = any(arg.get("variadic") for arg in signature)
            if given < len(signature) - variadic or (not variadic and given > len(signature)):
                return f"'{text}': {name}() takes {len(signature)} argument(s), got {given}"
        todo.extend(c for c in node.get("children", ()) if isinstance(c, dict))
    return None


#: A pattern is refused when ``regex_size`` says it unrolls to more than this many items: the
#: ``regex`` module copies a repeated item once per required repetition (``x{10000}``: 0.08 s and
#: 2.6 MB to compile; ``x{100000000}``: 5.7 GB).
MAX_REGEX_SIZE = 10_000
#: The same for all the patterns of one file together (each is compiled, and cached, once).
MAX_REGEX_TOTAL = 50_000
_REPEAT_RE = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_GROUP_OPEN_RE = re.compile(r"\(\?(?:P?<(?![=!])\w+>|<?[=!]|[:>|]|[\w^-]*[:)])")


def regex_size(pattern: str) -> int:
    """About how many items ``regex`` unrolls ``pattern`` into, without compiling it.

    Every character, escape or set counts 1; a repeat ``{m}``, ``{m,}`` or ``{m,n}`` multiplies
    what it repeats (a group as a whole) by ``m`` (the required copies; the optional rest is one
    loop, which cost nothing measurable up to ``x{0,10000000}``). Errs on the large side for
    syntax it does not know; the compile that follows reports invalid syntax.
    """
    # One entry per open group: [size so far, size of the last item (what a repeat repeats)].
    stack: list[list[int]] = [[0, 0]]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        top = stack[-1]
        if c in "\\[":  # an escape or a set: one item
            top[0] += 1
            top[1] = 1
            i = _escape_end(pattern, i) if c == "\\" else _set_end(pattern, i)
        elif c == "(":
            # "(?:", "(?P<name>", "(?<=", "(?i:" open a group without an item of their own;
            # "(?i)" sets flags and closes at once.
            m = _GROUP_OPEN_RE.match(pattern, i)
            i = m.end() if m else i + 1
            if not (m and m.group().endswith(")")):
                stack.append([0, 0])
        elif c == ")":
            if len(stack) > 1:
                size = stack.pop()[0]
                stack[-1][0] += size
                stack[-1][1] = size
            i += 1
        elif c == "|":
            top[1] = 0
            i += 1
        elif c == "{" and (m := _REPEAT_RE.match(pattern, i)) and (m.group(1) or m.group(3)):
            times = max(1, int(m.group(1) or 0))
            top[0] += top[1] * (times - 1)
            top[1] *= times
            i = m.end()
        else:
            if c not in "*+?":
                top[0] += 1
                top[1] = 1
            i += 1
        if stack[0][0] > 1 << 40:  # already absurd: stop counting
            break
    while len(stack) > 1:  # an unclosed group: the compile reports it
        size = stack.pop()[0]
        stack[-1][0] += size
    return stack[0][0]


def _escape_end(pattern: str, i: int) -> int:
    """Where the escape at ``pattern[i]`` ends: ``\\d`` is two characters, ``\\p{Letter}`` and
    ``\\N{EM DASH}`` run to their brace (one item, not a repeat)."""
    j = i + 2
    if pattern[i + 1 : i + 2] in ("p", "P", "N") and pattern[j : j + 1] == "{":
        close = pattern.find("}", j)
        j = len(pattern) if close < 0 else close + 1
    return j


def _set_end(pattern: str, i: int) -> int:
    """Where the set opened at ``pattern[i]`` ends (a ``]`` first in it is a member; sets nest in
    the ``regex`` module's version 1 syntax)."""
    j, n = i + 1, len(pattern)
    if pattern[j : j + 1] == "^":
        j += 1
    if pattern[j : j + 1] == "]":
        j += 1
    depth = 1
    while j < n and depth:
        if pattern[j] == "\\":
            j += 1
        elif pattern[j] == "[":
            depth += 1
        elif pattern[j] == "]":
            depth -= 1
        j += 1
    return j
