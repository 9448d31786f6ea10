"""One scenario against servers we did not write: the Node ``ws`` library, aiohttp, and our own
embedded server (websockets). What our server agrees with us on, the others check: every step's
return code, the messages, a ping's pong, a large message, the peer's close code and reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import aiohttp_server, node_ws_server

from runner.cli import main
from runner.server import EmbeddedServer

SCENARIO = """\
name: reference
connections:
  main: {url: /echo, timeout: 5s}
  closing: {url: "/close?code=4001&reason=bye", timeout: 5s}
steps:
  - open: main
  - write: {connection: main, text: "héllo wörld"}
  - read: {connection: main, match: {text: "héllo wörld"}}
  - write: {connection: main, json: {n: "{{ iteration }}", tag: x}}
  - read: {connection: main, match: {json: {tag: x}}}
  - write: {connection: main, binary: {hex: "00ff10"}}
  - read: main
    expect: {binary: true, sha256: 2da45f2cd1f9c8e69a67abf7a6b26c282533d0a7686787a9533265418680d4d2}
  - write: {connection: main, binary: {size: 1MB}}
  - read: main
    expect: {binary: true, length: 1MB}
  - ping: main
  - close: main
  - open: closing
  - write: {connection: closing, text: bye?}
  - read: closing
    expect: {rc: 1}
"""


@pytest.fixture(params=["node-ws", "aiohttp", "embedded"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A running server of each implementation, at ``ws://127.0.0.1:PORT``."""
    if request.param == "node-ws":
        with node_ws_server() as url:
            yield url
    elif request.param == "aiohttp":
        with aiohttp_server() as url:
            yield url
    else:
        with EmbeddedServer().run_in_thread() as server:
            yield server.url


def test_every_step_means_the_same_on_every_server(tmp_path: Path, server_url: str) -> None:
    """The scenario passes on each server, with the counts, the rc of the peer's close and its
    code and reason in the report as the manual defines them."""
    path = tmp_path / "reference.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "reference.json"
    code = main(["run", str(path), "--target", server_url, "--json", str(out), "--report-dir", "", "-q"])
    doc = json.loads(out.read_text())
    assert code == 0, (doc.get("error"), doc["failures"])
    steps = doc["steps"]
    assert [s["kind"] for s in steps] == [
        "open", "write", "read", "write", "read", "write", "read", "write", "read", "ping", "close",
        "open", "write", "read",
    ]  # fmt: skip
    assert all(s["count"] == 1 and s["ok"] == 1 for s in steps), [(s["name"], s["errors"]) for s in steps]
    last = steps[-1]
    assert last["rc"] == {"1": 1}  # the peer closed: rc 1, as expected
    assert last["closes"] == {"4001 bye": 1}
    assert steps[7]["rc"] == {} and doc["failures"] == []
