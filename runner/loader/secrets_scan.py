"""The secrets known before a scenario is built, found in the raw document: secret headers'
literal values, userinfo in URLs, inline private keys and the values of secret variables; and
which variables (and captures) are secret. It reads the document as parsed, before the schema
checks it, so even a file the schema rejects has its secrets masked in the errors: every lookup
here tolerates any shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runner.loader.document import BUILTIN_VARIABLES
from runner.scenario.secrets import SecretText, is_sensitive_header, userinfo_secrets, value_texts
from runner.scenario.templates import Template, TemplateError

__all__ = ["secret_header_names", "secret_names", "static_secrets"]


def static_secrets(data: object, cli_vars: Mapping[str, str], target: str | None) -> set[str]:
    """Every secret value known before the run: secret headers' literal values, userinfo in the
    target and the URLs, inline private keys, and the values of secret variables."""
    found: set[str] = set()
    declared = data.get("variables") if isinstance(data, dict) else None
    variables: dict[str, object] = dict(declared) if isinstance(declared, dict) else {}
    variables.update(cli_vars)
    for name in secret_names(data, cli_vars):
        if name in variables:
            found.update(map(str, value_texts(variables[name])))
    for url in (target, data.get("target") if isinstance(data, dict) else None):
        if isinstance(url, str):
            found.update(userinfo_secrets(url))
    for spec in _connections(data):
        if isinstance(spec.get("url"), str):
            found.update(userinfo_secrets(spec["url"]))
        secret_headers = secret_header_names(spec)
        headers = spec.get("headers")
        for hname, hvalue in headers.items() if isinstance(headers, dict) else ():
            if str(hname).lower() in secret_headers:
                found.add(hvalue if isinstance(hvalue, str) else json.dumps(hvalue, default=str))
        key = (
            (spec.get("sslConfig") or {}).get("privateKey")
            if isinstance(spec.get("sslConfig"), dict)
            else None
        )
        if isinstance(key, dict) and isinstance(key.get("key"), str):
            found.add(key["key"])
    return found


def secret_names(data: object, cli_vars: Mapping[str, str]) -> set[str]:
    """Variables (and captures) whose values are secret: listed under ``secrets:``, given with
    ``--secret-var``, or read by a secret header's template or a URL's userinfo. Built-ins
    (``vu``, ``iteration``) are counters and never secret."""
    names = {n for n, v in cli_vars.items() if isinstance(v, SecretText)}
    listed = data.get("secrets") if isinstance(data, dict) else None
    if isinstance(listed, list):
        names.update(n for n in listed if isinstance(n, str))
    for spec in _connections(data):
        secret_headers = secret_header_names(spec)
        headers = spec.get("headers")
        for hname, hvalue in headers.items() if isinstance(headers, dict) else ():
            if isinstance(hvalue, str) and str(hname).lower() in secret_headers:
                names |= _template_names(hvalue)
        if isinstance(spec.get("url"), str):
            names |= _userinfo_names(spec["url"])
    return names - BUILTIN_VARIABLES


def secret_header_names(spec: Mapping[str, Any]) -> set[str]:
    """Lower-case names of a connection's headers whose values are secret: by their name, or
    listed in ``secretHeaders``."""
    headers = spec.get("headers")
    marked = spec.get("secretHeaders")
    names = {str(n).lower() for n in marked if isinstance(n, str)} if isinstance(marked, list) else set()
    if isinstance(headers, dict):
        names.update(str(n).lower() for n in headers if is_sensitive_header(str(n)))
    return names


def _connections(data: object) -> list[Mapping[str, Any]]:
    """The connection specs that are mappings (any other shape is the schema's to report)."""
    connections = data.get("connections") if isinstance(data, dict) else None
    if not isinstance(connections, dict):
        return []
    return [spec for spec in connections.values() if isinstance(spec, dict)]


def _template_names(text: str) -> frozenset[str]:
    """The variables a template reads (none when it does not compile: that is reported elsewhere)."""
    try:
        return Template(text).names
    except TemplateError:
        return frozenset()


def _userinfo_names(url: str) -> frozenset[str]:
    """The variables a URL template reads in its userinfo (``ws://{{ user }}:{{ pw }}@host/``)."""
    rest = url.partition("://")[2]
    info, at, _ = rest.partition("/")[0].rpartition("@")
    return _template_names(info) if at else frozenset()
