"""wss against real TLS servers on 127.0.0.1: ignoreSslErrors as WinCC OA defines it, sslConfig
client certificates (RSA, EC, DSA), mTLS, and argument errors that never show the key."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from certs_fixtures import client_config, pki  # noqa: F401  (pki is a fixture)
from conftest import scaled

from runner.client import (
    ALL_SSL_ERRORS,
    ClientCertificate,
    ConnectOptions,
    ErrorKind,
    WebSocketClient,
)
from runner.server import EmbeddedServer
from runner.server.certs import CertKey, TestPKI, self_signed, write_pem

Arun = Callable[[Callable[[], Any]], Any]
SELF_SIGNED = frozenset({"SelfSignedCertificate"})


async def _open(cert: CertKey, opts: ConnectOptions, host: str = "127.0.0.1") -> tuple[int, WebSocketClient]:
    """Open (and echo once over) a connection to a TLS server presenting ``cert``."""
    async with EmbeddedServer(certificate=cert) as server:
        client = WebSocketClient()
        sock = await client.open(
            server.url.replace("127.0.0.1", host) + "/echo",
            ConnectOptions(**{**_fields(opts), "timeout_s": scaled(5)}),
        )
        if sock >= 0:
            assert client.write(sock, "tls") == 3
            assert (await client.read(sock, scaled(2))).data == "tls"
            await client.close(sock)
        return sock, client


def _fields(opts: ConnectOptions) -> dict[str, Any]:
    return {name: getattr(opts, name) for name in opts.__dataclass_fields__}


def _refused(arun: Arun, cert: CertKey, opts: ConnectOptions, keyword: str, host: str = "127.0.0.1") -> str:
    sock, client = arun(lambda: _open(cert, opts, host))
    err = client.last_error()
    assert sock == -1 and err is not None, err
    assert (err.kind, err.keyword) == (ErrorKind.SSL, keyword), err
    assert err.text.startswith(f"SSL error: {keyword} (")
    return err.text


def _accepted(arun: Arun, cert: CertKey, opts: ConnectOptions, host: str = "127.0.0.1") -> WebSocketClient:
    sock, client = arun(lambda: _open(cert, opts, host))
    assert sock >= 0, client.last_error()
    return client


def test_self_signed_refused_by_default(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """Without ignoreSslErrors a self-signed certificate fails with SelfSignedCertificate."""
    _refused(arun, pki.self_signed, ConnectOptions(), "SelfSignedCertificate")


def test_self_signed_allowed_by_keyword(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """[SelfSignedCertificate] lets a self-signed certificate through, and says it was ignored."""

    async def body() -> None:
        async with EmbeddedServer(certificate=pki.self_signed) as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo", ConnectOptions(ignore_ssl_errors=SELF_SIGNED))
            assert sock >= 0, client.last_error()
            status = client.tls_status(sock)
            assert status is not None and not status.verified
            assert status.ignored_errors == ("SelfSignedCertificate",)
            timing = client.timing(sock)
            assert timing.tcp_ns > 0 and timing.tls_ns > 0 and timing.upgrade_ns > 0

    arun(body)


def test_all_ignored(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """ignoreSslErrors as a non-list accepts a certificate with several errors at once, and says
    which errors it met (read off the certificate: verification was off)."""

    async def body() -> None:
        async with EmbeddedServer(certificate=pki.self_signed_expired_wrong_host) as server:
            client = WebSocketClient()
            sock = await client.open(server.url + "/echo", ConnectOptions(ignore_ssl_errors=ALL_SSL_ERRORS))
            assert sock >= 0, client.last_error()
            status = client.tls_status(sock)
            assert status is not None and status.all_ignored and not status.verified
            expected = ("SelfSignedCertificate", "CertificateExpired", "HostNameMismatch")
            assert status.ignored_errors == expected

    arun(body)


def test_trusted_chain_verifies(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A certificate chaining to a CA in caCertificates verifies fully, with or without a keyword list."""
    _accepted(arun, pki.good, ConnectOptions(ca_certificates=pki.root_pem))
    _accepted(arun, pki.good, ConnectOptions(ca_certificates=pki.root_pem, ignore_ssl_errors=SELF_SIGNED))
    _accepted(arun, pki.good, ConnectOptions(ca_certificates=pki.root_pem), host="localhost")


def test_unknown_ca(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A chain to a CA nobody trusts fails with UnableToGetLocalIssuerCertificate, even with
    [SelfSignedCertificate] allowed."""
    _refused(arun, pki.good, ConnectOptions(), "UnableToGetLocalIssuerCertificate")
    _refused(
        arun, pki.good, ConnectOptions(ignore_ssl_errors=SELF_SIGNED), "UnableToGetLocalIssuerCertificate"
    )


def test_root_in_chain_untrusted(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A chain ending in an untrusted root that the server sends gives SelfSignedCertificateInChain."""
    with_root = CertKey(pki.good.cert, pki.good.key, (pki.intermediate.cert, pki.root.cert))
    _refused(arun, with_root, ConnectOptions(), "SelfSignedCertificateInChain")
    _accepted(arun, with_root, ConnectOptions(ignore_ssl_errors=frozenset({"SelfSignedCertificateInChain"})))


def test_expired(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """An expired certificate fails with CertificateExpired unless that keyword is allowed."""
    _refused(arun, pki.expired, ConnectOptions(ca_certificates=pki.root_pem), "CertificateExpired")
    _refused(
        arun,
        pki.expired,
        ConnectOptions(ca_certificates=pki.root_pem, ignore_ssl_errors=SELF_SIGNED),
        "CertificateExpired",
    )
    _accepted(
        arun,
        pki.expired,
        ConnectOptions(ca_certificates=pki.root_pem, ignore_ssl_errors=frozenset({"CertificateExpired"})),
    )


def test_not_yet_valid(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A certificate valid only from tomorrow fails with CertificateNotYetValid unless allowed."""
    _refused(arun, pki.not_yet_valid, ConnectOptions(ca_certificates=pki.root_pem), "CertificateNotYetValid")
    _accepted(
        arun,
        pki.not_yet_valid,
        ConnectOptions(ca_certificates=pki.root_pem, ignore_ssl_errors=frozenset({"CertificateNotYetValid"})),
    )


def test_wrong_host(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A certificate for another host fails with HostNameMismatch (by IP and by name) unless allowed."""
    opts = ConnectOptions(ca_certificates=pki.root_pem)
    _refused(arun, pki.wrong_host, opts, "HostNameMismatch")
    _refused(arun, pki.wrong_host, opts, "HostNameMismatch", host="localhost")
    allowed = ConnectOptions(ca_certificates=pki.root_pem, ignore_ssl_errors=frozenset({"HostNameMismatch"}))
    _refused(
        arun,
        pki.wrong_host,
        ConnectOptions(ca_certificates=pki.root_pem, ignore_ssl_errors=SELF_SIGNED),
        "HostNameMismatch",
        host="localhost",
    )
    _accepted(arun, pki.wrong_host, allowed, host="localhost")


def test_missing_intermediate(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A server that leaves out its intermediate fails with UnableToGetLocalIssuerCertificate;
    allowing it (and UnableToVerifyFirstCertificate, which Qt reports with it) lets it through."""
    opts = ConnectOptions(ca_certificates=pki.root_pem)
    _refused(arun, pki.missing_intermediate, opts, "UnableToGetLocalIssuerCertificate")
    _refused(
        arun,
        pki.missing_intermediate,
        ConnectOptions(
            ca_certificates=pki.root_pem, ignore_ssl_errors=frozenset({"UnableToGetLocalIssuerCertificate"})
        ),
        "UnableToVerifyFirstCertificate",
    )
    _accepted(
        arun,
        pki.missing_intermediate,
        ConnectOptions(
            ca_certificates=pki.root_pem,
            ignore_ssl_errors=frozenset(
                {"UnableToGetLocalIssuerCertificate", "UnableToVerifyFirstCertificate"}
            ),
        ),
    )


def test_several_errors_only_some_allowed(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """Self-signed, expired and for another host: each error not in the list refuses the open, by name."""
    cert = pki.self_signed_expired_wrong_host
    _refused(arun, cert, ConnectOptions(ignore_ssl_errors=SELF_SIGNED), "CertificateExpired")
    text = _refused(
        arun,
        cert,
        ConnectOptions(ignore_ssl_errors=frozenset({"SelfSignedCertificate", "CertificateExpired"})),
        "HostNameMismatch",
    )
    assert "127.0.0.1" in text
    _refused(
        arun,
        cert,
        ConnectOptions(ignore_ssl_errors=frozenset({"HostNameMismatch", "CertificateExpired"})),
        "SelfSignedCertificate",
    )
    client = _accepted(
        arun,
        cert,
        ConnectOptions(
            ignore_ssl_errors=frozenset({"SelfSignedCertificate", "CertificateExpired", "HostNameMismatch"})
        ),
    )
    assert client.last_error() is None


def test_certificate_changed_after_probe_fails_closed(arun: Arun, tmp_path: Path) -> None:
    """If the server presents another certificate to the real connection than to the probe, the
    open fails (CertificateRejected) instead of trusting the unexamined one."""
    first, second = self_signed(("localhost",)), self_signed(("localhost",))
    other = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.load_cert_chain(write_pem(str(tmp_path), "second.pem", second.cert_pem + second.key_pem))

    async def body() -> None:
        async with EmbeddedServer(certificate=first) as server:
            names: list[str | None] = []

            def switch(sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
                names.append(name)
                if len(names) % 2 == 0:  # the probe sees the first certificate, the real one the second
                    sslobj.context = other

            assert server.ssl_context is not None
            server.ssl_context.sni_callback = switch  # type: ignore[assignment]
            client = WebSocketClient()
            rc = await client.open(
                f"wss://localhost:{server.port}/echo",
                ConnectOptions(ignore_ssl_errors=SELF_SIGNED, timeout_s=scaled(5)),
            )
            assert names == ["localhost", "localhost"]
            assert rc == -1
            err = client.last_error()
            assert err is not None and err.keyword == "CertificateRejected", err

    arun(body)


# --- client certificates ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EC", "RSA", "DSA"])
def test_mtls_accepted(arun: Arun, pki: TestPKI, algorithm: str) -> None:  # noqa: F811
    """A server requiring a client certificate accepts ours (EC, RSA, DSA; DSA capped at TLS 1.2)."""
    cert = pki.client(algorithm)  # type: ignore[arg-type]

    async def body() -> None:
        async with EmbeddedServer(tls=True, client_ca=pki.root_pem, require_client_cert=True) as server:
            client = WebSocketClient()
            opts = ConnectOptions(
                ssl_config=client_config(cert, algorithm), ca_certificates=server.ca_pem, timeout_s=scaled(5)
            )
            sock = await client.open(server.url + "/echo", opts)
            assert sock >= 0, client.last_error()
            client.write(sock, "mtls")
            assert (await client.read(sock, scaled(2))).data == "mtls"
            version = client.connection(sock).transport.get_extra_info("ssl_object").version()  # type: ignore[union-attr]
            assert version == ("TLSv1.2" if algorithm == "DSA" else "TLSv1.3")
            # the probe path presents the certificate too
            sock2 = await client.open(
                server.url + "/echo",
                ConnectOptions(
                    **{**_fields(opts), "ca_certificates": None, "ignore_ssl_errors": SELF_SIGNED}
                ),
            )
            assert sock2 >= 0, client.last_error()

    arun(body)


def test_mtls_rejected_without_certificate(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A server requiring a client certificate refuses a client without one: -1, SSL error."""

    async def body() -> None:
        async with EmbeddedServer(tls=True, client_ca=pki.root_pem, require_client_cert=True) as server:
            client = WebSocketClient()
            rc = await client.open(
                server.url + "/echo", ConnectOptions(ca_certificates=server.ca_pem, timeout_s=scaled(5))
            )
            assert rc == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.SSL and "client certificate" in err.text, err

    arun(body)


def test_mtls_rejected_untrusted_client(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A client certificate from a CA the server does not trust is refused: -1, SSL error."""
    stranger = self_signed((), key_algorithm="EC")

    async def body() -> None:
        async with EmbeddedServer(tls=True, client_ca=pki.root_pem, require_client_cert=True) as server:
            client = WebSocketClient()
            opts = ConnectOptions(
                ssl_config=client_config(stranger, "EC"), ca_certificates=server.ca_pem, timeout_s=scaled(5)
            )
            assert await client.open(server.url + "/echo", opts) == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.SSL, err

    arun(body)


def _argument_error(arun: Arun, config: ClientCertificate, expected: str) -> None:
    async def body() -> None:
        async with EmbeddedServer(tls=True) as server:
            client = WebSocketClient()
            assert await client.open(server.url + "/echo", ConnectOptions(ssl_config=config)) == -1
            err = client.last_error()
            assert err is not None and err.kind is ErrorKind.ARGUMENT, err
            assert err.text.startswith("argument error in options: ") and expected in err.text, err
            key = config.key_pem
            body_lines = [line for line in key.splitlines() if line and not line.startswith("-----")]
            assert not any(line in err.text for line in body_lines)
            assert "PRIVATE KEY" not in err.text and "BEGIN" not in err.text

    arun(body)


def test_key_not_matching_certificate(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A key of another certificate is an argument error naming the mismatch, never the key."""
    _argument_error(arun, client_config(pki.client("EC"), "EC", key=pki.client("EC")), "does not match")


def test_key_not_matching_algorithm(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """An EC key declared as RSA is an argument error that says both."""
    _argument_error(arun, client_config(pki.client("EC"), "RSA"), "is a EC key, but algorithm says RSA")


def test_garbage_key_and_certificate(arun: Arun, pki: TestPKI) -> None:  # noqa: F811
    """A key or certificate that is not PEM is an argument error."""
    good = pki.client("EC")
    _argument_error(
        arun,
        ClientCertificate(
            good.cert_pem, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n", "EC"
        ),
        "not a PEM private key",
    )
    _argument_error(
        arun,
        ClientCertificate("-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n", good.key_pem, "EC"),
        "not a PEM certificate",
    )


def test_ignoring_all_errors_says_which_were_met(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ignoreSslErrors: true against the self-signed embedded TLS server: the report says
    verification was relaxed for all and that a self-signed certificate was met; a plain ws://
    run of a scenario that allows it says nothing about TLS."""
    from runner.cli import main

    text = (
        "name: all\ntarget: embedded-tls\n"
        "connections: {main: {url: /echo, timeout: 5s, ignoreSslErrors: true}}\n"
        "steps: [{open: main}, {close: main}]\n"
    )
    path = tmp_path / "all.yaml"
    path.write_text(text)
    assert main(["run", str(path), "--report-dir", ""]) == 0
    out = capsys.readouterr().out
    assert "TLS: certificate verification relaxed (allowed: all); ignored: SelfSignedCertificate" in out
    path.write_text(text.replace("embedded-tls", "embedded"))
    assert main(["run", str(path), "--report-dir", ""]) == 0
    assert "TLS" not in capsys.readouterr().out
