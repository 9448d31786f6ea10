"""Certificates for the TLS tests, made once per session, and small helpers shared by the
client, TLS and server tests (import the fixtures into a test module to use them)."""

from __future__ import annotations

import socket

import pytest

from runner.client import ClientCertificate
from runner.server.certs import CertKey, TestPKI


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    """A root, an intermediate and every server/client certificate kind, made on first use."""
    return TestPKI()


def client_config(cert: CertKey, algorithm: str, key: CertKey | None = None) -> ClientCertificate:
    """``sslConfig`` for ``cert`` (sent with its chain), with ``key``'s private key if given."""
    return ClientCertificate(cert.fullchain_pem, (key or cert).key_pem, algorithm)  # type: ignore[arg-type]


def closed_port() -> int:
    """A port on 127.0.0.1 that was just bound and released: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
