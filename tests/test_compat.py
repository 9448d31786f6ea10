"""The switch and the checks around websockets' internals (``runner.client.compat``): the
releases the tricks were written for, ``WSLOAD_DIRECT_RECEIVE=0``, and an unknown websockets
release, which leaves all the parsing to websockets' own ``ClientProtocol``. The switch is shown
end to end in fresh interpreters, where it is read at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import scaled

from runner.client import compat

#: Opens the embedded /echo with a default client, echoes five messages, prints what happened.
_ECHO_SCRIPT = """
import asyncio, json, sys
if len(sys.argv) > 1:  # pretend another websockets release is installed
    import websockets.version
    websockets.version.version = sys.argv[1]
from runner.client import ConnectOptions, WebSocketClient, compat
from runner.server import EmbeddedServer

async def main():
    async with EmbeddedServer() as server:
        client = WebSocketClient()
        sock = await client.open(server.url + "/echo", ConnectOptions(timeout_s=10))
        conn = client.connection(sock)
        echoed = []
        for i in range(5):
            client.write(sock, f"m{i}")
            echoed.append((await client.read(sock, 10)).data)
        print(json.dumps({
            "echoed": echoed, "direct_messages": conn.direct_messages, "status": compat.STATUS,
            "core": type(conn.ws).__name__, "holding": list(conn.holding()),
        }))
        await client.aclose()

asyncio.run(main())
"""


def _echo_in_fresh_interpreter(env_value: str | None, version: str | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != compat.ENV_DIRECT_RECEIVE}
    if env_value is not None:
        env[compat.ENV_DIRECT_RECEIVE] = env_value
    args = [sys.executable, "-c", _ECHO_SCRIPT, *([version] if version else [])]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=scaled(60), check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    assert result["echoed"] == [f"m{i}" for i in range(5)]
    return result


@pytest.mark.parametrize(
    ("version", "known"),
    [
        ("17.0", True),
        ("17.4", True),
        ("17.4.1", True),
        ("17.5", False),
        ("18.0", False),
        ("16.0", False),
        ("17.5.dev1+g5678cde", False),
        ("17.4.dev1+g5678cde", False),
        ("", False),
    ],
)
def test_only_the_releases_written_for_are_known(version: str, known: bool) -> None:
    """websockets 17.0-17.4 (and their patch releases) are known; later, earlier and
    development versions are not."""
    assert compat.version_known(version) is known


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        (None, True),
        ("1", True),
        ("yes", True),
        ("0", False),
        ("false", False),
        (" Off ", False),
        ("no", False),
    ],
)
def test_environment_variable_values(value: str | None, wanted: bool) -> None:
    """``WSLOAD_DIRECT_RECEIVE=0`` (or false/no/off) turns the direct path off; unset or
    anything else leaves it on."""
    environ = {} if value is None else {compat.ENV_DIRECT_RECEIVE: value}
    assert compat.direct_receive_wanted(environ) is wanted


def test_installed_websockets_is_a_known_release() -> None:
    """The test suite runs on a release the tricks were written for, and the self-test at import
    found its internals as expected (a new release must be checked, then added)."""
    assert compat.version_known(compat.WEBSOCKETS_VERSION), compat.STATUS
    assert compat.INTERNALS_KNOWN, compat.STATUS
    wanted = compat.direct_receive_wanted(os.environ)
    assert compat.DIRECT_RECEIVE is wanted
    assert compat.STATUS.startswith("direct receive path on" if wanted else "direct receive path off")


def test_environment_variable_turns_the_direct_path_off() -> None:
    """A default client parses echoes on the direct path; with ``WSLOAD_DIRECT_RECEIVE=0`` it
    parses none there (websockets does), and the messages are the same."""
    on = _echo_in_fresh_interpreter(None)
    off = _echo_in_fresh_interpreter("0")
    assert on["direct_messages"] == 5
    assert on["status"] == f"direct receive path on (websockets {compat.WEBSOCKETS_VERSION})"
    assert off["direct_messages"] == 0
    assert off["status"] == "direct receive path off (WSLOAD_DIRECT_RECEIVE=0)"
    assert on["core"] == off["core"] == "WsClientProtocol"  # our frame loop either way
    assert on["holding"] == off["holding"] == ["message queue"]  # the 101 answer let go either way


def test_unknown_websockets_release_leaves_all_parsing_to_websockets() -> None:
    """With a websockets release the tricks were not written for, connections use websockets'
    own ClientProtocol, the direct path is off whatever the environment says, and messages
    still arrive."""
    result = _echo_in_fresh_interpreter("1", version="99.0")
    assert result["direct_messages"] == 0 and result["core"] == "ClientProtocol"
    assert result["status"] == (
        "direct receive path off (websockets 99.0 is not a release it was written for (17.0-17.4))"
    )


def test_the_remembered_upgrade_request_is_websockets_own_with_each_connections_key() -> None:
    """``WsClientProtocol.connect`` makes the headers once per URI: every later request has the
    same headers in the same order as websockets' ``ClientProtocol.connect``, with its own key."""
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    uri = parse_uri("ws://user:pw@127.0.0.1:9001/feed?x=1")
    options = {"origin": "http://o", "compression": False, "subprotocols": ["chat"], "max_size": None}
    made = [compat.new_client_protocol(uri, **options) for _ in range(3)]  # type: ignore[arg-type]
    requests = [ws.connect() for ws in made]
    for ws, request in zip(made, requests, strict=True):
        own = ClientProtocol.connect(ws)  # websockets' own, for the same connection
        assert list(request.headers.raw_items()) == list(own.headers.raw_items())
        assert request.path == own.path == "/feed?x=1"
        assert request.headers["Sec-WebSocket-Key"] == ws.key
    assert len({r.headers["Sec-WebSocket-Key"] for r in requests}) == 3
    other = compat.new_client_protocol(
        parse_uri("ws://127.0.0.1:9002/"), origin=None, compression=False, subprotocols=[], max_size=None
    )
    assert other.connect().headers["Host"] == "127.0.0.1:9002"
