"""System limits checked *before* a load run: open files per process and ephemeral ports.

A run that would hit ``RLIMIT_NOFILE`` or run out of ephemeral ports half-way fails in the
worst way (thousands of ``no more free sockets`` errors mixed into real results), so the numbers
are worked out up front: how many connections at most, how many processes, how many source
addresses, and a ``RunError`` naming the numbers when no plan fits.

Facts this relies on: one connection is one file descriptor in the process that holds it (two
when the embedded server runs in the same process, as it does in every worker); a source address
reaches one server ``host:port`` through the ephemeral port range
(``/proc/sys/net/ipv4/ip_local_port_range``, about 28,000).
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from runner.errors import RunError
from runner.scenario.model import LoadSpec, Scenario
from runner.scenario.plan import default_max_vus, peak_vus
from runner.scenario.urls import is_loopback, resolve_url

__all__ = [
    "FD_RESERVE",
    "LimitPlan",
    "default_max_vus",
    "ephemeral_ports",
    "loopback_sources",
    "peak_vus",
    "plan_limits",
    "raise_nofile",
    "usable_cpus",
]

#: Descriptors kept free per process for the event loop, pipes, logs, reports and imports.
FD_RESERVE = 200
#: Below this many connections (or starts per second) one process is enough by default.
MULTI_PROCESS_FROM = 500
#: Share of the ephemeral range used per source address (TIME_WAIT and other programs need some).
PORT_SHARE = 0.9


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one (allowed without privileges); the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def ephemeral_ports() -> int:
    """How many local ports one source address can use towards one server address:port."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            low, high = (int(x) for x in f.read().split())
        return high - low + 1
    except (OSError, ValueError):
        return 28_232


def loopback_sources(limits: LimitPlan) -> LimitPlan:
    """Against a loopback server (the embedded one), more connections than one source address
    has ports come from 127.0.0.2, .3, ...: every 127.x address is this machine's."""
    usable = int(limits.ports_per_address * PORT_SHARE)
    if limits.connections > usable and not limits.source_addresses:
        n = -(-limits.connections // usable)
        return replace(limits, source_addresses=tuple(f"127.0.0.{i}" for i in range(1, n + 1)))
    return limits


def _connection_hosts(scenario: Scenario, target: str | None) -> set[tuple[str, int]]:
    hosts: set[tuple[str, int]] = set()
    for spec in scenario.connections.values():
        # URLs with templates only render at run time: take the static part's host when there is one.
        url = resolve_url(getattr(spec.url, "source", str(spec.url)), target)
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "wss" else 80)
        except ValueError:
            continue
        if parts.hostname:
            hosts.add((parts.hostname, port))
    return hosts


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """What the checks decided: processes, source addresses, and the numbers behind them."""

    workers: int
    connections: int  # at most, all processes
    per_process: int  # descriptors one worker needs at most (connections + reserve)
    nofile: int
    source_addresses: tuple[str, ...]
    ports_per_address: int
    reason: str  # why this many workers


def usable_cpus() -> int:
    """The cores this process may run on: its affinity mask (``taskset``, a cpuset container), not
    the machine's count. Under ``taskset -c 0`` on two cores, one worker per machine core put two
    workers on one core, each then measuring the other's queue (a fan-out bench saw it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def plan_limits(
    scenario: Scenario,
    load: LoadSpec,
    *,
    workers: int | None,
    target: str | None,
    embedded: bool,
    cpus: int | None = None,
) -> LimitPlan:
    """Decide workers and source addresses for ``load`` or raise ``RunError`` naming the limit.

    Default workers: one per core when the run holds ``MULTI_PROCESS_FROM`` connections or more
    (or starts that many per second), else 1; more than the cores when one process could not
    hold its share of descriptors. An explicit ``workers`` is never changed, only refused.
    """
    cpus = cpus or usable_cpus()
    nofile = raise_nofile()
    per_vu = max(1, len(scenario.connections))
    vus = peak_vus(load)
    conns = vus * per_vu
    budget = nofile - FD_RESERVE
    peak_rate = max([load.rate or 0.0, *(s.target for s in load.stages)]) if load.model == "open" else 0.0
    if workers is not None:
        n = workers
        reason = "as asked (--workers / load.workers)"
    elif conns >= MULTI_PROCESS_FROM or peak_rate >= MULTI_PROCESS_FROM:
        n = cpus
        reason = f"one per core: {conns:,} connections / {peak_rate:g} starts/s reach {MULTI_PROCESS_FROM}"
    else:
        n = 1
        reason = f"one process: {conns:,} connections are few"
    n = max(1, min(n, max(vus, 1)))
    # The embedded server runs in each process that runs users (one per worker), so it holds
    # one more descriptor per connection of that process.
    fds_per_conn = 2 if embedded else 1
    need = math.ceil(conns / n) * fds_per_conn
    if need > budget:
        wanted = math.ceil(conns * fds_per_conn / budget)
        if workers is None:
            n = wanted
            need = math.ceil(conns / n) * fds_per_conn
            reason = (
                f"{n} processes so each holds at most {need:,} descriptors for {conns:,} connections "
                f"(limit {nofile:,})"
            )
        else:
            raise RunError(
                f"limit: {vus:,} virtual users x {per_vu} connection(s) = {conns:,} connections need "
                f"{need + FD_RESERVE:,} open files in each of {n} process(es)"
                + (" (the embedded server's side included)" if embedded else "")
                + f"; the limit is {nofile:,} per process (RLIMIT_NOFILE hard limit, not raisable): "
                f"use --workers {wanted} or more"
            )
    ports = ephemeral_ports()
    usable = int(ports * PORT_SHARE)
    hosts = _connection_hosts(scenario, target)
    addresses = tuple(load.source_addresses)
    if conns > usable:
        if not addresses:
            if hosts and all(is_loopback(h) for h, _ in hosts):
                addresses = tuple(f"127.0.0.{i}" for i in range(1, math.ceil(conns / usable) + 1))
            else:
                raise RunError(
                    f"limit: {conns:,} connections to one server address:port need more than the "
                    f"{ports:,} ephemeral ports of one source address; give source addresses "
                    f"(load.source_addresses or --source-address, {math.ceil(conns / usable)} or more)"
                )
        elif len(addresses) * usable < conns:
            raise RunError(
                f"limit: {conns:,} connections over {len(addresses)} source address(es) x ~{usable:,} "
                f"usable ephemeral ports each is not enough; give {math.ceil(conns / usable)} or more"
            )
    return LimitPlan(
        workers=n,
        connections=conns,
        per_process=need + FD_RESERVE,
        nofile=nofile,
        source_addresses=addresses,
        ports_per_address=ports,
        reason=reason,
    )
