"""``wsload import`` (issue 18): a scenario from a recorded browser session. Headless Chromium
(Playwright driving the system's Chromium) uses a small app served by aiohttp on loopback (a
page, a cookie, a WebSocket that wants a login, hands out a token, pushes ticks between the
answers and echoes binary), the session is saved as HAR, imported, and the scenario runs green
against the same app, with every secret of the recording read from the environment."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web
from conftest import scaled

from runner.cli import main

CHROMIUM = os.environ.get("WSLOAD_CHROMIUM", "/usr/bin/chromium")
COOKIE = "sid=cookie-value-7f3a9c21e5"
PASSWORD = "hunter2-correct-horse"

PAGE = """<!doctype html><html><body><script>
const ws = new WebSocket(new URLSearchParams(location.search).get('ws') || `ws://${location.host}/app`);
let token = null;
ws.binaryType = 'arraybuffer';
ws.onopen = () => ws.send(JSON.stringify({id: 1, method: 'login', user: 'ann', password: 'PASSWORD'}));
ws.onmessage = (e) => {
  if (typeof e.data !== 'string') { ws.close(); document.body.dataset.done = '1'; return; }
  const m = JSON.parse(e.data);
  if (m.id === 1) { token = m.token; ws.send(JSON.stringify({id: 2, method: 'get', token})); }
  else if (m.id === 2) { ws.send(new Uint8Array([1, 2, 3, 250])); }
};
</script></body></html>""".replace("PASSWORD", PASSWORD)


class App:
    """The recorded app: GET / sets the cookie and serves the page; /app wants that cookie, a
    login with the password, then the token it handed out; ticks are pushed between answers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self.refused: list[str] = []
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        assert ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/app", self._ws)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        ready.set()
        self.loop.run_forever()

    async def _page(self, request: web.Request) -> web.Response:
        response = web.Response(text=PAGE, content_type="text/html")
        name, value = COOKIE.split("=")
        response.set_cookie(name, value)
        return response

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if request.cookies.get("sid") != COOKIE.split("=")[1]:
            self.refused.append("cookie")
            await ws.close(code=4001, message=b"no session cookie")
            return ws
        token = secrets.token_hex(12)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
                continue
            m = json.loads(msg.data)
            await ws.send_str(json.dumps({"type": "tick", "n": m["id"]}))  # a push before the answer
            if m["method"] == "login":
                ok = m.get("password") == PASSWORD
                await ws.send_str(json.dumps({"id": m["id"], "ok": ok, "token": token if ok else None}))
            else:
                ok = m.get("token") == token
                if not ok:
                    self.refused.append("token")
                await ws.send_str(json.dumps({"id": m["id"], "ok": ok, "item": "apple" if ok else None}))
        return ws

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    served = App()
    yield served
    served.close()


RECORD = """
import sys
from playwright.sync_api import sync_playwright
url, har, chromium = sys.argv[1:4]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    context = browser.new_context(record_har_path=har) if har else browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector('body[data-done="1"]', state="attached", timeout=15000)
    context.close()
    browser.close()
"""


@pytest.fixture(scope="module")
def recorded(app: App, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HAR of the app's session, saved by Chromium through Playwright (in a process of its own:
    Playwright's sync API wants a thread without an event loop)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"headless Chromium not found at {CHROMIUM}: install it (tests/run.sh does)")
    har = tmp_path_factory.mktemp("har") / "session.har"
    done = subprocess.run(
        [sys.executable, "-c", RECORD, app.url + "/", str(har), CHROMIUM],
        capture_output=True,
        text=True,
        timeout=scaled(90),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return har


def test_a_recorded_session_imports_and_runs_green(
    recorded: Path,
    app: App,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The import names the secrets it needs and writes none of them; the scenario captures the
    token the login answer gives and sends it back, matches the answers by id past the pushed
    ticks, and passes against the app once the environment holds the cookie and password."""
    out = tmp_path / "imported.yaml"
    assert main(["import", str(recorded), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    text = out.read_text()
    har_text = recorded.read_text()
    assert PASSWORD in har_text and COOKIE.split("=")[1] in har_text  # the recording holds them
    for secret in (PASSWORD, COOKIE.split("=")[1]):
        assert secret not in text and secret not in err
    assert "export WSLOAD_COOKIE=..." in err and "export WSLOAD_PASSWORD=..." in err
    assert "capture: {token: token}" in text and "token: '{{ token }}'" in text and "secrets: [token]" in text
    assert "match: {json: {id: 1}}" in text and "pushed by the server" in text
    assert "binary: {base64: AQID+g==}" in text
    monkeypatch.setenv("WSLOAD_COOKIE", COOKIE)
    monkeypatch.setenv("WSLOAD_PASSWORD", PASSWORD)
    report = tmp_path / "run.json"
    code = main(["run", str(out), "--json", str(report), "--report-dir", "", "-q"])
    doc = json.loads(report.read_text())
    assert code == 0, (doc["error"], doc["failures"])
    assert app.refused == []
    assert all(s["failures"] == 0 for s in doc["steps"]) and doc["iterations"]["completed"] == 1
    assert PASSWORD not in report.read_text() and COOKIE.split("=")[1] not in report.read_text()


def test_a_wrong_secret_fails_the_imported_scenario(
    recorded: Path, app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The imported expectations are real: with another password the login answer is not the
    recorded one, and the run fails at that read."""
    out = tmp_path / "imported.yaml"
    assert main(["import", str(recorded), "-o", str(out)]) == 0
    monkeypatch.setenv("WSLOAD_COOKIE", COOKIE)
    monkeypatch.setenv("WSLOAD_PASSWORD", "not-the-password")
    report = tmp_path / "run.json"
    assert main(["run", str(out), "--json", str(report), "--report-dir", "", "-q"]) == 1
    doc = json.loads(report.read_text())
    failure = doc["failures"][0]
    assert (
        failure["step"] == "read app"
        and failure["message"] == "JSON mismatch at $.ok: expected true, got false"
    )


def test_think_time_and_filter(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.yaml"
    assert main(["import", str(recorded), "-o", str(out), "--filter", "/app", "--think-time", "1000"]) == 2
    assert main(["import", str(recorded), "-o", str(out), "--filter", "/nothing-like-it"]) == 2
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "not a HAR file (not JSON"),
        ('{"log": {"entries": []}}', "not a HAR file, or one without entries"),
        (
            '{"log": {"entries": [{"request": {"url": "https://x/", "headers": []}, '
            '"response": {"status": 200}}]}}',
            "nothing to import: it holds 1 requests and no WebSocket session",
        ),
        (
            '{"log": {"entries": [{"_resourceType": "websocket", "request": {"url": "wss://x/"}, '
            '"_webSocketMessages": [{"type": "sideways", "time": 1, "opcode": 1, "data": "x"}]}]}}',
            "entry 0, message 0: a message needs type 'send' or 'receive'",
        ),
    ],
)
def test_a_har_that_cannot_be_imported_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    har = tmp_path / "bad.har"
    har.write_text(content)
    assert main(["import", str(har)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_a_large_har_is_streamed_not_loaded(tmp_path: Path) -> None:
    """A 30 MB HAR of page content around one WebSocket session: read in bounded memory (the
    largest entry, not the file) and the session found."""
    import tracemalloc

    from runner.har.reader import read_sessions

    har = tmp_path / "big.har"
    body = "x" * 200_000
    with har.open("w") as f:
        f.write('{"log": {"version": "1.2", "entries": [')
        for i in range(150):
            f.write(
                json.dumps(
                    {
                        "request": {"url": f"https://x/{i}", "headers": []},
                        "response": {"status": 200, "content": {"text": body}},
                    }
                )
                + ","
            )
        ws = {
            "_resourceType": "websocket",
            "request": {
                "url": "wss://x/feed",
                "headers": [{"name": "Sec-WebSocket-Protocol", "value": "v1.feed"}],
            },
            "_webSocketMessages": [{"type": "send", "time": 1796450000.5, "opcode": 1, "data": '{"id": 1}'}],
        }
        f.write(json.dumps(ws) + "]}}")
    assert har.stat().st_size > 30_000_000
    tracemalloc.start()
    sessions = read_sessions(har)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [s.url for s in sessions] == ["wss://x/feed"] and sessions[0].subprotocols == ("v1.feed",)
    assert sessions[0].frames[0].at == 1796450000.5  # seconds (DevTools) kept as seconds
    assert peak < 5_000_000, peak


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "har"


def test_devtools_and_playwright_hars_give_the_same_scenario(tmp_path: Path) -> None:
    """A kept Chromium recording (Playwright's HAR: message times in milliseconds) and the same
    session as DevTools writes it (seconds) import to the same steps and times."""
    texts = []
    for name in ("chromium-playwright.har", "devtools-seconds.har"):
        out = tmp_path / f"{name}.yaml"
        assert main(["import", str(FIXTURES / name), "-o", str(out)]) == 0
        texts.append(out.read_text().split("\nconnections:", 1)[1])
    assert texts[0] == texts[1]
    assert "  # app: sent +0.014s (05:39:45.747 UTC)\n  - write: {connection: app, json: {id: 2" in texts[0]


def _browse(url: str) -> None:
    """The app's page in headless Chromium until its session is done (no HAR)."""
    done = subprocess.run(
        [sys.executable, "-c", RECORD, url, "", CHROMIUM], capture_output=True, text=True, timeout=scaled(90)
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _recorder(upstream: str, out: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner",
            "record",
            "--upstream",
            upstream,
            "-o",
            str(out),
            "--duration",
            "60",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "forwarding ws://127.0.0.1:" in line, line
    return proc, int(line.split("ws://127.0.0.1:")[1].split("/")[0])


def test_wsload_record_writes_the_session_it_forwarded(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chromium uses the app through ``wsload record``; at Ctrl-C the proxy writes the scenario
    (with the upstream's URL, the cookie and password as environment references), and it runs
    green against the app."""
    out = tmp_path / "recorded.yaml"
    upstream = app.url.replace("http://", "ws://")
    proc, port = _recorder(upstream, out)
    try:
        _browse(f"{app.url}/?ws=ws://127.0.0.1:{port}/app")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=scaled(30))
    assert proc.returncode == 0, err
    text = out.read_text()
    assert f"url: {upstream}/app" in text and "Cookie: ${WSLOAD_COOKIE}" in text
    assert PASSWORD not in text + err and COOKIE.split("=")[1] not in text + err
    assert "capture: {token: token}" in text and "export WSLOAD_PASSWORD=..." in err
    monkeypatch.setenv("WSLOAD_COOKIE", COOKIE)
    monkeypatch.setenv("WSLOAD_PASSWORD", PASSWORD)
    report = tmp_path / "run.json"
    code = main(["run", str(out), "--json", str(report), "--report-dir", "", "-q"])
    doc = json.loads(report.read_text())
    assert code == 0, (doc["error"], doc["failures"])


def test_wsload_record_with_a_dead_upstream_writes_nothing(tmp_path: Path) -> None:
    """The upstream refuses: the client gets 502 with the reason, the recorder says so and
    exits 2 without a file."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    out = tmp_path / "none.yaml"
    proc, port = _recorder(f"ws://127.0.0.1:{dead}", out)
    try:
        status = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Connection: Upgrade",
                "-H",
                "Upgrade: websocket",
                "-H",
                "Sec-WebSocket-Version: 13",
                "-H",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                f"http://127.0.0.1:{port}/app",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=scaled(30))
    assert status == "502"
    assert proc.returncode == 2 and not out.exists()
    assert f"refused a session: upstream ws://127.0.0.1:{dead}/app" in err and "nothing written" in err


# --- hostile and awkward recordings (a trial's findings): synthetic HARs, no browser -------------


def _har(tmp_path: Path, *sessions: dict, name: str = "s.har") -> Path:
    """A HAR of WebSocket sessions: each ``{url, headers, messages: [(type, time_s, data, opcode)],
    started}``."""
    entries = []
    for s in sessions:
        entries.append(
            {
                "_resourceType": "websocket",
                "startedDateTime": s.get("started", "2026-12-05T05:00:00.000Z"),
                "request": {"url": s["url"], "headers": s.get("headers", [])},
                "response": {"status": 101},
                "_webSocketMessages": [
                    {"type": t, "time": at, "opcode": op, "data": data} for t, at, data, op in s["messages"]
                ],
            }
        )
    path = tmp_path / name
    path.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}))
    return path


T0 = 1796446800.0  # 2026-12-05T05:00:00Z


def _import(tmp_path: Path, har: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = tmp_path / "out.yaml"
    code = main(["import", str(har), "-o", str(out), "--force"])
    err = capsys.readouterr().err
    return code, out.read_text() if out.exists() else "", err


def test_secrets_in_urls_fields_subprotocols_and_answers_stay_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJlLXNla3JpdA"
    har = _har(
        tmp_path,
        {
            "url": "wss://ann:url-SEKRIT-pw@x.example/rpc?token=qtok-SEKRIT-1&room=blue",
            "headers": [
                {"name": "Sec-WebSocket-Protocol", "value": f"v1.rpc, {jwt}"},
                {"name": "X-Csrf", "value": "csrf-SEKRIT-2"},
            ],
            "messages": [
                (
                    "send",
                    T0 + 1,
                    json.dumps(
                        {
                            "id": 1,
                            "pwd": "pwd-SEKRIT-3",
                            "creds": {"pass": "p-SEKRIT-4"},
                            "accessKey": "ak-SEKRIT-5",
                            "note": f"carry {jwt}",
                        }
                    ),
                    1,
                ),
                (
                    "receive",
                    T0 + 1.1,
                    json.dumps({"id": 1, "ok": True, "sid": "sid-SEKRIT-6", "user": "ann"}),
                    1,
                ),
            ],
        },
    )
    code, text, err = _import(tmp_path, har, capsys)
    assert code == 0, err
    for secret in (
        "url-SEKRIT",
        "qtok-SEKRIT",
        jwt,
        "csrf-SEKRIT",
        "pwd-SEKRIT",
        "p-SEKRIT",
        "ak-SEKRIT",
        "sid-SEKRIT",
    ):
        assert secret not in text and secret not in err, secret
    assert "room=blue" in text and "v1.rpc" in text and "user: ann" in text
    assert "export WSLOAD_TOKEN=..." in err and "export WSLOAD_PWD=..." in err


def test_a_recorded_message_cannot_become_a_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server push with line breaks (and a STOMP frame with a NUL) stays in one comment line:
    it used to escape its comment and become steps of the scenario."""
    evil = "notice\n  - open: evil\n  - write: {connection: evil, text: 'injected'}\n  #"
    har = _har(
        tmp_path,
        {
            "url": "ws://127.0.0.1:9/rpc",
            "messages": [
                ("send", T0 + 1, json.dumps({"id": 1}), 1),
                ("receive", T0 + 1.01, evil, 1),
                ("receive", T0 + 1.02, "MESSAGE\ndestination:/topic/a\n\nhello\u0000", 1),
                ("receive", T0 + 1.03, json.dumps({"id": 1, "ok": True}), 1),
                ("send", T0 + 1.1, "literal {{ vu }} and ${HOME} stay literal", 1),
            ],
        },
    )
    code, text, err = _import(tmp_path, har, capsys)
    assert code == 0, err
    steps = [line for line in text.splitlines() if line.startswith("  - ")]
    assert [s.split(":")[0] for s in steps] == ["  - open", "  - write", "  - read", "  - write", "  - close"]
    assert "$${HOME}" in text and "{{ ''{{'' }} vu }}" in text  # (YAML doubles the quotes)


def test_answers_are_checked_as_far_as_they_can_be_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A text answer is expected as recorded; a numbers-only answer keeps its shape (its fields'
    presence); a per-session value (clientId c-5d76d6, r29) is not expected; a string request id
    pairs with a numeric answer id, and an id one level down pairs too."""
    har = _har(
        tmp_path,
        {
            "url": "ws://127.0.0.1:9/mixed",
            "messages": [
                ("send", T0 + 1, "AUTH ann", 1),
                ("receive", T0 + 1.01, "OK ann", 1),
            ],
        },
        {
            "url": "ws://127.0.0.1:9/rpc",
            "messages": [
                ("send", T0 + 2, json.dumps({"id": "5", "method": "balance"}), 1),
                (
                    "receive",
                    T0 + 2.01,
                    json.dumps({"type": "welcome", "clientId": "c-5d76d6", "room": "r29"}),
                    1,
                ),
                ("receive", T0 + 2.02, json.dumps({"id": 5, "result": {"balance": 100, "currency": 978}}), 1),
                ("send", T0 + 3, json.dumps({"meta": {"id": 7}, "op": "ping"}), 1),
                ("receive", T0 + 3.01, json.dumps({"meta": {"id": 7}, "op": "pong"}), 1),
            ],
        },
    )
    code, text, err = _import(tmp_path, har, capsys)
    assert code == 0, err
    assert "expect: {text: OK ann}" in text
    assert "match: {json: {id: 5}}" in text and "that: [id != null, result != null]" in text
    assert "match: {json: {meta: {id: 7}}}" in text and "expect: {json: {op: pong}" in text
    assert (
        "c-5d76d6" not in text.split("pushed by the server")[0] or "expect: {json: {type: welcome" not in text
    )


def test_sessions_open_at_the_same_time_are_interleaved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], node_ws_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sockets of one page in one room of the Node ``ws`` server: B joined before A spoke,
    so the scenario opens B before A's write and reads A's message on both; it passes against
    the room (replayed one session after the other, B's read timed out)."""
    room = f"{node_ws_url}/room/har-two"
    said = json.dumps({"from": "a", "text": "hello b"})
    har = _har(
        tmp_path,
        {
            "url": room,
            "started": "2026-12-05T05:00:00.100Z",
            "messages": [("send", T0 + 1, said, 1), ("receive", T0 + 1.01, said, 1)],
        },
        {"url": room, "started": "2026-12-05T05:00:00.200Z", "messages": [("receive", T0 + 1.01, said, 1)]},
    )
    code, text, err = _import(tmp_path, har, capsys)
    assert code == 0, err
    steps = [line.strip() for line in text.splitlines() if line.startswith("  - ")]
    assert steps[:3] == ["- open: har_two", "- open: har_two2", steps[2]] and steps[2].startswith("- write")
    report = tmp_path / "r.json"
    assert main(["run", str(tmp_path / "out.yaml"), "--json", str(report), "--report-dir", "", "-q"]) == 0


def test_a_long_recording_is_cut_to_what_a_scenario_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """10,000 frames (more than a scenario's 10,000 steps once opened and closed): the first
    4,000 are written, the rest counted in a note; the import stays linear (it took 40 s for
    8,000 frames with many strings)."""
    messages = []
    for i in range(5000):
        messages.append(("send", T0 + i / 100, json.dumps({"id": i, "q": f"query-number-{i:06d}"}), 1))
        messages.append(
            (
                "receive",
                T0 + i / 100 + 0.005,
                json.dumps({"id": i, "a": [f"answer-{i:06d}-{k}" for k in range(30)]}),
                1,
            )
        )
    import time as clock

    started = clock.monotonic()
    code, _, err = _import(
        tmp_path, _har(tmp_path, {"url": "ws://127.0.0.1:9/chatty", "messages": messages}), capsys
    )
    assert code == 0, err
    assert clock.monotonic() - started < 30
    assert "chatty: 6000 messages after the first 4000 were left out" in err


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ({"type": "send", "time": 1, "opcode": "text", "data": "x"}, "a message's opcode must be a number"),
        ({"type": "send", "time": "nan", "opcode": 1, "data": "x"}, "is no time since the epoch"),
        ({"type": "send", "time": 1e300, "opcode": 1, "data": "x"}, "is no time since the epoch"),
    ],
)
def test_malformed_fields_are_refused_with_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], message: dict, says: str
) -> None:
    har = tmp_path / "m.har"
    har.write_text(
        json.dumps(
            {
                "log": {
                    "entries": [
                        {"request": "GET /", "response": {}},
                        {
                            "_resourceType": "websocket",
                            "request": {"url": "ws://x/", "headers": []},
                            "_webSocketMessages": [message],
                        },
                    ]
                }
            }
        )
    )
    assert main(["import", str(har)]) == 2
    err = capsys.readouterr().err
    assert "entry 1, message 0" in err and says in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "entry",
    [
        {"_resourceType": "websocket", "request": {"url": "ws://x/"}, "_webSocketMessages": 5},
        {"_resourceType": "websocket", "request": {"url": "ws://x/", "headers": 5}},
    ],
)
def test_malformed_lists_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: dict) -> None:
    har = tmp_path / "m.har"
    har.write_text(json.dumps({"log": {"entries": [entry]}}))
    assert main(["import", str(har)]) == 2
    assert "entry 0: " in capsys.readouterr().err


def test_deep_nesting_is_refused_in_bounded_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 200 KB HAR of 100,000 nested brackets: refused at once (it grew to 24 GB and was killed)."""
    import tracemalloc

    har = tmp_path / "deep.har"
    har.write_text(
        '{"log": {"entries": [{"_resourceType": "websocket", "x": ' + "[" * 100_000 + "]" * 100_000 + "}]}}"
    )
    tracemalloc.start()
    code = main(["import", str(har)])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert code == 2 and peak < 20_000_000
    assert "an entry nests more than 200 levels deep" in capsys.readouterr().err


def test_an_output_that_cannot_be_written_is_refused_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    har = FIXTURES / "chromium-playwright.har"
    assert main(["import", str(har), "-o", str(tmp_path / "missing" / "x.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["import", str(har), "-o", str(tmp_path), "--force"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["record", "--upstream", "ws://127.0.0.1:9", "-o", str(tmp_path / "missing" / "x.yaml")]) == 2
    assert main(["record", "--upstream", "ws://ann:pw-SEKRIT@127.0.0.1:notaport"]) == 2
    err = capsys.readouterr().err
    assert "pw-SEKRIT" not in err and "Traceback" not in err


def test_a_firefox_har_imports_its_connections_and_says_what_it_lacks(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real Firefox recording (tests/fixtures/har/firefox-esr-153.har: Firefox ESR 153.8 on
    Debian, its own HAR auto-export, of this module's app): Firefox writes a WebSocket's
    handshake (``ws://`` URL, status 101, the request headers) and none of its messages. The
    import keeps the connection with its origin and cookie (as ``${WSLOAD_COOKIE}``), says that
    the messages are missing and where to get them, and the scenario opens the app's socket."""
    har = FIXTURES / "firefox-esr-153.har"
    log = json.loads(har.read_text())["log"]
    assert log["creator"]["name"] == "Firefox" and not any("_webSocketMessages" in e for e in log["entries"])
    out = tmp_path / "firefox.yaml"
    assert main(["import", str(har), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    text = out.read_text()
    assert "1 of 1 connection(s) came without their messages" in err and "Firefox" in err
    assert "Cookie: ${WSLOAD_COOKIE}" in text and COOKIE.split("=")[1] not in text
    assert (
        "  # no messages in the recording (Firefox's HAR export writes none): open and close only\n" in text
    )
    assert "  - open: app\n  - close: app\n" in text
    recorded_port = text.split("ws://127.0.0.1:")[1].split("/")[0]
    out.write_text(text.replace(f"127.0.0.1:{recorded_port}", app.url.removeprefix("http://")))
    monkeypatch.setenv("WSLOAD_COOKIE", COOKIE)
    report = tmp_path / "run.json"
    code = main(["run", str(out), "--json", str(report), "--report-dir", "", "-q"])
    doc = json.loads(report.read_text())
    assert code == 0, doc["error"]
    assert doc["steps"][0]["ok"] == 1 and app.refused == []
