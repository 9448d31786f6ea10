"""The live dashboard: a small HTTP server, in a thread of its own, that pushes the run's report
to browsers once a second over Server-Sent Events while the run goes on.

What a browser sees is the HTML report itself (``runner.reports.html.report_parts``: the same
tables, charts and masking), built from the same function the run's own result comes from
(the monitor's ``snapshot``), so the last thing the page shows is exactly the report. Routes:

- ``GET /``: the page (``render_live_page``); ``GET /events``: the stream. A page opened late
  gets the latest report at once: each is the whole run so far, every second of it charted.
- ``POST /stop`` with ``Authorization: Bearer TOKEN``: stops the run as Ctrl-C does (graceful
  stop, complete report; ``runner.runtime.request_stop``). Only when the dashboard was started
  with a token, and only with that token (compared in constant time).

It binds loopback unless told otherwise; another address needs a token. On loopback it answers
only requests whose ``Host`` is a loopback name (a web page elsewhere cannot reach it through DNS
rebinding). It costs nothing without a browser connected: no report is built. With one, a report
is built at most once a second and at most ``BUDGET`` of the time of the thread that builds it
(the run's event loop, or the cluster client's thread): a report that took 30 ms is built again
after 1 s, one that took 200 ms after 4 s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from runner.errors import UsageError
from runner.reports import console
from runner.reports.html import render, render_live_page, report_parts, so_far
from runner.reports.masking import Masker
from runner.results.result import RunResult
from runner.runtime import request_stop
from runner.scenario.urls import is_loopback

__all__ = ["BUDGET", "LIVE_POINTS", "Dashboard", "DashboardError", "parse_address"]

#: The share of its thread's time building the live report may take (see the module docstring).
BUDGET = 0.05
#: Points per time chart on the live page: a one-hour run is drawn from 600 points a series, not
#: 3,600 (the report file keeps ``MAX_POINTS``), so each second's redraw stays quick.
LIVE_POINTS = 600
#: Browsers watching at once; more are refused (503) rather than slowing the run.
MAX_CLIENTS = 32
#: Connections open at once, streams included; more are closed at once. The dashboard shares the
#: run's process and its open-files limit: held half-open connections must not take the
#: descriptors the run's own connections need.
MAX_CONNECTIONS = 64
#: A request's head is read within this time and size, or the connection is closed.
HEAD_TIMEOUT_S = 10.0
HEAD_LIMIT = 16 * 1024
#: The page runs only its own inline code, talks only to this server, and is framed by nobody (no
#: page elsewhere can put it under a click on the stop button).
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: Rounds of ``--every`` the page lists (latest first).
ROUNDS_SHOWN = 10


class DashboardError(UsageError):
    """A dashboard that cannot start as asked (a bad address, a port in use, no token off loopback)."""


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``PORT`` alone: loopback; ``[::1]:8080`` for IPv6) -> (host, port)."""
    if text.count(":") > 1 and not text.startswith("["):  # a bare IPv6 address: no port given
        return text, 0
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        hint = (
            " (a scenario file? write --dashboard=PORT, or the files before --dashboard)"
            if text.endswith((".yaml", ".yml"))
            else ""
        )
        raise DashboardError(
            f"--dashboard {text!r}: expected [HOST:]PORT, e.g. 8089 or 127.0.0.1:8089{hint}"
        ) from None
    if not 0 <= number <= 65535:
        raise DashboardError(f"--dashboard {text!r}: port {number} is not between 0 and 65535")
    return host, number


class Dashboard:
    """The server (see the module docstring); ``second`` is the monitor's ``LiveView`` hook."""

    def __init__(self, host: str, port: int, *, token: str | None, masker: Masker) -> None:
        if not is_loopback(host) and not token:
            raise DashboardError(
                f"--dashboard {host}:{port}: a dashboard reachable from other machines needs "
                "--dashboard-token (whoever reaches the port would watch the run); bind 127.0.0.1 "
                "or give a token"
            )
        self.host, self.port = host, port
        self.token = token
        self.masker = masker
        self.url = ""
        self.built = 0  # reports built (live and final)
        self.build_s_max = 0.0  # the longest a live report took to build
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._watching = 0  # browsers connected (read from the run's thread: a count is enough)
        self._wanted = False  # a browser came: build the next report whatever the pacing
        self._next_ns = 0
        self._latest: bytes | None = None
        self._rounds: list[str] = []
        self._connections = 0
        self._pending: collections.deque[asyncio.StreamWriter] = collections.deque()
        self._broken = False
        self._said: set[str] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Future[None] | None = None

    # --- the server thread ----------------------------------------------------------------------

    def start(self) -> str:
        """Bind and serve in a daemon thread; the page's URL. ``DashboardError`` if it cannot."""
        thread = threading.Thread(target=self._serve, name="wsload-dashboard", daemon=True)
        thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None:
            raise DashboardError(f"--dashboard {self.host}:{self.port}: {self._error}") from None
        if not self.url:
            raise DashboardError(f"--dashboard {self.host}:{self.port}: the server did not start")
        return self.url

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by ``start`` (a port in use, an unknown host)
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(self._loop_error)
        self._stopped = self._loop.create_future()
        server = await asyncio.start_server(self._handle, self.host, self.port, limit=HEAD_LIMIT)
        port = server.sockets[0].getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{port}/"
        self.port = port
        self._ready.set()
        async with server:
            await self._stopped

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The server's own troubles (``accept()`` out of descriptors while the run holds them
        all): one line, once per kind, not a traceback per connection."""
        if isinstance(context.get("exception"), asyncio.CancelledError):
            return  # a page's handler cancelled as the server closes: nothing went wrong
        text = str(context.get("message", "error"))
        if text not in self._said:
            self._said.add(text)
            print(f"wsload: the live dashboard: {text} (said once)", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop serving (the browsers keep the last report they got)."""
        loop, stopped = self._loop, self._stopped
        if loop is None or stopped is None:
            return

        def end() -> None:
            if not stopped.done():
                stopped.set_result(None)

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(end)

    # --- what the run calls ---------------------------------------------------------------------

    def second(self, snapshot: Callable[[], RunResult]) -> None:
        """Once a second from the monitor: build and push the report so far when someone is
        watching and the pacing allows (module docstring). Whatever goes wrong here turns the
        dashboard off with one line on stderr: it must never break the run it shows (the tick
        that calls it also drives the progress line, ``abort_on_fail`` and the gauges)."""
        if self._broken or (not self._watching and not self._wanted):
            return
        try:
            self._second(snapshot)
        except Exception as exc:  # a bug of the page's, not the run's
            self._break(exc)

    def _break(self, exc: BaseException) -> None:
        self._broken = True
        print(
            f"wsload: the live dashboard stopped ({type(exc).__name__}: {self.masker.text(str(exc))}); "
            "the run and its reports go on",
            file=sys.stderr,
            flush=True,
        )

    def _second(self, snapshot: Callable[[], RunResult]) -> None:
        now = time.monotonic_ns()
        if now < self._next_ns and not self._wanted:
            return
        self._wanted = False
        began = time.perf_counter()
        result = snapshot()
        data = self._payload(result, final=False)
        spent = time.perf_counter() - began
        self.build_s_max = max(self.build_s_max, spent)
        self._next_ns = now + int(max(1.0, spent / BUDGET) * 1e9) - 50_000_000  # the ticks' jitter
        self._push(data)

    def final(self, result: RunResult, source: str | None = None) -> None:
        """The run's result: the page becomes its report (offered for download: the same as
        ``--html`` writes, ``source`` the scenario's masked text); waits (at most a few seconds)
        until every browser has it, as wsload may exit right after."""
        if self._broken:
            return
        try:
            self._final(result, source)
        except Exception as exc:  # the reports are written anyway: say so and stop the page
            self._break(exc)

    def _final(self, result: RunResult, source: str | None) -> None:
        html = render(result, self.masker, sources=[source])
        data = self._payload(result, final=True, html=html, source=source)
        verdict = console.status_word(result)
        self._rounds.insert(0, self.masker.text(f"{result.started_at[11:19]} {verdict}"))
        del self._rounds[ROUNDS_SHOWN:]
        loop = self._loop
        if loop is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._publish(data, flush=True), loop)
        with contextlib.suppress(Exception):
            done.result(timeout=5)

    # --- payloads ---------------------------------------------------------------------------------

    def _payload(self, result: RunResult, *, final: bool, html: str = "", source: str | None = None) -> bytes:
        parts = report_parts(result, self.masker, max_points=LIVE_POINTS, source=source, live=not final)
        if not final:
            result = so_far(result)  # the verdict so far, as the page's body says it
        self.built += 1
        message: dict[str, Any] = {
            "title": self.masker.text(f"{console.status_word(result)} {result.scenario_name}: wsload"),
            "body": parts["body"],
            "data": parts["data"],
            "second": int(result.duration_s),
            "verdict": console.status_word(result),
            "final": final,
            "rounds": list(self._rounds),
        }
        if final:
            message["html"] = html
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        return f"data: {text}\n\n".encode()

    def _push(self, data: bytes) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the server thread has ended
                asyncio.run_coroutine_threadsafe(self._publish(data, flush=False), loop)

    async def _publish(self, data: bytes, *, flush: bool) -> None:
        self._latest = data
        for queue in list(self._clients):
            if queue.full():  # a slow browser gets the latest report, not a backlog
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                    queue.task_done()
            queue.put_nowait(data)
        if flush:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(q.join() for q in list(self._clients))), timeout=4)

    # --- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= MAX_CONNECTIONS:
            if not self._pending:  # every slot is a page being served: refuse this one
                writer.close()
                return
            # Make room by closing the oldest connection that has not sent its request yet:
            # connections held half-open (slowloris) cannot lock the page out.
            self._pending.popleft().close()
        self._connections += 1
        self._pending.append(writer)
        try:
            await self._serve_one(reader, writer)
        finally:
            self._connections -= 1
            with contextlib.suppress(ValueError):
                self._pending.remove(writer)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        with contextlib.suppress(ValueError):
            self._pending.remove(writer)  # its request came: it is served, not evicted
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            path, _, query = target.partition("?")
            if not self._host_allowed(headers.get("host", "")):
                await self._respond(writer, 421, "text/plain", b"wrong Host for this dashboard\n")
            elif method == "GET" and not self._may_watch(query):
                refused = b"this dashboard wants its token: open the URL wsload printed\n"
                await self._respond(writer, 403, "text/plain", refused)
            elif method == "GET" and path in ("/", "/index.html"):
                await self._respond(writer, 200, "text/html; charset=utf-8", render_live_page().encode())
            elif method == "GET" and path == "/events":
                await self._events(writer)
            elif method == "POST" and path == "/stop":
                await self._stop(writer, headers)
            else:
                await self._respond(writer, 404, "text/plain", b"not found\n")
        except (ValueError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _may_watch(self, query: str) -> bool:
        """Off loopback the token guards watching too (``?token=``, as the printed URL has it):
        the network, and any web page through DNS rebinding, would see the run otherwise. On
        loopback only this machine reaches the page, and the token guards stopping."""
        if not self.token or is_loopback(self.host):
            return True
        given = urllib.parse.parse_qs(query).get("token", [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _host_allowed(self, host: str) -> bool:
        """On loopback, only loopback names (no DNS rebinding); elsewhere any (a token guards)."""
        if not is_loopback(self.host):
            return True
        name = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host[1:].split("]")[0]
        return is_loopback(name)

    async def _respond(self, writer: asyncio.StreamWriter, status: int, kind: str, body: bytes) -> None:
        reason = {
            200: "OK",
            202: "Accepted",
            403: "Forbidden",
            404: "Not Found",
            421: "Misdirected Request",
            503: "Service Unavailable",
        }.get(status, "")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
            f"Content-Security-Policy: {CSP}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= MAX_CLIENTS:
            await self._respond(writer, 503, "text/plain", f"at most {MAX_CLIENTS} pages at once\n".encode())
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            b"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 1000\n\n"
        )
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2)
        if self._latest is not None:
            queue.put_nowait(self._latest)  # a page opened late catches up at once
        self._clients.add(queue)
        self._watching = len(self._clients)
        self._wanted = True
        try:
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    writer.write(b": still here\n\n")  # keeps proxies and the browser from giving up
                    await writer.drain()
                    continue
                try:
                    if data is None:
                        return
                    writer.write(data)
                    await writer.drain()
                finally:
                    queue.task_done()  # written (or the browser is gone): ``final`` waits for it
        finally:
            self._clients.discard(queue)
            self._watching = len(self._clients)

    async def _stop(self, writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        if not self.token:
            await self._respond(
                writer,
                403,
                "text/plain",
                b"this dashboard was started without --dashboard-token: stopping from the page is off\n",
            )
            return
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            await self._respond(writer, 403, "text/plain", b"wrong or missing token\n")
            return
        request_stop()
        await self._respond(
            writer, 202, "text/plain", b"stopping, as Ctrl-C: a run ends gracefully and its report follows\n"
        )
