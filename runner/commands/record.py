"""``wsload record``: a WebSocket proxy that writes the sessions it forwards as a scenario.

Point a browser or an app at the proxy instead of the server; use it; press Ctrl-C (or give
``--duration``). The scenario is written as ``wsload import`` writes one from a HAR, with the
upstream's URLs, so it runs against the real server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from pathlib import Path

from runner.errors import ExitCode, RunError, UsageError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``record``."""
    parser = subparsers.add_parser(
        "record",
        help="record WebSocket sessions through a proxy and write them as a scenario",
        description="Forward WebSocket sessions from --listen to --upstream, recording every message, and "
        "write them as a scenario on Ctrl-C (or after --duration), as 'wsload import' does from a HAR.",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="[HOST:]PORT",
        help="where clients connect (default: a free port on 127.0.0.1)",
    )
    parser.add_argument(
        "--upstream", required=True, metavar="URL", help="the real server: ws://host[:port] or wss://..."
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="write the scenario here (default: standard output)"
    )
    parser.add_argument(
        "--upstream-ca", type=Path, metavar="PEM", help="CA bundle to verify a wss:// upstream with"
    )
    parser.add_argument("--think-time", type=float, default=0.0, metavar="SCALE", help="as for wsload import")
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this long (default: at Ctrl-C)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    parser.set_defaults(handler=run)


def _listen(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [::1]:8765
        host, _, port = text[1:].partition("]:")
        if not port:
            raise UsageError(f"--listen {text!r}: give [HOST]:PORT, e.g. [::1]:8765")
        return _port(host, port, text)
    host, _, port = text.rpartition(":")
    return _port(host, port, text)


def _port(host: str, port: str, text: str) -> tuple[str, int]:
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"--listen {text!r}: give [HOST:]PORT, e.g. 127.0.0.1:8765") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"--listen {text!r}: the port must be 0-65535")
    return host or "127.0.0.1", number


def run(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from runner.commands.import_har import check_output
    from runner.har.convert import redact_url
    from runner.har.record import Recorder

    shown = redact_url(args.upstream)
    try:
        parts = urlsplit(args.upstream)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        raise UsageError(f"--upstream {shown!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(f"--upstream {shown!r}: give a ws:// or wss:// URL with a host")
    if not 0 <= args.think_time <= 100:
        raise UsageError(f"--think-time {args.think_time:g}: give a scale from 0 to 100")
    check_output(args.output, args.force)
    if args.duration is not None and not 0 < args.duration <= 86400:
        raise UsageError("--duration: give seconds, more than 0 and at most a day")
    host, port = _listen(args.listen)
    try:
        ca = args.upstream_ca.read_text() if args.upstream_ca else None
        recorder = Recorder(args.upstream, ca)
    except (OSError, UnicodeDecodeError, ssl.SSLError) as exc:
        raise UsageError(f"--upstream-ca {args.upstream_ca}: not a readable PEM bundle ({exc})") from None
    asyncio.run(_record(recorder, host, port, args.duration))
    sessions = recorder.sessions()
    for reason in recorder.refused:  # (the recorder redacts the upstream in them)
        print(f"wsload record: refused a session: {reason}", file=sys.stderr)
    if not sessions:
        print("wsload record: no session was recorded; nothing written", file=sys.stderr)
        return int(ExitCode.INVALID)
    from runner.commands.import_har import write_scenario

    return write_scenario(sessions, source=f"a recording of {args.upstream}", args=args)  # (redacted there)


async def _record(recorder: object, host: str, port: int, duration: float | None) -> None:
    from runner.har.convert import redact_url
    from runner.har.record import Recorder
    from runner.runtime import on_stop_signals

    assert isinstance(recorder, Recorder)
    try:
        listening = await recorder.start(host, port)
    except OSError as exc:
        raise RunError(f"wsload record: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    where = f"[{host}]" if ":" in host else host
    print(
        f"wsload record: forwarding ws://{where}:{listening}/... to {redact_url(recorder.upstream)}/...; "
        + ("Ctrl-C to stop and write the scenario" if duration is None else f"stopping after {duration:g}s"),
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    with on_stop_signals(lambda _sig: stop.set()), contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    await recorder.stop()
