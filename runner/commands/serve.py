"""``wsload serve``: run the embedded test server until SIGINT/SIGTERM.

Prints one line per URL (routes, and the hang listener) so scripts can read the chosen port.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from runner.errors import ExitCode, RunError, UsageError

if TYPE_CHECKING:
    from runner.server.certs import CertKey

# The server and its certificates (``cryptography``) are imported when ``serve`` runs: the
# command line builds every command's parser, and ``wsload run`` has no use for them (measured:
# 9.7 MiB of every run's and worker's memory, most of it ``cryptography``).

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="start the embedded test server",
        description="Serve /echo /rpc /push /close /slow /status/NNN /headers, plus a listener that "
        "never answers (for time-outs). With --tls a self-signed certificate for 127.0.0.1 and "
        "localhost is generated unless --cert/--key are given.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    parser.add_argument("--tls", action="store_true", help="serve wss://")
    parser.add_argument(
        "--mtls",
        action="store_true",
        help="require a client certificate (implies --tls) signed by a CA in --client-ca; without "
        "--client-ca a CA is generated, and a client certificate it signed and its key are written "
        "to files whose paths are printed (removed at exit)",
    )
    parser.add_argument("--cert", help="server certificate chain PEM file (implies --tls)")
    parser.add_argument("--key", help="server private key PEM file")
    parser.add_argument("--client-ca", help="PEM file of CAs that client certificates must chain to")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes sharing one port (SO_REUSEPORT), for runs with more connections "
        "than one process can hold (about 20,000 open files each) or more messages than one process "
        "can echo (default 1)",
    )
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for helpers
    parser.set_defaults(handler=run)
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; exit code 0 on such a stop, 3 when the server cannot start."""
    if not 1 <= args.processes <= 64:
        raise UsageError(f"--processes {args.processes}: give 1 to 64")
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
            return asyncio.run(_serve(args))
        return uvloop.run(_serve(args))
    except OSError as exc:
        raise RunError(f"cannot start the server on {args.host}:{args.port}: {exc.strerror or exc}") from None


async def _serve(args: argparse.Namespace) -> int:
    from runner.server import ROUTES, EmbeddedServer
    from runner.server.certs import issue, make_ca, self_signed, write_pem

    tls = bool(args.tls or args.mtls or args.cert)
    if args.cert and not args.key:
        raise RunError("--cert needs --key")
    client_ca = args.client_ca
    client_bundle = None
    if args.mtls and not client_ca:
        ca = make_ca("wsload serve client CA")
        client_ca = ca.cert_pem
        client_bundle = issue(ca, (), common_name="wsload client", client=True)
    several = args.processes > 1
    # Several processes must show one certificate: a client that probes one process and connects
    # to another would otherwise see a different certificate and refuse it (CertificateRejected).
    certificate = self_signed() if several and tls and not args.cert else None
    server = EmbeddedServer(
        args.host,
        args.port,
        tls=tls,
        certfile=args.cert,
        keyfile=args.key,
        client_ca=client_ca,
        require_client_cert=bool(args.mtls),
        certificate=certificate,
        reuse_port=several or args.reuse_port,
    )
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.reuse_port and not sys.stdin.isatty():  # a helper of `--processes`: see _start_helpers
        threading.Thread(target=_stop_at_eof, args=(loop, stop), daemon=True).start()
    out = sys.stdout
    for route in ROUTES:
        shown = route.replace("NNN", "403").replace("NAME", "lobby")
        print(f"{route:12} {server.url}{shown}", file=out)
    print(f"{'hang':12} {server.hang_url}  (accepts TCP, never answers)", file=out)
    if tls and server.ca_pem and not args.cert:
        print(
            "certificate: self-signed for 127.0.0.1 and localhost; allow it with "
            "ignoreSslErrors: [SelfSignedCertificate], or trust this PEM:",
            file=out,
        )
        print(server.ca_pem, end="", file=out)
    with tempfile.TemporaryDirectory(prefix="wsload-serve-") as directory:  # 0700, removed at exit
        if client_bundle is not None:  # the key goes to a 0600 file, never to the terminal
            cert_path = write_pem(directory, "client.pem", client_bundle.cert_pem)
            key_path = write_pem(directory, "client.key", client_bundle.key_pem)
            print(
                f"client certificate for --mtls: {cert_path} (key: {key_path}, EC; removed at exit)", file=out
            )
        helpers = _start_helpers(args, server.port, directory, certificate, client_ca) if several else []
        processes = f" from {args.processes} processes" if several else ""
        print(f"serving on port {server.port}{processes}; stop with Ctrl-C", file=out, flush=True)
        try:
            await stop.wait()
        finally:
            for helper in helpers:
                helper.terminate()
            await server.stop()
            for helper in helpers:
                try:
                    helper.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    helper.kill()
                    helper.wait()
    return int(ExitCode.PASSED)


def _start_helpers(
    args: argparse.Namespace,
    port: int,
    directory: str,
    certificate: CertKey | None,
    client_ca: str | None,
) -> list[subprocess.Popen[bytes]]:
    """Start ``--processes - 1`` more servers on ``port`` with the same certificate and client CA;
    the kernel spreads new connections over all of them. They end with this process (SIGTERM)."""
    from runner.server.certs import write_pem

    command = [sys.executable, "-m", "runner", "serve", "--host", args.host, "--port", str(port)]
    command.append("--reuse-port")
    if certificate is not None:  # the key goes through a 0600 file in our private directory
        command += [
            "--cert", write_pem(directory, "server.pem", certificate.fullchain_pem),
            "--key", write_pem(directory, "server.key", certificate.key_pem),
        ]  # fmt: skip
    elif args.cert:
        command += ["--cert", args.cert, "--key", args.key]
    if args.mtls and client_ca:
        inline = "-----BEGIN" in client_ca
        ca_file = write_pem(directory, "client-ca.pem", client_ca) if inline else client_ca
        command += ["--mtls", "--client-ca", ca_file]
    return [
        # stdin stays open while we live: a helper whose stdin closes (we died) stops by itself.
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        for _ in range(args.processes - 1)
    ]


def _stop_at_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` once standard input ends: the parent that holds its other end is gone."""
    sys.stdin.buffer.read()
    loop.call_soon_threadsafe(stop.set)
