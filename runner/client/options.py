"""``ConnectOptions``: everything webSocketOpen's ``options`` mapping can say, rendered and frozen,
and the option types it is made of (``ClientCertificate``, ``ignoreSslErrors``).

The client's own types: it does not know the scenario model. The engine turns a scenario's
connection into these (``runner.steps.connect_options``): templates rendered, secrets revealed.
Frozen and hashable, so the TLS layer can cache one ``SSLContext`` per distinct option set
(building one costs milliseconds; a load run opens thousands of connections).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal, TypeAlias

__all__ = [
    "ALL_SSL_ERRORS",
    "SSL_ERROR_KEYWORDS",
    "AllSslErrors",
    "ClientCertificate",
    "ConnectOptions",
    "IgnoreSslErrors",
]

#: Qt's QSslError names, as WinCC OA's ``ignoreSslErrors`` and netGet's ``sslErrors`` use them.
SSL_ERROR_KEYWORDS: frozenset[str] = frozenset(
    {
        "UnableToGetIssuerCertificate",
        "UnableToDecryptCertificateSignature",
        "UnableToDecodeIssuerPublicKey",
        "CertificateSignatureFailed",
        "CertificateNotYetValid",
        "CertificateExpired",
        "InvalidNotBeforeField",
        "InvalidNotAfterField",
        "SelfSignedCertificate",
        "SelfSignedCertificateInChain",
        "UnableToGetLocalIssuerCertificate",
        "UnableToVerifyFirstCertificate",
        "CertificateRevoked",
        "InvalidCaCertificate",
        "PathLengthExceeded",
        "InvalidPurpose",
        "CertificateUntrusted",
        "CertificateRejected",
        "SubjectIssuerMismatch",
        "AuthorityIssuerSerialNumberMismatch",
        "NoPeerCertificate",
        "HostNameMismatch",
        "NoSslSupport",
        "CertificateBlacklisted",
        "UnspecifiedError",
    }
)


class AllSslErrors(Enum):
    """The type of ``ALL_SSL_ERRORS`` (one member, compared by identity)."""

    ALL = "all"


#: ``ignoreSslErrors`` given as a non-list or an empty list: every certificate error is ignored.
ALL_SSL_ERRORS = AllSslErrors.ALL

#: None: verify fully. ALL_SSL_ERRORS: ignore all. A frozenset: ignore only these keywords.
IgnoreSslErrors: TypeAlias = "frozenset[str] | AllSslErrors | None"


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """``sslConfig``: ``localCertificate`` and ``privateKey`` {key, algorithm}, each PEM text or
    the path of a PEM file. The key is never shown (``repr``), and no error quotes it."""

    certificate_pem: str
    key_pem: str
    algorithm: Literal["RSA", "DSA", "EC"]

    def __repr__(self) -> str:
        return f"ClientCertificate(certificate_pem=..., key_pem='***', algorithm={self.algorithm!r})"


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Options of one open. ``headers`` hold final values (templates rendered, secrets revealed)
    and overwrite the defaults of the same name (User-Agent included). ``timeout_s`` bounds TCP,
    TLS and the upgrade together; None is unlimited, as in the manual."""

    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float | None = None
    ignore_ssl_errors: IgnoreSslErrors = None
    ssl_config: ClientCertificate | None = None
    ca_certificates: str | None = None
    subprotocols: tuple[str, ...] = ()
    origin: str | None = None
    compression: bool = False
    max_message_size: int | None = 1 << 20
    source_address: str | None = None

    def __repr__(self) -> str:
        # Header values may be credentials: show names only.
        names = ", ".join(name for name, _ in self.headers)
        return (
            f"ConnectOptions(headers=[{names}], timeout_s={self.timeout_s}, "
            f"ignore_ssl_errors={self.ignore_ssl_errors!r}, ssl_config={'set' if self.ssl_config else None}, "
            f"subprotocols={self.subprotocols}, origin={self.origin!r}, compression={self.compression}, "
            f"max_message_size={self.max_message_size}, source_address={self.source_address!r})"
        )
