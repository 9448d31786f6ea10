"""Secrets never leave wsload: a run whose scenarios hold an Authorization header, ``${ENV}`` tokens
(in a header, a URL and a payload) and a client private key, against a server that echoes all of
them back in messages that then fail their expectations, writes every output format at the most
verbose level; none of them holds any secret. Also: relaxed TLS verification is said plainly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from certs_fixtures import pki  # noqa: F401 - the fixture
from conftest import scaled

from runner.server import EmbeddedServer
from runner.server.certs import TestPKI

ROOT = Path(__file__).resolve().parent.parent

#: Quote, backslash and markup characters: a secret that changes form when JSON/XML-escaped.
AUTH = 'Bearer lit-"auth\\<&>-Zq7X9wQv'
TOKEN = 'env-tok"en\\-Kp3R8sYt'
URL_TOKEN = "urltoken-Vm4N2bHx"

CONNECTION = """\
    timeout: 5s
    ignoreSslErrors: [SelfSignedCertificate]
    sslConfig:
      localCertificate: {{file: client.pem}}
      privateKey: {{key: {{file: client.key}}, algorithm: RSA}}
    headers:
      Authorization: '{auth}'
      X-Trace: "${{WSLOAD_TEST_TOKEN}}"
"""

HEADERS_SCENARIO = """\
name: headers come back
target: embedded-tls
connections:
  api:
    url: /headers?t=${{WSLOAD_TEST_URL_TOKEN}}
{connection}steps:
  - open: api
  - write: {{connection: api, text: "send me my headers"}}
  - name: headers
    read: api
    expect: {{json: {{X-Trace: "deliberately wrong", Authorization: "deliberately wrong"}}}}
  - close: api
"""

PAYLOAD_SCENARIO = """\
name: payload comes back
target: embedded-tls
connections:
  echo:
    url: /echo
{connection}steps:
  - open: echo
  - write: {{connection: echo, json: {{token: "${{WSLOAD_TEST_TOKEN}}", auth: "{auth_json}"}}}}
  - name: echoed
    read: echo
    expect: {{json: {{token: "deliberately wrong"}}}}
  - close: echo
"""


def _pem_slices(pem: str) -> list[str]:
    """Distinctive pieces of a PEM body: the middle of several base64 lines."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [line[8:40] for line in body[1:-1:4]]


def test_no_secret_in_any_output(tmp_path: Path, pki: TestPKI) -> None:  # noqa: F811
    """Every output (stdout, stderr with -v, JSON, JUnit, HTML, Prometheus, report dir) is free of the
    Authorization value, the ${ENV} tokens (raw and JSON-escaped) and any slice of the private key."""
    client = pki.client("RSA")
    (tmp_path / "client.pem").write_text(client.cert_pem)
    (tmp_path / "client.key").write_text(client.key_pem)
    connection = CONNECTION.format(auth=AUTH.replace("'", "''"))
    (tmp_path / "headers.yaml").write_text(HEADERS_SCENARIO.format(connection=connection))
    (tmp_path / "payload.yaml").write_text(
        PAYLOAD_SCENARIO.format(connection=connection, auth_json=json.dumps(AUTH)[1:-1])
    )
    out = tmp_path / "out"
    env = dict(os.environ, WSLOAD_TEST_TOKEN=TOKEN, WSLOAD_TEST_URL_TOKEN=URL_TOKEN)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(tmp_path / "headers.yaml"),
            str(tmp_path / "payload.yaml"),
            "-v",
            "--report-dir",
            str(out / "reports"),
            "--json",
            str(out / "r.json"),
            "--junit",
            str(out / "r.xml"),
            "--html",
            str(out / "r.html"),
            "--prometheus-textfile",
            str(out / "r.prom"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert proc.returncode == 1, proc.stderr  # both scenarios fail on purpose, showing what came back
    assert "Traceback" not in proc.stderr
    files = sorted(p for p in out.rglob("*") if p.is_file())
    top = {p.name for p in files if p.parent == out}
    assert top == {"r-headers.json", "r-payload.json", "r.xml", "r-headers.html", "r-payload.html", "r.prom"}
    assert len([p for p in files if p.parent.name == "reports"]) == 3  # two JSON, one JUnit
    outputs = {"stdout": proc.stdout, "stderr": proc.stderr}
    outputs.update({str(p.relative_to(out)): p.read_text() for p in files})
    # The run did what it should: the secrets really went out and came back (and were masked).
    assert "***" in proc.stdout and "deliberately" in proc.stdout
    assert "X-Trace" in proc.stdout, "the echoed headers are not shown, so this test proves nothing"
    secrets = {
        "Authorization": AUTH,
        "Authorization token": AUTH.split(" ", 1)[1],
        "env token": TOKEN,
        "env token, JSON-escaped": json.dumps(TOKEN)[1:-1],
        "env token, escaped twice": json.dumps(json.dumps(TOKEN)[1:-1])[1:-1],
        "URL token": URL_TOKEN,
        "Authorization, JSON-escaped": json.dumps(AUTH)[1:-1],
        "Authorization, escaped twice": json.dumps(json.dumps(AUTH)[1:-1])[1:-1],
    }
    secrets.update({f"private key slice {i}": s for i, s in enumerate(_pem_slices(client.key_pem))})
    leaks = [
        f"{what} in {where}"
        for where, text in outputs.items()
        for what, value in secrets.items()
        if value in text
    ]
    assert leaks == []


def test_relaxed_tls_is_said_plainly(tmp_path: Path) -> None:
    """ignoreSslErrors relaxes verification: console and JSON say so and name the errors ignored;
    a scenario that does not relax it verifies, and fails on a self-signed certificate."""
    relaxed = ROOT / "scenarios" / "tls.yaml"
    strict = tmp_path / "strict.yaml"
    server = EmbeddedServer(tls=True).run_in_thread()  # its certificate is trusted by nobody
    try:
        strict.write_text(
            f"name: strict\nconnections:\n  s: {{url: '{server.url}/echo', timeout: 5s}}\n"
            "steps:\n  - open: s\n  - close: s\n"
        )
        proc = subprocess.run(
            [sys.executable, "-m", "runner", "run", str(relaxed), str(strict), "--report-dir", "",
             "--json", str(tmp_path / "r.json")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=scaled(60),
        )  # fmt: skip
    finally:
        server.stop_thread()
    assert proc.returncode == 1, proc.stderr
    relaxed_line = "TLS: certificate verification relaxed (allowed: SelfSignedCertificate); ignored: "
    assert proc.stdout.count(relaxed_line + "SelfSignedCertificate\n") == 1, proc.stdout
    relaxed_doc = json.loads((tmp_path / "r-tls.json").read_text())
    assert relaxed_doc["tls"] == {
        "verified": False,
        "ignored_errors": ["SelfSignedCertificate"],
        "allowed": ["SelfSignedCertificate"],
    }
    strict_doc = json.loads((tmp_path / "r-strict.json").read_text())
    assert strict_doc["tls"] == {"verified": True, "ignored_errors": [], "allowed": []}
    assert strict_doc["steps"][0]["errors"][0]["message"].endswith(
        "SSL error: SelfSignedCertificate (self-signed certificate)"
    )
