"""Secrets never leave wsload: a run whose scenarios hold an Authorization header, ``${ENV}`` tokens
(in a header, a URL and a payload) and a client private key, against a server that echoes all of
them back in messages that then fail their expectations, writes every output format at the most
verbose level; none of them holds any secret. Also: relaxed TLS verification is said plainly."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from certs_fixtures import closed_port, pki  # noqa: F401 - the fixture
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


# --- every kind of secret, made at load time and at run time ------------------------------------

#: One secret of each kind. Several hold quotes and backslashes (their JSON-escaped forms differ),
#: the userinfo passwords percent-encoded characters (their encoded and decoded forms differ).
COOKIE = 'sid=lit-c"oo\\kie-Q1w2E3'
ENV_URL = "envurl-Tk5Lm9Rx"
ENV_HEADER = 'env-h"dr\\-Rt6Yu8'
ENV_PAYLOAD = 'env-pay"load\\-Op0As1'
CAPTURED = 'tok-"cap\\tured-Hj4Kl2'  # made by the server (echoed from a plain --var): a run-time value
API_KEY = "var-apikey-Bn3Mq5Zc"  # a plain --var rendered into X-Api-Key
SECRET_VAR = 'svar-"Wd7\\Fg9Tr'  # --secret-var, sent in a header that is not secret by name
FILE_VAR = 'file-pa"ss\\-Ej2Rk4'  # a variable listed under secrets:
TENANT = "tenant-Ux6Ip3Wq"  # a header listed in secretHeaders
NEWLINE_TOKEN = "nl-tok-Gh7Jk8Pz"  # --secret-var sent with a trailing newline (cannot be sent)
FILE_USER, FILE_PASSWORD = "fuser", "fpa!ss-Lo9Ne1"
TARGET_USER, TARGET_PASSWORD = "tuser", "tpa$ss-Mi5Vb2"

ENV = {"WSLOAD_T_URL": ENV_URL, "WSLOAD_T_HDR": ENV_HEADER, "WSLOAD_T_PAY": ENV_PAYLOAD}
VARS = ["--var", f"login_seed={CAPTURED}", "--var", f"api_key={API_KEY}"]
SECRET_VARS = ["--secret-var", f"trace_secret={SECRET_VAR}", "--secret-var", f"nl_token={NEWLINE_TOKEN}"]

LOGIN = """\
  - open: login
  - write: {connection: login, json: {access_token: "{{ login_seed }}"}}
  - read: login
    capture: {token: access_token}
  - close: login
"""


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's spelling is YAML's)."""
    return json.dumps(text)


def _headers_scenario(name: str, header: str, headers: str, extra: str = "", url: str = "/headers") -> str:
    """Log in (capture ``token``), open /headers with ``headers``, and fail on ``header``'s value,
    which the failure then quotes."""
    that = _q(f"\"{header}\" == 'deliberately wrong'")
    return (
        f"name: {name}\n{extra}connections:\n  login: {{url: /echo, timeout: 5s}}\n"
        f"  api:\n    url: {_q(url)}\n    timeout: 5s\n    headers:\n{headers}"
        f"steps:\n{LOGIN}  - open: api\n  - write: {{connection: api, text: headers please}}\n"
        f"  - name: echoed\n    read: api\n    expect: {{that: [{that}]}}\n"
    )


def _echo_scenario(name: str, field: str, value: str, extra: str = "") -> str:
    """Log in, send ``{field: value}`` to /echo and fail on it, quoting the echo."""
    that = _q(f"{field} == 'deliberately wrong'")
    return (
        f"name: {name}\n{extra}connections:\n  login: {{url: /echo, timeout: 5s}}\n"
        f"steps:\n{LOGIN}  - open: login\n  - write: {{connection: login, json: {{{field}: {_q(value)}}}}}\n"
        f"  - name: echoed\n    read: login\n    expect: {{that: [{that}]}}\n"
    )


def _every_kind(port: int) -> dict[str, str]:
    """Scenario files, each sending one kind of secret to a server that echoes it into a failure."""
    file_url = f"ws://{FILE_USER}:{quote(FILE_PASSWORD, safe='')}@127.0.0.1:{port}/headers"
    return {
        "bearer": _headers_scenario(
            "captured bearer", "Authorization", '      Authorization: "Bearer {{ token }}"\n'
        ),
        "captured": _echo_scenario("captured echoed", "t", "{{ token }}", "secrets: [token]\n"),
        "cookie": _headers_scenario("cookie literal", "Cookie", f"      Cookie: {_q(COOKIE)}\n"),
        "env_header": _headers_scenario("env header", "X-Env", '      X-Env: "${WSLOAD_T_HDR}"\n'),
        "env_payload": _echo_scenario("env payload", "p", "${WSLOAD_T_PAY}"),
        "api_key": _headers_scenario("var api key", "X-Api-Key", '      X-Api-Key: "{{ api_key }}"\n'),
        "secret_var": _headers_scenario("secret var", "X-Trace", '      X-Trace: "{{ trace_secret }}"\n'),
        "file_var": _echo_scenario(
            "file variable",
            "pw",
            "{{ password }}",
            f"variables: {{password: {_q(FILE_VAR)}}}\nsecrets: [password]\n",
        ),
        "tenant": _headers_scenario(
            "marked header", "X-Tenant", f"      X-Tenant: {_q(TENANT)}\n    secretHeaders: [X-Tenant]\n"
        ),
        "userinfo": _headers_scenario(
            "file userinfo", "Authorization", "      X-Plain: visible\n", url=file_url
        ),
        "target": _headers_scenario("target userinfo", "Authorization", "      X-Plain: visible\n"),
        # A URL the server refuses: the error of its open names the refusal, never the URL. (An
        # invalid one, with a #fragment, is refused at load now, quoting the file's masked line.)
        "env_url": (
            "name: env url\nconnections:\n"
            f"  bad: {{url: 'ws://127.0.0.1:{port}/nope?k=${{WSLOAD_T_URL}}', timeout: 5s}}\n"
            "steps:\n  - open: bad\n"
        ),
        # A header that cannot be sent: the error says why, and must not quote it.
        "newline": _headers_scenario(
            "unsendable header", "Authorization", '      Authorization: "Bearer {{ nl_token }}\\n"\n'
        ),
    }


def _secret_forms() -> dict[str, str]:
    """Every secret in every form it could leak in: raw, JSON-escaped once and twice, percent-
    encoded, base64 (the Basic credentials of the userinfo)."""
    values = {
        "cookie": COOKIE,
        "env url": ENV_URL,
        "env header": ENV_HEADER,
        "env payload": ENV_PAYLOAD,
        "captured token": CAPTURED,
        "--var api key": API_KEY,
        "--secret-var": SECRET_VAR,
        "secret variable": FILE_VAR,
        "marked header": TENANT,
        "newline token": NEWLINE_TOKEN,
        "file password": FILE_PASSWORD,
        "target password": TARGET_PASSWORD,
        "file userinfo": f"{FILE_USER}:{FILE_PASSWORD}",
        "target userinfo": f"{TARGET_USER}:{TARGET_PASSWORD}",
    }
    forms: dict[str, str] = {}
    for what, value in values.items():
        once = json.dumps(value)[1:-1]
        forms[what] = value
        forms[f"{what}, JSON-escaped"] = once
        forms[f"{what}, JSON-escaped twice"] = json.dumps(once)[1:-1]
        forms[f"{what}, percent-encoded"] = quote(value, safe="")
        forms[f"{what}, base64"] = base64.b64encode(value.encode()).decode()
    return forms


#: The scenarios whose secrets are made at run time (the load-run variant runs only these).
RUN_TIME = ("bearer", "captured", "api_key", "secret_var", "tenant", "userinfo", "target", "newline")


def _run_every_kind(
    tmp_path: Path, extra: list[str], stems: tuple[str, ...] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the scenarios of ``_every_kind`` (those in ``stems``, else all) with -v and every output
    on; return the process and every produced text (stdout, stderr, each report file, each file
    left in TMPDIR)."""
    server = EmbeddedServer().run_in_thread()
    try:
        files = []
        for stem, text in _every_kind(server.port).items():
            if stems is not None and stem not in stems:
                continue
            (tmp_path / f"{stem}.yaml").write_text(text)
            files.append(str(tmp_path / f"{stem}.yaml"))
        out, tmp = tmp_path / "out", tmp_path / "tmp"
        tmp.mkdir()
        target = f"ws://{TARGET_USER}:{quote(TARGET_PASSWORD, safe='')}@127.0.0.1:{server.port}"
        proc = subprocess.run(
            [sys.executable, "-m", "runner", "run", *files, "--target", target, *VARS, *SECRET_VARS, "-v",
             "--report-dir", str(out / "reports"), "--json", str(out / "r.json"),
             "--junit", str(out / "r.xml"), "--html", str(out / "r.html"),
             "--prometheus-textfile", str(out / "r.prom"), *extra],
            cwd=ROOT,
            env=dict(os.environ, TMPDIR=str(tmp), **ENV),
            capture_output=True,
            text=True,
            timeout=scaled(180),
        )  # fmt: skip
    finally:
        server.stop_thread()
    produced = {"stdout": proc.stdout, "stderr": proc.stderr}
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.parent != tmp_path):
        produced[str(path.relative_to(tmp_path))] = path.read_bytes().decode("utf-8", "replace")
    return proc, produced


def _leaks(produced: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, text in produced.items()
        for what, form in _secret_forms().items()
        if form in text
    ]


def _echoed(tmp_path: Path, stem: str) -> str:
    """What the failing step of scenario ``stem`` got, as its JSON report says."""
    doc = json.loads((tmp_path / "out" / f"r-{stem}.json").read_text())
    failures = doc["failures"]
    if failures:
        return str(failures[0]["actual"]) + " " + str(failures[0]["message"])
    return " ".join(e["message"] for step in doc["steps"] for e in step["errors"]) + " " + doc["error"]


def test_every_kind_of_secret_is_masked_in_every_output(tmp_path: Path) -> None:
    """Each kind of secret (sensitive header literal, ${ENV} in URL/header/payload, a captured token
    sent as Bearer and echoed, --var and --secret-var values, URL userinfo in a file and in --target,
    a secret variable, a header marked secret, an unsendable header), echoed back into a failure:
    no form of any of them is in stdout, stderr, any report or any temporary file."""
    proc, produced = _run_every_kind(tmp_path, [])
    assert proc.returncode == 1, proc.stderr  # every scenario fails on purpose, quoting what came back
    assert "Traceback" not in proc.stderr
    # The secrets really went out, came back and were shown: masked where each was quoted. The
    # unsendable header never goes out: its open fails naming the header, never quoting the value.
    for stem in _every_kind(0):
        if stem == "newline":
            assert "header 'Authorization' cannot be sent" in _echoed(tmp_path, stem)
            continue
        if stem == "env_url":
            assert "handshake rejected: HTTP 404" in _echoed(tmp_path, stem)
            continue
        assert "***" in _echoed(tmp_path, stem), (stem, _echoed(tmp_path, stem))
    assert _echoed(tmp_path, "bearer").startswith("*** expected \"Authorization\" == 'deliberately wrong'")
    assert _echoed(tmp_path, "target").startswith("Basic *** ")
    assert "visible" in produced["out/r-userinfo.html"]  # not everything is masked
    assert _leaks(produced) == []


def test_secrets_made_in_worker_processes_are_masked(tmp_path: Path) -> None:
    """The scenarios with secrets made at run time, as load runs over two worker processes: what
    the workers make (captured tokens, rendered headers, userinfo) is masked before their figures
    reach the parent; no output holds any form of any secret."""
    load = ["--workers", "2", "--vus", "2", "--iterations", "2"]
    proc, produced = _run_every_kind(tmp_path, load, RUN_TIME)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads((tmp_path / "out" / "r-bearer.json").read_text())
    assert doc["settings"]["load"]["workers"] == 2, doc["settings"]
    assert doc["failures"][0]["count"] == 4 and doc["failures"][0]["actual"] == "***"
    assert _leaks(produced) == []


# --- validation errors --------------------------------------------------------------------------

ENV_IN_BAD_PLACES = """\
name: env in bad places
target: "${WSLOAD_V_TARGET}"
connections:
  main:
    url: "${WSLOAD_V_URL}"
    timeout: "${WSLOAD_V_TIMEOUT}"
steps:
  - open: main
  - close: main
thresholds:
  - "open main.p99 < ${WSLOAD_V_THRESHOLD}"
"""

#: Two mistakes (lines 7 and 9), each quoted with the line before it; lines 6 to 8 hold literal
#: credentials (the one on line 7 a value of the wrong type, so not a header value yet).
LITERALS_NEAR_A_MISTAKE = """\
name: literal credentials near mistakes
connections:
  main:
    url: ws://127.0.0.1:9/echo
    headers:
      Cookie: "sid=cookie-secret-Lk9Jh"
      X-Api-Key: [apikey-secret-Po0Iu]
      X-Tenant: tenant-secret-Mn8Bv
    secretHeaders: [X-Tenant, X-Tenat]
steps:
  - open: main
"""

#: A YAML syntax error (line 7) right under a token: the file never parses.
YAML_ERROR_UNDER_A_TOKEN = """\
name: yaml error under a token
connections:
  main:
    url: ws://127.0.0.1:9/echo
    headers:
      X-Session-Token: tok-secret-Yt5Re
     bad: indentation
steps: []
"""

VALIDATION_ENV = {
    "WSLOAD_V_TARGET": "tgt-secret-Qw2Er",
    "WSLOAD_V_URL": "http://url-secret-Zx1Cv.example/",
    "WSLOAD_V_TIMEOUT": "tmo-secret-Vb8Nm",
    "WSLOAD_V_THRESHOLD": "thr-secret-As3Df",
}
VALIDATION_SECRETS = (
    *VALIDATION_ENV.values(),
    "url-secret-Zx1Cv",  # also inside the ws:// URL the error suggests instead
    "cookie-secret-Lk9Jh",
    "apikey-secret-Po0Iu",
    "tenant-secret-Mn8Bv",
    "tok-secret-Yt5Re",
)


def test_validation_errors_show_no_secret(tmp_path: Path) -> None:
    """`wsload validate`, `wsload run` (exit 2) and the pytest plugin report invalid `url`, `target`,
    `timeout` and threshold values that come from ${ENV}, and mistakes next to literal
    credentials, with the files' lines quoted: no secret appears in what they print."""
    files = {
        "env.ws.yaml": ENV_IN_BAD_PLACES,
        "literals.ws.yaml": LITERALS_NEAR_A_MISTAKE,
        "syntax.ws.yaml": YAML_ERROR_UNDER_A_TOKEN,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = dict(os.environ, **VALIDATION_ENV)
    commands = {
        "validate": [sys.executable, "-m", "runner", "validate", *files],
        "run": [sys.executable, "-m", "runner", "run", *files, "--report-dir", ""],
        "pytest": [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "runner.pytest_plugin",
            "-p",
            "no:cacheprovider",
            *files,
        ],
    }
    printed: dict[str, str] = {}
    for what, command in commands.items():
        proc = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=scaled(60)
        )
        assert proc.returncode == (1 if what == "pytest" else 2), (what, proc.stdout, proc.stderr)
        printed[what] = proc.stdout + proc.stderr
        # Each problem is still reported where it is, with what is wrong.
        for expected in (
            "env.ws.yaml:2:9: target: target '***' must be a ws:// or wss:// URL",
            "env.ws.yaml:5:10: connections.main.url: '***' is an http:// URL",
            "env.ws.yaml:6:14: connections.main.timeout: the text '***' is not a duration",
            "env.ws.yaml:11:5: thresholds[0]: threshold value: '***' is not a duration",
            "literals.ws.yaml:9:31: connections.main.secretHeaders[1]: 'X-Tenat' is not a header of this "
            "connection, did you mean 'X-Tenant'?",
            "literals.ws.yaml:7:18: connections.main.headers.X-Api-Key: expected text or a number",
            "  6 |       Cookie: ***\n  7 |       X-Api-Key: ***\n",
            "  8 |       X-Tenant: ***",
            "syntax.ws.yaml:7:6: YAML syntax error",
            "  6 |       X-Session-Token: ***",
        ):
            assert expected in printed[what], (what, expected, printed[what])
    assert [f"{s} in {what}" for what, text in printed.items() for s in VALIDATION_SECRETS if s in text] == []


def test_pytest_plugin_secret_var_is_masked(tmp_path: Path) -> None:
    """`--wsload-secret-var` sets a variable as `--secret-var` does: sent in a header that is not
    secret by name and echoed into the failure, it is masked in pytest's output and its JUnit XML."""
    (tmp_path / "echo.ws.yaml").write_text(
        _headers_scenario("plugin secret", "X-Trace", '      X-Trace: "{{ trace_secret }}"\n').replace(
            "name: plugin secret\n", "name: plugin secret\ntarget: embedded\n"
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "runner.pytest_plugin", "-p", "no:cacheprovider",
         "echo.ws.yaml", "--wsload-secret-var", f"trace_secret={SECRET_VAR}",
         "--wsload-var", f"login_seed={CAPTURED}", "--junitxml", "junit.xml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    assert "expected \"X-Trace\" == 'deliberately wrong', got ***" in proc.stdout, proc.stdout
    produced = {"stdout": proc.stdout, "stderr": proc.stderr, "junit": (tmp_path / "junit.xml").read_text()}
    assert _leaks(produced) == []


def test_pushgateway_credentials_are_masked_in_its_error(tmp_path: Path) -> None:
    """A pushgateway URL with userinfo that cannot be reached: exit 3, and the error that names the
    URL shows `***` for its credentials."""
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(ROOT / "scenarios" / "smoke.yaml"), "--report-dir", "",
         "--pushgateway", f"http://gw-user:gw-pa%24s-Kd4Fj@127.0.0.1:{closed_port()}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "wsload: cannot write report http://***@127.0.0.1:" in proc.stderr, proc.stderr
    assert "Kd4Fj" not in proc.stdout + proc.stderr
