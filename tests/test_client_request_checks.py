"""Input that cannot go into the HTTP upgrade request (a header value with a line break, a header
name that is not a token, a URL with a space or a control character) is the open's -1 with a text
that names what is wrong, never an exception inside the engine and never the value itself: on the
client, in a check run and in a load run, which then fail (exit 1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import scaled
from hostile_servers import HostileServer, silent

from runner.client import ConnectOptions, ErrorKind, WebSocketClient

Arun = Callable[[Callable[[], Any]], Any]
SECRET = "s3cr3t-t0ken"
TOKEN_CHARS = "letters, digits and !#$%&'*+-.^_`|~"


HEADER_CASES: dict[str, tuple[ConnectOptions, str]] = {
    "trailing_newline": (
        ConnectOptions(headers=(("Authorization", f"Bearer {SECRET}\n"),)),
        "header 'Authorization' cannot be sent: its value contains a line break (CR/LF)",
    ),
    "injected_header": (
        ConnectOptions(headers=(("Cookie", f"id={SECRET}\r\nX-Injected: 1"),)),
        "header 'Cookie' cannot be sent: its value contains a line break (CR/LF)",
    ),
    "nul_in_value": (
        ConnectOptions(headers=(("X-Api-Key", f"{SECRET}\x00"),)),
        "header 'X-Api-Key' cannot be sent: its value contains a control character (U+0000) at position 12",
    ),
    "not_latin_1": (
        ConnectOptions(headers=(("X-Token", f"{SECRET}\u20ac"),)),
        "header 'X-Token' cannot be sent: its value contains a character an HTTP header cannot carry "
        "at position 12 (only Latin-1 text is allowed)",
    ),
    "space_in_name": (
        ConnectOptions(headers=(("X Bad", SECRET),)),
        f"header 'X Bad' cannot be sent: the name contains a space; a name may only contain {TOKEN_CHARS}",
    ),
    "colon_in_name": (
        ConnectOptions(headers=(("X-Bad:Name", SECRET),)),
        f"header 'X-Bad:Name' cannot be sent: the name contains ':'; a name may only contain {TOKEN_CHARS}",
    ),
    "empty_name": (
        ConnectOptions(headers=(("", SECRET),)),
        "header '' cannot be sent: the name is empty",
    ),
    "newline_in_origin": (
        ConnectOptions(origin="http://example.org\n"),
        "origin cannot be sent: its value contains a line break (CR/LF)",
    ),
    "space_in_subprotocol": (
        ConnectOptions(subprotocols=("chat v1",)),
        "subprotocol 'chat v1' cannot be sent: the name contains a space; "
        f"a name may only contain {TOKEN_CHARS}",
    ),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_header_that_cannot_be_sent_is_the_opens_minus_one(arun: Arun, case: str) -> None:
    """A header, origin or subprotocol that cannot be sent: open gives -1 (argument error) naming it
    and why, without the value and without connecting (it raised inside the open, or was sent and
    dropped by the server)."""
    options, text = HEADER_CASES[case]

    async def body() -> None:
        async with HostileServer(silent) as server:
            client = WebSocketClient()
            assert await client.open(server.url, options) == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.ARGUMENT and err.rc == -1
            assert err.text == f"argument error in options: {text}"
            assert SECRET not in err.text
            assert server.connections == 0

    arun(body)


URL_CASES: dict[str, tuple[str, str]] = {
    "space_in_path": ("/ec ho", "contains a space at character 24; write it as %20"),
    "trailing_newline": (
        "/echo\n",
        "contains a line break (LF) at character 26; percent-encode it or remove it",
    ),
    "crlf_in_query": (
        "/echo?a=b\r\nX: y",
        "contains a line break (CR) at character 30; percent-encode it or remove it",
    ),
    "tab_in_path": ("/e\tcho", "contains a tab at character 23; percent-encode it or remove it"),
    "del_in_path": (
        "/e\x7fcho",
        "contains a control character (U+007F) at character 23; percent-encode it or remove it",
    ),
}


@pytest.mark.parametrize("case", sorted(URL_CASES))
def test_url_that_cannot_go_on_the_request_line_is_an_invalid_url(arun: Arun, case: str) -> None:
    """A URL with a space or a control character: open gives -1 (invalid url) naming the character
    and where it is, without connecting (a space was sent and dropped by the server; a tab or a
    line break was silently removed, so another path was opened)."""
    path, text = URL_CASES[case]

    async def body() -> None:
        async with HostileServer(silent) as server:
            client = WebSocketClient()
            url = f"ws://127.0.0.1:{server.port:05d}{path}"
            assert await client.open(url, ConnectOptions(timeout_s=scaled(2))) == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.INVALID_URL
            assert err.text == f"invalid url: {url!r} {text}"
            assert server.connections == 0

    arun(body)


def test_url_error_masks_the_password_of_user_information(arun: Arun) -> None:
    """The text of a URL refused for a space shows its user name but not its password (also when the
    space is in the password)."""

    async def body() -> None:
        client = WebSocketClient()
        url = f"ws://user:{SECRET}@127.0.0.1:9/a b"
        assert await client.open(url, ConnectOptions(timeout_s=scaled(2))) == -1
        err = client.last_error()
        assert err is not None and err.kind is ErrorKind.INVALID_URL
        assert err.text == (
            "invalid url: 'ws://user:***@127.0.0.1:9/a b' contains a space at character 28; write it as %20"
        )
        assert (
            await client.open(f"ws://user:{SECRET} x@127.0.0.1:9/", ConnectOptions(timeout_s=scaled(2))) == -1
        )
        assert _text(client) == (
            "invalid url: 'ws://user:***@127.0.0.1:9/': the password contains a space or a control "
            "character; percent-encode it"
        )

    arun(body)


def _text(client: WebSocketClient) -> str:
    err = client.last_error()
    assert err is not None
    return err.text


# --- through the command line -----------------------------------------------------------------

SCENARIO = """\
name: unsendable input
target: embedded
connections:
  main:
    url: "/ec{{{{ part }}}}"
    timeout: 2s
    headers:
      Authorization: "{authorization}"
steps:
  - open: main
  - write: {{connection: main, text: hello}}
  - read: main
  - close: main
"""


def _wsload_run(tmp_path: Path, scenario: str, *args: str) -> tuple[int, str, dict[str, Any]]:
    """``wsload run`` in a subprocess: exit code, stdout + stderr, the JSON report."""
    path = tmp_path / "unsendable.yaml"
    path.write_text(scenario)
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(path), "--report-dir", "", "--json", str(report), *args],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        cwd=tmp_path,
        env={**os.environ, "WSLOAD_REPORT_DIR": ""},
    )
    return proc.returncode, proc.stdout + proc.stderr, json.loads(report.read_text())


RUN_CASES = {
    "header": (
        f"Bearer {SECRET}\\n",
        "ho",
        "argument error in options: header 'Authorization' cannot be sent: its value contains a line break "
        "(CR/LF)",
    ),
    "url": (
        f"Bearer {SECRET}",
        "h o",
        "invalid url: 'ws://127.0.0.1:{port}/ech o' contains a space at character",
    ),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_check_run_with_unsendable_input_fails_with_the_reason(tmp_path: Path, case: str) -> None:
    """A check run whose header value ends in a newline (or whose URL gets a space from --var): exit 1,
    the open step's -1 with the reason in the console and the JSON, the later steps skipped, the
    secret nowhere (it was an engine crash: 'internal error: ... InvalidHeaderValue')."""
    authorization, part, text = RUN_CASES[case]
    scenario = SCENARIO.format(authorization=authorization)
    code, out, doc = _wsload_run(tmp_path, scenario, "--var", f"part={part}")
    assert code == 1, out
    port = re.findall(r":(\d+)", doc["target"])[-1]  # "embedded (ws://127.0.0.1:PORT)"
    text = text.format(port=port)
    assert text in out and "internal error" not in out
    opens = next(s for s in doc["steps"] if s["kind"] == "open")
    assert opens["rc"] == {"-1": 1} and opens["failures"] == 1
    assert text in opens["errors"][0]["message"]
    assert doc["passed"] is False and doc["error"] in ("", None)
    assert SECRET not in out and SECRET not in json.dumps(doc)


def test_load_run_with_a_newline_in_a_header_counts_minus_one_and_fails(tmp_path: Path) -> None:
    """A load run whose Authorization value ends in a newline: every open is counted with rc -1 and
    the reason, no internal error, exit 1 (it passed with exit 0 and '0 steps run')."""
    scenario = SCENARIO.format(authorization=f"Bearer {SECRET}\\n") + "load:\n  vus: 2\n  duration: 1s\n"
    code, out, doc = _wsload_run(tmp_path, scenario, "--var", "part=ho")
    assert code == 1, out
    assert "internal error" not in out and "internal error" not in json.dumps(doc)
    opens = next(s for s in doc["steps"] if s["kind"] == "open")
    assert opens["count"] >= 2 and opens["rc"] == {"-1": opens["count"]}
    assert [e["message"] for e in opens["errors"]] == [
        "open returned rc -1, expected rc >= 0: argument error in options: header 'Authorization' cannot be "
        "sent: its value contains a line break (CR/LF)"
    ]
    assert doc["passed"] is False
    assert SECRET not in out and SECRET not in json.dumps(doc)
