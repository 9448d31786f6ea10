"""A scenario's connection (``ConnectionSpec``) as the client's ``ConnectOptions`` for one open:
header templates rendered, secrets revealed (and each secret value registered as it is made),
the TLS client certificate handed over with its key revealed.

The client knows nothing of scenarios; this is where the open step crosses from one to the other.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.client.options import ClientCertificate, ConnectOptions
from runner.scenario.model import ClientCertificate as ScenarioCertificate
from runner.scenario.model import ConnectionSpec, Secret
from runner.scenario.secrets import SecretRegistry

__all__ = ["connect_options"]

#: Built-in variables that count users and iterations: their values are never secret.
_COUNTERS = frozenset({"vu", "iteration"})


def connect_options(
    spec: ConnectionSpec,
    url: str | None = None,
    *,
    ctx: Mapping[str, object] | None = None,
    timeout_s: float | None = None,
    source_address: str | None = None,
    secrets: SecretRegistry | None = None,
) -> ConnectOptions:
    """Options for opening ``spec`` (at the already rendered ``url``, which the open takes; it is
    accepted here so the open step passes what it has in one place): header templates are
    rendered with ``ctx`` and secrets revealed; ``timeout_s`` / ``source_address`` override the
    spec's (an open step's own time-out, a worker's assigned address). Each value rendered for a
    secret header is registered in ``secrets`` as it is made, with the values of the variables it
    was made from (static ones are the scenario's own ``secrets``)."""
    del url
    values = ctx or {}
    if secrets is None or not spec.secret_headers:
        headers = tuple((name, _render(value, values)) for name, value in spec.headers)
    else:
        headers = tuple(_render_secret(name, value, values, spec, secrets) for name, value in spec.headers)
    return ConnectOptions(
        headers=headers,
        timeout_s=spec.timeout_s if timeout_s is None else timeout_s,
        ignore_ssl_errors=spec.ignore_ssl_errors,
        ssl_config=_certificate(spec.ssl_config),
        ca_certificates=spec.ca_certificates,
        subprotocols=tuple(spec.subprotocols),
        origin=spec.origin,
        compression=spec.compression,
        max_message_size=spec.max_message_size,
        source_address=source_address or spec.source_address,
    )


def _certificate(config: ScenarioCertificate | None) -> ClientCertificate | None:
    """``sslConfig`` for the client: the key revealed (the client never shows it)."""
    if config is None:
        return None
    return ClientCertificate(config.certificate_pem, config.key_pem.reveal(), config.algorithm)


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
