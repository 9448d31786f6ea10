"""Pure mappings of the connection layer: URL checks, errno, OpenSSL codes, ignoreSslErrors."""

from __future__ import annotations

import errno

from runner.client import (
    ALL_SSL_ERRORS,
    SSL_ERROR_KEYWORDS,
    ClientCertificate,
    ConnectOptions,
    ErrorKind,
    LastError,
    parse_url,
)
from runner.client.codes import keywords_for_verify_code, os_error
from runner.client.tls import decide, hostname_matches
from runner.scenario.model import Secret
from runner.server.certs import self_signed


def test_parse_url_accepts_ws_and_wss() -> None:
    """ws and wss URLs parse to host, port and resource."""
    uri = parse_url("wss://example.org/path?q=1")
    assert not isinstance(uri, LastError)
    assert (uri.host, uri.port, uri.resource_name, uri.secure) == ("example.org", 443, "/path?q=1", True)


def test_parse_url_unsupported_scheme() -> None:
    """http:// is an unsupported scheme, not a syntax error."""
    err = parse_url("http://example.org/")
    assert isinstance(err, LastError) and err.kind is ErrorKind.UNSUPPORTED_SCHEME and err.rc == -1
    assert err.text.startswith("unsupported scheme: 'http'")


def test_parse_url_syntax_errors() -> None:
    """Relative URLs, missing host and bad ports are invalid urls."""
    for url in ("example.org", "ws://", "ws://host:99999/", "ws://host:abc/"):
        err = parse_url(url)
        assert isinstance(err, LastError) and err.kind is ErrorKind.INVALID_URL, url


def test_verify_codes_map_to_qt_keywords() -> None:
    """OpenSSL verify codes give Qt's keywords; 20 also gives UnableToVerifyFirstCertificate."""
    assert keywords_for_verify_code(18) == ("SelfSignedCertificate",)
    assert keywords_for_verify_code(10) == ("CertificateExpired",)
    assert keywords_for_verify_code(62) == ("HostNameMismatch",)
    assert keywords_for_verify_code(20) == (
        "UnableToGetLocalIssuerCertificate",
        "UnableToVerifyFirstCertificate",
    )
    assert keywords_for_verify_code(9999) == ("UnspecifiedError",)
    every = {k for code in range(100) for k in keywords_for_verify_code(code)}
    assert every <= SSL_ERROR_KEYWORDS


def test_os_errors_classified() -> None:
    """Refused connections are network errors with the address; EMFILE is no free sockets."""
    refused = os_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "127.0.0.1", 9)
    assert refused.kind is ErrorKind.NETWORK
    assert refused.text == "network error: connection refused to 127.0.0.1:9"
    emfile = os_error(OSError(errno.EMFILE, "Too many open files"), "::1", 80)
    assert emfile.kind is ErrorKind.NO_FREE_SOCKETS and "[::1]:80" in emfile.text


def test_decide_all_and_none_and_lists() -> None:
    """ALL ignores everything; a list ignores only its keywords; None ignores nothing."""
    found = ["SelfSignedCertificate", "CertificateExpired"]
    assert decide(found, ALL_SSL_ERRORS).ok
    partial = decide(found, frozenset({"SelfSignedCertificate"}))
    assert (partial.ok, partial.refused, partial.ignored) == (
        False,
        "CertificateExpired",
        ("SelfSignedCertificate",),
    )
    assert decide(found, frozenset(found)).ignored == tuple(found)
    assert decide(found, None).refused == "SelfSignedCertificate"
    assert decide([], frozenset()).ok


def test_hostname_matching() -> None:
    """IP SANs match IPs only; DNS SANs match names, with a single left-most wildcard label."""
    cert = self_signed(("127.0.0.1", "localhost", "*.example.org")).cert
    assert hostname_matches(cert, "127.0.0.1")
    assert hostname_matches(cert, "LOCALHOST")
    assert hostname_matches(cert, "a.example.org")
    assert not hostname_matches(cert, "a.b.example.org")
    assert not hostname_matches(cert, "example.org")
    assert not hostname_matches(cert, "127.0.0.2")
    assert not hostname_matches(cert, "::1")


def test_options_repr_hides_header_values() -> None:
    """ConnectOptions' repr names headers but never shows their values (tokens)."""
    opts = ConnectOptions(headers=(("Authorization", "Bearer s3cret"),))
    assert "Authorization" in repr(opts) and "s3cret" not in repr(opts)
    assert Secret("x") != Secret("y")


def test_client_certificate_repr_hides_the_key() -> None:
    """The client's ClientCertificate never shows its private key, in repr or in str."""
    config = ClientCertificate("-----BEGIN CERTIFICATE-----", "-----BEGIN PRIVATE KEY-----\nc2VjcmV0", "EC")
    for shown in (repr(config), str(config), repr(ConnectOptions(ssl_config=config))):
        assert "c2VjcmV0" not in shown and "PRIVATE" not in shown


def test_scenario_model_uses_the_clients_option_types() -> None:
    """runner.model's ALL_SSL_ERRORS and SSL_ERROR_KEYWORDS are the client's own objects, so a
    loaded scenario's ignoreSslErrors means the same to the client (compared by identity)."""
    from runner.scenario import model

    assert model.ALL_SSL_ERRORS is ALL_SSL_ERRORS and model.SSL_ERROR_KEYWORDS is SSL_ERROR_KEYWORDS
