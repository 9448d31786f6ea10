"""TLS for wss: SSL contexts, ``sslConfig`` client certificates, and ``ignoreSslErrors``.

``ignoreSslErrors`` semantics (WinCC OA, after Qt): None verifies fully; ALL_SSL_ERRORS ignores
every certificate error; a set of keywords ignores only those, and any other error fails the open.
Python's ``ssl`` stops at the first verify error, so a set is handled in two handshakes:

1. a *probe* with pyOpenSSL whose verify callback lets verification continue and collects every
   error of the chain (as Qt does), plus our own host-name check of the leaf;
2. if every error found is allowed, the real connection with ``ssl`` *pinned* to the probe's leaf
   (the leaf is the only trust anchor, partial chains allowed, time checks off, no host-name
   check) and, after the handshake, the peer's DER compared with the probe's. A server that
   presents anything else fails closed. If no error was found, the real connection verifies fully.

Both handshakes happen before the HTTP upgrade is sent and count against the open's time-out.
The pure parts (``decide``, ``hostname_matches``) are unit-tested without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from runner.client.codes import ErrorKind, LastError, keywords_for_verify_code
from runner.client.options import ALL_SSL_ERRORS, ClientCertificate, ConnectOptions
from runner.errors import BadValue

if TYPE_CHECKING:
    # ``cryptography`` is imported where a certificate is read, not with the module: it is 8 MiB
    # of every process's memory (measured: RSS after ``import cryptography.x509``), and a run
    # over ws://, or over wss:// with verification on, never reads one.
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

__all__ = [
    "ProbeResult",
    "SslDecision",
    "TlsArgumentError",
    "client_context",
    "decide",
    "hostname_matches",
    "leaf_errors",
    "pinned_context",
    "probe",
    "ssl_error",
]

_NO_CHECK_TIME = 0x200000  # X509_V_FLAG_NO_CHECK_TIME; not exported by the ssl module


class TlsArgumentError(BadValue):
    """``sslConfig`` or ``caCertificates`` is unusable; the text never contains key material."""


# --- pure decisions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SslDecision:
    """Outcome of comparing the errors found with ``ignoreSslErrors``."""

    ok: bool
    refused: str | None  # the first keyword not allowed
    ignored: tuple[str, ...]  # keywords found and allowed


def decide(found: Iterable[str], ignore: object) -> SslDecision:
    """Apply ``ignoreSslErrors`` to the keywords found (in the order found, duplicates dropped)."""
    seen = tuple(dict.fromkeys(found))
    if ignore is ALL_SSL_ERRORS:
        return SslDecision(True, None, seen)
    allowed = ignore if isinstance(ignore, frozenset) else frozenset()
    for keyword in seen:
        if keyword not in allowed:
            return SslDecision(False, keyword, tuple(k for k in seen if k in allowed))
    return SslDecision(True, None, seen)


def hostname_matches(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 matching as OpenSSL does it: an IP against IP SANs; a name against DNS SANs with a
    left-most ``*`` label, or the CN when there is no SAN at all."""
    from cryptography import x509

    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if ip is not None:
        return san is not None and ip in san.get_values_for_type(x509.IPAddress)
    if san is not None:
        names = san.get_values_for_type(x509.DNSName)
    else:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    host = host.lower().rstrip(".")
    return any(_dns_match(name.lower().rstrip("."), host) for name in names)


@lru_cache(maxsize=64)
def leaf_errors(leaf_der: bytes, host: str) -> tuple[str, ...]:
    """The certificate errors that can be read off a leaf certificate alone, as Qt names them:
    what a connection with verification off (``ignoreSslErrors: true``) still reports having met.
    Self-signed, expired or not yet valid, and a host name it does not cover; a chain problem
    needs the chain, which a handshake without verification does not keep, so it is not listed.
    Cached by certificate: every open of a load run sees the same one."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(leaf_der)
    except ValueError:
        return ("UnspecifiedError",)
    found: list[str] = []
    if cert.issuer == cert.subject:
        found.append("SelfSignedCertificate")
    now = datetime.now(UTC)
    if cert.not_valid_after_utc < now:
        found.append("CertificateExpired")
    if cert.not_valid_before_utc > now:
        found.append("CertificateNotYetValid")
    if not hostname_matches(cert, host):
        found.append("HostNameMismatch")
    return tuple(found)


def _dns_match(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    first, _, rest = host.partition(".")
    return bool(first) and rest == pattern[2:] and "." in rest


def ssl_error(exc: BaseException) -> LastError:
    """An ``ssl`` failure as a last error: verify failures with their Qt keyword."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = int(exc.verify_code or 0)
        keyword = keywords_for_verify_code(code)[0]
        return LastError.of(ErrorKind.SSL, f"{keyword} ({exc.verify_message})", keyword=keyword)
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return LastError.of(ErrorKind.SSL, f"handshake failed ({str(reason).lower()})")


# --- client certificates ----------------------------------------------------------------------


def _key_types() -> dict[str, type]:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

    return {"RSA": rsa.RSAPrivateKey, "EC": ec.EllipticCurvePrivateKey, "DSA": dsa.DSAPrivateKey}


@dataclass(frozen=True, slots=True)
class _LoadedClientCert:
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey
    algorithm: str


def _read_pem(value: str, what: str) -> str:
    """``sslConfig`` values are PEM text or a path to a PEM file."""
    if "-----BEGIN" in value:
        return value
    try:
        with open(value, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise TlsArgumentError(f"sslConfig {what}: not PEM text and not a readable file") from exc


@lru_cache(maxsize=64)
def _load_client_cert(config: ClientCertificate) -> _LoadedClientCert:
    """Parse and cross-check ``sslConfig`` once: certificate, key, algorithm, key fits cert."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(
            _read_pem(config.certificate_pem, "localCertificate").encode()
        )
    except ValueError as exc:
        raise TlsArgumentError("sslConfig localCertificate is not a PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(_read_pem(config.key_pem, "privateKey").encode(), None)
    except TypeError as exc:
        raise TlsArgumentError("sslConfig privateKey is encrypted; give an unencrypted PEM key") from exc
    except (ValueError, Exception):  # never chain the parser's text: it may quote the key
        raise TlsArgumentError("sslConfig privateKey is not a PEM private key") from None
    algorithm = config.algorithm.upper()
    key_types = _key_types()
    expected = key_types.get(algorithm)
    if expected is None:
        raise TlsArgumentError(f"sslConfig privateKey algorithm {config.algorithm!r} is not RSA, DSA or EC")
    if not isinstance(key, expected):
        actual = next((name for name, t in key_types.items() if isinstance(key, t)), type(key).__name__)
        raise TlsArgumentError(f"sslConfig privateKey is a {actual} key, but algorithm says {algorithm}")
    cert = certs[0]
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise TlsArgumentError("sslConfig privateKey does not match localCertificate")
    return _LoadedClientCert(cert, tuple(certs[1:]), key, algorithm)  # type: ignore[arg-type]


def _load_into(ctx: ssl.SSLContext, loaded: _LoadedClientCert) -> None:
    """``load_cert_chain`` reads files only: give it an anonymous memory file (memfd), or a
    0600 file in a 0700 temporary directory that is deleted at once. Password is always b""
    so an encrypted key can never make OpenSSL prompt on a terminal."""
    from cryptography.hazmat.primitives import serialization

    enc = serialization.Encoding.PEM
    pem = b"".join(c.public_bytes(enc) for c in (loaded.cert, *loaded.chain)) + loaded.key.private_bytes(
        enc, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("wsload-client-cert", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}", password=b"")
        finally:
            os.close(fd)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wsload-") as directory:  # created 0700
        path = os.path.join(directory, "client.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
        try:
            ctx.load_cert_chain(path, password=b"")
        finally:
            os.unlink(path)


def _load_cadata(ctx: ssl.SSLContext, ca_certificates: str) -> None:
    try:
        ctx.load_verify_locations(cadata=_read_pem(ca_certificates, "caCertificates"))
    except ssl.SSLError as exc:
        raise TlsArgumentError("caCertificates holds no usable PEM certificate") from exc


# --- contexts ---------------------------------------------------------------------------------


def client_context(options: ConnectOptions, verify: bool) -> ssl.SSLContext:
    """The context of the real connection: full verification (system CAs plus
    ``ca_certificates``), or none at all (``ignoreSslErrors`` as a non-list). Cached per TLS
    options, so per-user headers do not cost a new context per open."""
    return _client_context(options.ssl_config, options.ca_certificates, verify)


@lru_cache(maxsize=64)
def _client_context(
    config: ClientCertificate | None, ca_certificates: str | None, verify: bool
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_certificates:
        _load_cadata(ctx, ca_certificates)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    _apply_client_cert(ctx, config)
    return ctx


def pinned_context(options: ConnectOptions, leaf_der: bytes) -> ssl.SSLContext:
    """A context that accepts exactly the certificate ``leaf_der`` (the probe's), whatever its
    issuer, dates or names; the caller still compares the peer's DER after the handshake."""
    return _pinned_context(options.ssl_config, leaf_der)


@lru_cache(maxsize=256)
def _pinned_context(config: ClientCertificate | None, leaf_der: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=leaf_der)
    ctx.verify_flags = ctx.verify_flags | ssl.VERIFY_X509_PARTIAL_CHAIN | _NO_CHECK_TIME
    _apply_client_cert(ctx, config)
    return ctx


def _apply_client_cert(ctx: ssl.SSLContext, config: ClientCertificate | None) -> None:
    if config is None:
        return
    loaded = _load_client_cert(config)
    if loaded.algorithm == "DSA":  # DSA cannot sign in TLS 1.3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        _load_into(ctx, loaded)
    except ssl.SSLError as exc:
        raise TlsArgumentError(f"sslConfig could not be loaded ({exc.reason or 'OpenSSL error'})") from None


# --- the probe --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the probe saw: every error as a Qt keyword (chain order, host name last), the
    first OpenSSL message of each, and the leaf's DER for pinning."""

    keywords: tuple[str, ...]
    messages: dict[str, str]
    leaf_der: bytes


def _probe_context(options: ConnectOptions) -> object:
    return _probe_context_for(options.ssl_config, options.ca_certificates)


@lru_cache(maxsize=64)
def _probe_context_for(config: ClientCertificate | None, ca_certificates: str | None) -> object:
    from cryptography import x509
    from OpenSSL import SSL, crypto

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    paths = ssl.get_default_verify_paths()
    if paths.cafile or paths.capath:
        with contextlib.suppress(SSL.Error):  # a missing system bundle: only caCertificates count
            ctx.load_verify_locations(paths.cafile, paths.capath)
    if ca_certificates:
        store = ctx.get_cert_store()
        try:
            bundle = x509.load_pem_x509_certificates(_read_pem(ca_certificates, "caCertificates").encode())
        except ValueError as exc:
            raise TlsArgumentError("caCertificates holds no usable PEM certificate") from exc
        for cert in bundle:
            store.add_cert(crypto.X509.from_cryptography(cert))  # type: ignore[union-attr]
    if config is not None:
        loaded = _load_client_cert(config)
        ctx.use_certificate(loaded.cert)
        for extra in loaded.chain:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(loaded.key)
        if loaded.algorithm == "DSA":
            ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    return ctx


async def probe(sock: socket.socket, host: str, options: ConnectOptions) -> ProbeResult:
    """Run one TLS handshake on the connected ``sock`` with pyOpenSSL over memory BIOs, letting
    verification continue past each error and recording it. Raises ``ssl.SSLError``-like
    ``ConnectionError``/``OSError`` on transport failures; the caller closes ``sock``."""
    from OpenSSL import SSL

    ctx = _probe_context(options)
    errors: list[tuple[int, int, str]] = []

    def collect(_conn: object, _cert: object, errno: int, depth: int, _ok: int) -> bool:
        if errno:
            errors.append((depth, errno, _verify_message(errno)))
        return True  # continue, as Qt's callback does

    conn = SSL.Connection(ctx, None)  # type: ignore[arg-type]
    conn.set_verify(SSL.VERIFY_PEER, collect)
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        conn.set_tlsext_host_name(host.encode("idna"))
    conn.set_connect_state()
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn.do_handshake()
            done = True
        except SSL.WantReadError:
            done = False
        except SSL.Error as exc:
            raise ssl.SSLError(f"handshake failed ({_pyopenssl_reason(exc)})") from None
        pending = _drain_bio(conn)
        if pending:
            await loop.sock_sendall(sock, pending)
        if done:
            break
        data = await loop.sock_recv(sock, 65536)
        if not data:
            raise ConnectionResetError("connection closed by peer during TLS handshake")
        conn.bio_write(data)
    peer = conn.get_peer_certificate(as_cryptography=True)
    if peer is None:
        raise ssl.SSLError("handshake failed (no peer certificate)")
    keywords: list[str] = []
    messages: dict[str, str] = {}
    for _depth, code, message in errors:
        for keyword in keywords_for_verify_code(code):
            keywords.append(keyword)
            messages.setdefault(keyword, message)
    if not hostname_matches(peer, host):
        keywords.append("HostNameMismatch")
        messages.setdefault("HostNameMismatch", f"hostname mismatch, certificate is not valid for {host!r}")
    from cryptography.hazmat.primitives import serialization

    return ProbeResult(
        tuple(dict.fromkeys(keywords)), messages, peer.public_bytes(serialization.Encoding.DER)
    )


def _drain_bio(conn: object) -> bytes:
    from OpenSSL import SSL

    chunks = []
    while True:
        try:
            chunk = conn.bio_read(65536)  # type: ignore[attr-defined]
        except SSL.WantReadError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _verify_message(code: int) -> str:
    from OpenSSL._util import ffi, lib

    return str(ffi.string(lib.X509_verify_cert_error_string(code)).decode(errors="replace"))


def _pyopenssl_reason(exc: Exception) -> str:
    try:
        return str(exc.args[0][0][2]).lower()
    except (IndexError, TypeError):
        return str(exc).lower() or type(exc).__name__
