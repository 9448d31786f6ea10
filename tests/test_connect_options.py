"""A scenario's connection becomes the client's options (``runner.steps.connect_options``):
header templates rendered, secrets revealed, overrides applied, the client certificate handed
over in the client's own type. Pure: no socket."""

from __future__ import annotations

from runner.client import ClientCertificate
from runner.scenario.model import ClientCertificate as ScenarioCertificate
from runner.scenario.model import ConnectionSpec, Location, Secret
from runner.scenario.secrets import SecretRegistry
from runner.scenario.templates import Template
from runner.steps.connect_options import connect_options


class Rendered:
    """A template stand-in that fills in ``{{ vu }}``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def render(self, ctx: dict[str, object]) -> str:
        return self.text.replace("{{ vu }}", str(ctx.get("vu")))


def test_options_from_spec_render_headers() -> None:
    """connect_options renders header templates, reveals secrets and applies overrides."""
    spec = ConnectionSpec(
        name="main",
        url=Rendered("ws://x/"),  # type: ignore[arg-type]
        location=Location("f.yaml", 1, 1),
        headers=(("X-Vu", Rendered("vu-{{ vu }}")), ("Authorization", Secret("Bearer t"))),  # type: ignore[arg-type]
        timeout_s=3.0,
        compression=True,
    )
    opts = connect_options(spec, "ws://x/", ctx={"vu": 4}, timeout_s=1.5, source_address="127.0.0.3")
    assert opts.headers == (("X-Vu", "vu-4"), ("Authorization", "Bearer t"))
    assert (opts.timeout_s, opts.compression, opts.source_address) == (1.5, True, "127.0.0.3")
    assert connect_options(spec).timeout_s == 3.0


def test_client_certificate_is_handed_over_with_its_key_revealed() -> None:
    """The scenario's sslConfig (key kept as a Secret) reaches the client as its own
    ClientCertificate with the key's text, whose repr still never shows the key."""
    spec = ConnectionSpec(
        name="main",
        url=Rendered("wss://x/"),  # type: ignore[arg-type]
        location=Location("f.yaml", 1, 1),
        ssl_config=ScenarioCertificate("CERT PEM", Secret("KEY PEM s3cret"), "EC"),
    )
    config = connect_options(spec).ssl_config
    assert config == ClientCertificate("CERT PEM", "KEY PEM s3cret", "EC")
    assert "s3cret" not in repr(config) and "s3cret" not in repr(connect_options(spec))


def test_secret_header_values_are_registered_as_they_are_made() -> None:
    """A templated secret header's value, and the captured variable in it, are registered in
    the run's secrets when rendered; the counters vu and iteration are not."""
    spec = ConnectionSpec(
        name="main",
        url=Rendered("ws://x/"),  # type: ignore[arg-type]
        location=Location("f.yaml", 1, 1),
        headers=(("Authorization", Template("Bearer {{ token }}-{{ vu }}")),),
        secret_headers=frozenset({"authorization"}),
    )
    secrets = SecretRegistry()
    opts = connect_options(spec, ctx={"token": "tok3n", "vu": 7}, secrets=secrets)
    assert opts.headers == (("Authorization", "Bearer tok3n-7"),)
    assert secrets.mask("sent tok3n and Bearer tok3n-7 as user 7") == "sent *** and *** as user 7"
