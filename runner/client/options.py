"""``ConnectOptions``: everything webSocketOpen's ``options`` mapping can say, rendered and frozen.

Frozen and hashable, so the TLS layer can cache one ``SSLContext`` per distinct option set
(building one costs milliseconds; a load run opens thousands of connections).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.scenario.model import ClientCertificate, Secret

if TYPE_CHECKING:
    from runner.scenario.model import ConnectionSpec, IgnoreSslErrors
    from runner.scenario.secrets import SecretRegistry

__all__ = ["ConnectOptions"]


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

    @classmethod
    def from_spec(
        cls,
        spec: ConnectionSpec,
        url: str | None = None,
        *,
        ctx: Mapping[str, object] | None = None,
        timeout_s: float | None = None,
        source_address: str | None = None,
        secrets: SecretRegistry | None = None,
    ) -> ConnectOptions:
        """Options for opening ``spec`` (at the already rendered ``url``): header templates are
        rendered with ``ctx`` and secrets revealed; ``timeout_s`` / ``source_address`` override
        the spec's (an open step's own time-out, a worker's assigned address). Each value rendered
        for a secret header is registered in ``secrets`` as it is made, with the values of the
        variables it was made from (static ones are the scenario's own ``secrets``)."""
        del url  # the URL is passed to open(); accepted here so callers can stay uniform
        values = ctx or {}
        if secrets is None or not spec.secret_headers:
            headers = tuple((name, _render(value, values)) for name, value in spec.headers)
        else:
            headers = tuple(
                _render_secret(name, value, values, spec, secrets) for name, value in spec.headers
            )
        return cls(
            headers=headers,
            timeout_s=spec.timeout_s if timeout_s is None else timeout_s,
            ignore_ssl_errors=spec.ignore_ssl_errors,
            ssl_config=spec.ssl_config,
            ca_certificates=spec.ca_certificates,
            subprotocols=tuple(spec.subprotocols),
            origin=spec.origin,
            compression=spec.compression,
            max_message_size=spec.max_message_size,
            source_address=source_address or spec.source_address,
        )


#: Built-in variables that count users and iterations: their values are never secret.
_COUNTERS = frozenset({"vu", "iteration"})


def _render_secret(
    name: str, value: object, ctx: Mapping[str, object], spec: ConnectionSpec, secrets: SecretRegistry
) -> tuple[str, str]:
    """``(name, value)`` rendered; a secret header's templated value registered, with the text of
    each variable in it (a captured token alone, not only ``Bearer <token>``; ``vu`` and
    ``iteration`` are counters, not secrets). A static value is a load-time secret already."""
    parts = getattr(value, "render_parts", None)
    if parts is None or name.lower() not in spec.secret_headers:
        return name, _render(value, ctx)
    text, pieces = parts(ctx)
    secrets.add_header(name, text, (t for root, t in pieces if root is not None and root not in _COUNTERS))
    return name, text


def _render(value: object, ctx: Mapping[str, object]) -> str:
    """A header value as it goes on the wire: templates rendered, secrets revealed."""
    if isinstance(value, Secret):
        value = value.reveal()
    render = getattr(value, "render", None)
    if render is not None:
        value = render(ctx)
    if isinstance(value, Secret):
        value = value.reveal()
    return str(value)
