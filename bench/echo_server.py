"""A fast echo server for benchmarks: picows (C-accelerated, MIT) on uvloop, one process.

Prints ``PORT <n>`` per listening port, then serves until stdin closes (or SIGTERM), so the
process that started it controls its life. Text and binary frames come back as sent; a close
frame is answered and the TCP connection ended by the server.

    python bench/echo_server.py --ports 2 --core 1            # two ports, pinned to core 1
    python bench/echo_server.py --tls-cert c.pem --tls-key k.pem
    python bench/echo_server.py --reuse-port --port 9001    # several processes on one port
    python bench/echo_server.py --impl embedded                # wsload's own EmbeddedServer /echo

The bench scripts start one or more of these through ``_harness.EchoServers``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    return ctx


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    ctx = server_tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    servers: list[object] = []
    if args.impl == "picows":
        from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

        class Echo(WSListener):  # type: ignore[misc]
            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                kind = frame.msg_type
                if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                    transport.send(kind, frame.get_payload_as_bytes())
                elif kind is WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code(), frame.get_close_message())
                    transport.disconnect()

        for _ in range(args.ports):
            server = await ws_create_server(
                lambda _request: Echo(),
                args.host,
                args.port,
                reuse_port=args.reuse_port or None,
                ssl=ctx,
                backlog=args.backlog,
                websocket_handshake_timeout=30,
            )
            servers.append(server)
            print(f"PORT {server.sockets[0].getsockname()[1]} /", flush=True)
    else:
        from runner.server import EmbeddedServer

        for _ in range(args.ports):
            embedded = await EmbeddedServer(args.host, 0).start()
            servers.append(embedded)
            print(f"PORT {embedded.port} /echo", flush=True)
    print("READY", flush=True)
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: done.done() or done.set_result(None))
    reader = loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes stdin
    await asyncio.wait([done, reader], return_when=asyncio.FIRST_COMPLETED)
    os._exit(0)  # no orderly close of thousands of connections: the parent is measuring


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", choices=["picows", "embedded"], default="picows")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports", type=int, default=1, help="listening ports in this process (default 1)")
    parser.add_argument("--core", type=int, help="pin this process to one CPU core")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument(
        "--reuse-port", action="store_true", help="SO_REUSEPORT: several processes share one port"
    )
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--tls-cert", help="certificate chain PEM (serve wss://, TLS 1.3 only)")
    parser.add_argument("--tls-key", help="private key PEM")
    args = parser.parse_args(argv)
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    uvloop.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
