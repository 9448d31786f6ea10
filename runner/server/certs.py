"""Test certificates made with ``cryptography``: CA, intermediate, server and client certificates,
including the broken kinds every ``ignoreSslErrors`` keyword needs (self-signed, expired, not yet
valid, wrong host, a chain missing its intermediate).

Everything is in memory; PEM text comes out, ``write_pem`` puts it in a private file when a
server needs a path.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_HOSTS",
    "CertKey",
    "KeyAlgorithm",
    "TestPKI",
    "issue",
    "make_ca",
    "make_key",
    "self_signed",
    "write_pem",
]

KeyAlgorithm = Literal["RSA", "EC", "DSA"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey

#: The names the embedded server's certificate is valid for.
DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class CertKey:
    """A certificate with its private key; ``chain`` holds issuers to send after it (PEM)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = field(default=())

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def fullchain_pem(self) -> str:
        """The certificate followed by its chain, as a server sends it."""
        extra = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain)
        return self.cert_pem + extra

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def make_key(algorithm: KeyAlgorithm = "EC") -> PrivateKey:
    """A fresh private key: EC P-256 (fast), RSA 2048, or DSA 2048 (slow, ~0.1 s)."""
    if algorithm == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "DSA":
        return dsa.generate_private_key(key_size=2048)
    raise ValueError(f"unknown key algorithm {algorithm!r}")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _build(
    subject: str,
    key: PrivateKey,
    issuer: CertKey | None,
    *,
    ca: bool,
    hosts: tuple[str, ...] = (),
    client: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    path_length: int | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    sign_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - _DAY)
        .not_valid_after(not_after or now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(sign_key, hashes.SHA256())


def make_ca(common_name: str = "wsload test CA", parent: CertKey | None = None) -> CertKey:
    """A root CA, or with ``parent`` an intermediate CA signed by it (chain included)."""
    key = make_key("EC")
    cert = _build(common_name, key, parent, ca=True)
    return CertKey(cert, key, (parent.cert, *parent.chain) if parent else ())


def issue(
    ca: CertKey,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    *,
    common_name: str | None = None,
    client: bool = False,
    key_algorithm: KeyAlgorithm = "EC",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    include_chain: bool = True,
) -> CertKey:
    """A leaf signed by ``ca``. ``include_chain=False`` leaves the intermediates out, as a
    misconfigured server does."""
    key = make_key(key_algorithm)
    cn = common_name or (hosts[0] if hosts else "wsload client")
    cert = _build(
        cn, key, ca, ca=False, hosts=hosts, client=client, not_before=not_before, not_after=not_after
    )
    chain: tuple[x509.Certificate, ...] = ()
    if include_chain and ca.chain:  # ca is an intermediate: send it (not the root)
        chain = (ca.cert,)
    return CertKey(cert, key, chain)


def self_signed(
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    *,
    key_algorithm: KeyAlgorithm = "EC",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertKey:
    """A self-signed leaf (not a CA) for ``hosts``: exactly one verify error, SelfSignedCertificate."""
    key = make_key(key_algorithm)
    cert = _build(
        hosts[0] if hosts else "wsload",
        key,
        None,
        ca=False,
        hosts=hosts,
        not_before=not_before,
        not_after=not_after,
    )
    return CertKey(cert, key)


def write_pem(directory: str, name: str, text: str) -> str:
    """Write ``text`` to a new file readable by its owner only; returns the path."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class TestPKI:
    """A root, an intermediate, and the server/client certificates the TLS tests need, each made
    on first use. Server certificates are issued by the intermediate and sent with it."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.root = make_ca("wsload test root")
        self.intermediate = make_ca("wsload test intermediate", self.root)

    @property
    def root_pem(self) -> str:
        return self.root.cert_pem

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    @cached_property
    def good(self) -> CertKey:
        return issue(self.intermediate)

    @cached_property
    def self_signed(self) -> CertKey:
        return self_signed()

    @cached_property
    def expired(self) -> CertKey:
        now = self._now()
        return issue(self.intermediate, not_before=now - 30 * _DAY, not_after=now - _DAY)

    @cached_property
    def not_yet_valid(self) -> CertKey:
        now = self._now()
        return issue(self.intermediate, not_before=now + _DAY, not_after=now + 30 * _DAY)

    @cached_property
    def wrong_host(self) -> CertKey:
        return issue(self.intermediate, ("wrong.example",))

    @cached_property
    def missing_intermediate(self) -> CertKey:
        return issue(self.intermediate, include_chain=False)

    @cached_property
    def self_signed_expired_wrong_host(self) -> CertKey:
        now = self._now()
        return self_signed(("wrong.example",), not_before=now - 30 * _DAY, not_after=now - _DAY)

    @cached_property
    def self_signed_wrong_host(self) -> CertKey:
        return self_signed(("wrong.example",))

    def client(self, key_algorithm: KeyAlgorithm = "EC") -> CertKey:
        """A client certificate signed by the intermediate (sent with it)."""
        return issue(
            self.intermediate,
            (),
            common_name=f"wsload client {key_algorithm}",
            client=True,
            key_algorithm=key_algorithm,
        )
