"""Bring a lab up in network namespaces, tear it down, report on it, run commands in it.

Layout for prefix ``P`` (default ``ts``; env ``TWINSCAN_LAB_PREFIX``):

* ``P-scan``: the scanner namespace. It holds the bridge ``Pbr`` with the scanner address and no
  default route, so a packet to anything outside the lab subnet fails with "network unreachable".
* ``P-h-NAME``: one namespace per host, its ``eth0`` a veth whose peer ``PvN`` is a bridge port.
  nftables table ``ip twinscan`` holds its loss, conntrack and per-port rules; its ICMP rate
  limit sysctls are set per namespace; its services run as one process
  (``python -m twinscan.lab.services``).
* ``P-sink``: silent hosts have no namespace of their own; every namespace routes them via the
  sink address, whose namespace drops every IP packet before routing (it answers ARP only).
  So probes leave, the next hop resolves (nmap's own ARP works) and nothing ever answers.

Everything lives inside namespaces the lab creates, so deleting them removes every interface
and rule; the state file ``/run/twinscan/P.json`` records the namespaces and PIDs, and ``down``
also sweeps every namespace named ``P-*`` so a crashed ``up`` is cleaned as well.

Over 400 lines: building (both families), state, teardown and ``exec`` share the naming and
the state file; splitting them would spread the one place that knows what a lab owns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twinscan.core.errors import EnvironmentProblem, UsageError
from twinscan.core.paths import lab_state_dir as state_dir
from twinscan.lab.spec import Action, Conntrack, Host, LabSpec

DEFAULT_PREFIX = "ts"
PREFIX_ENV = "TWINSCAN_LAB_PREFIX"
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,7}$")
_SERVICES_READY_S = 15.0


class LabNotUp(UsageError):
    """A command that needs a running lab found none."""


class LabSetupFailed(EnvironmentProblem):
    """A command that builds the lab failed."""


def resolve_prefix(prefix: str | None = None) -> str:
    value = prefix or os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX
    if not _PREFIX_RE.match(value):
        raise UsageError(
            f"lab prefix {value!r}: 1-8 letters or digits, starting with a letter "
            "(interface names must stay within 15 characters)"
        )
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Names:
    prefix: str

    @property
    def scanner_ns(self) -> str:
        return f"{self.prefix}-scan"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def sink_ns(self) -> str:
        return f"{self.prefix}-sink"

    def host_ns(self, host: str) -> str:
        return f"{self.prefix}-h-{host}"

    def veth(self, index: int) -> str:
        return f"{self.prefix}v{index}"

    @property
    def state_file(self) -> Path:
        return state_dir() / f"{self.prefix}.json"

    @property
    def log_dir(self) -> Path:
        return state_dir() / self.prefix

    def owns(self, namespace: str) -> bool:
        return namespace.startswith(f"{self.prefix}-")


# --- pure builders (unit-tested) ---------------------------------------------------------

_ICMP_TYPE = {
    Action.PORT_UNREACHABLE: "port-unreachable",
    Action.HOST_PROHIBITED: "host-prohibited",
    Action.ADMIN_PROHIBITED: "admin-prohibited",
    Action.NET_UNREACHABLE: "net-unreachable",
}


#: IPv6's counterparts of the ICMP rejections (nft ``icmpv6 type``): codes 4, 1, 1 and 0.
_ICMP6_TYPE = {
    Action.PORT_UNREACHABLE: "port-unreachable",
    Action.HOST_PROHIBITED: "admin-prohibited",
    Action.ADMIN_PROHIBITED: "admin-prohibited",
    Action.NET_UNREACHABLE: "no-route",
}
#: Neighbour discovery, which IPv6 needs as IPv4 needs ARP (which no IP rule sees).
_NDP = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"


def nft_ruleset(host: Host) -> str | None:
    """The nftables script for a host's namespace (None: the host needs no rules).

    A dual-stack host (``address6``) gets an ``inet`` table, so every rule acts on IPv6 too;
    an ICMP rejection becomes its ICMPv6 counterpart there (``_ICMP6_TYPE``)."""
    v6 = host.address6 is not None
    lines: list[str] = [_NDP] if v6 else []
    if host.loss > 0:
        per_mille = round(host.loss * 1000)
        lines.append(f'numgen random mod 1000 < {per_mille} counter drop comment "loss"')
    if Conntrack.DROP_INVALID in host.conntrack:
        lines.append('ct state invalid counter drop comment "drop-invalid"')
    if Conntrack.DROP_NEW_NON_SYN in host.conntrack:
        lines.append(
            'ct state new tcp flags & (fin|syn|rst|ack) != syn counter drop comment "drop-new-non-syn"'
        )
    for rule in host.rules:
        ports = ",".join(_ranges(rule.ports))
        match = f"{rule.proto.value} dport {{ {ports} }}"
        if rule.action is Action.DROP:
            verdict = "drop"
        elif rule.action is Action.TCP_RESET:
            verdict = "reject with tcp reset"
        elif v6:
            lines.append(
                f"meta nfproto ipv4 {match} counter reject with icmp type {_ICMP_TYPE[rule.action]}"
            )
            lines.append(
                f"meta nfproto ipv6 {match} counter reject with icmpv6 type "
                f"{_ICMP6_TYPE[rule.action]}"
            )
            continue
        else:
            verdict = f"reject with icmp type {_ICMP_TYPE[rule.action]}"
        lines.append(f"{match} counter {verdict}")
    if lines == [_NDP] or not lines:
        return None
    body = "\n".join(f"    {line}" for line in lines)
    return (
        f"table {'inet' if v6 else 'ip'} twinscan {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        '    iif "lo" accept\n'
        f"{body}\n"
        "  }\n"
        "}\n"
    )


def _ranges(ports: tuple[int, ...]) -> list[str]:
    from twinscan.request.ports import format_port_list

    return format_port_list(ports).split(",")


def services_config(host: Host) -> dict[str, Any]:
    return {
        "address": host.address,
        "address6": host.address6,
        "tcp": list(host.tcp),
        "udp": [[p, k.value] for p, k in host.udp],
        "ftp": host.ftp,
    }


def spec_digest(spec: LabSpec) -> str:
    data = repr((spec.subnet, spec.scanner, spec.sink, spec.hosts))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


# --- environment --------------------------------------------------------------------------


def check_environment(*, need_nft: bool = True) -> None:
    """Root, iproute2 with netns, nftables: one clear error if anything is missing."""
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "the lab needs root (it creates network namespaces and firewall rules): "
            "run it as root, e.g. `sudo .venv/bin/twinscan lab up`"
        )
    if shutil.which("ip") is None:
        raise EnvironmentProblem("the lab needs iproute2's `ip` (apt-get install iproute2)")
    if not Path("/proc/self/ns/net").exists():
        raise EnvironmentProblem("this kernel has no network namespace support (/proc/self/ns/net)")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        raise EnvironmentProblem(f"`ip netns` does not work here: {probe.stderr.strip()}")
    if need_nft and shutil.which("nft") is None:
        raise EnvironmentProblem("the lab needs nftables' `nft` (apt-get install nftables)")


def _run(argv: list[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabSetupFailed(f"`{' '.join(argv)}` failed: {err[0] if err else proc.returncode}")
    return proc.stdout


def list_namespaces() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


# --- state -----------------------------------------------------------------------------


def read_state(prefix: str) -> dict[str, Any] | None:
    path = Names(prefix).state_file
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_state(names: Names, state: dict[str, Any]) -> None:
    names.state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = names.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(names.state_file)


def _pid_is_ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"twinscan.lab.services" in cmdline


def _terminate(pids: list[int]) -> None:
    live = [p for p in pids if p > 1]
    for pid in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    while live and time.monotonic() < deadline:
        live = [p for p in live if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        time.sleep(0.05)
    for pid in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:  # reap our own children (no-op for others')
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


# --- up / down / status / exec -------------------------------------------------------------


def is_up(prefix: str, spec: LabSpec | None = None) -> bool:
    state = read_state(prefix)
    if not state or state.get("status") != "up":
        return False
    if spec is not None and state.get("spec_digest") != spec_digest(spec):
        return False
    present = set(list_namespaces())
    if not set(state.get("namespaces", [])) <= present:
        return False
    return all(_pid_is_ours(int(p)) for p in state.get("pids", []))


def up(spec: LabSpec, prefix: str | None = None) -> dict[str, Any]:
    """Build the lab (idempotent: an identical healthy lab is left as it is). Returns its state."""
    names = Names(resolve_prefix(prefix))
    check_environment()
    if is_up(names.prefix, spec):
        current = read_state(names.prefix)
        assert current is not None
        current["already_up"] = True
        return current
    down(names.prefix)
    real_hosts = [h for h in spec.hosts if not h.silent]
    namespaces = [names.scanner_ns] + [names.host_ns(h.name) for h in real_hosts]
    if any(h.silent for h in spec.hosts):
        namespaces.append(names.sink_ns)
    state: dict[str, Any] = {
        "prefix": names.prefix,
        "status": "building",
        "spec": spec.source,
        "spec_digest": spec_digest(spec),
        "scanner_ns": names.scanner_ns,
        "scanner": spec.scanner,
        "bridge": names.bridge,
        "namespaces": namespaces,
        "hosts": {
            h.name: {"address": h.address, "namespace": None if h.silent else names.host_ns(h.name)}
            for h in spec.hosts
        },
        "pids": [],
        "created": time.time(),
    }
    _write_state(names, state)  # written first, so a crash part-way is still cleaned by down
    try:
        _build(spec, names, real_hosts, state)
    except BaseException:
        down(names.prefix)
        raise
    state["status"] = "up"
    _write_state(names, state)
    return state


def _build(spec: LabSpec, names: Names, hosts: list[Host], state: dict[str, Any]) -> None:
    scan = names.scanner_ns
    plen = spec.subnet.prefixlen
    v6 = spec.subnet6 is not None
    plen6 = spec.subnet6.prefixlen if spec.subnet6 is not None else 128
    _netns_add(scan, v6=v6)
    _run(["ip", "-n", scan, "link", "add", names.bridge, "type", "bridge"])
    _run(["ip", "-n", scan, "addr", "add", f"{spec.scanner}/{plen}", "dev", names.bridge])
    if spec.scanner6 is not None:
        _run(["ip", "-n", scan, "addr", "add", f"{spec.scanner6}/{plen6}", "dev", names.bridge,
              "nodad"])  # fmt: skip
    _run(["ip", "-n", scan, "link", "set", names.bridge, "up"])
    for index, host in enumerate(hosts):
        ns = names.host_ns(host.name)
        veth = names.veth(index)
        _netns_add(ns, v6=v6)
        _run(["ip", "link", "add", veth, "netns", scan, "type", "veth", "peer", "name", "eth0",
              "netns", ns])  # fmt: skip
        _run(["ip", "-n", scan, "link", "set", veth, "master", names.bridge, "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{host.address}/{plen}", "dev", "eth0"])
        if host.address6 is not None:
            _run(["ip", "-n", ns, "addr", "add", f"{host.address6}/{plen6}", "dev", "eth0",
                  "nodad"])  # fmt: skip
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        if not host.icmp_ratelimit:
            # Per-namespace sysctls: no per-peer limit and no global limit on ICMP errors.
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0",
                  "net.ipv4.icmp_ratemask=0"])  # fmt: skip
            if v6:  # ICMPv6 errors: no per-peer limit either
                _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.icmp.ratelimit=0"])
        ruleset = nft_ruleset(host)
        if ruleset is not None:
            _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=ruleset)
    silent = [h for h in spec.hosts if h.silent]
    if silent:
        _build_sink(spec, names, hosts, len(hosts), silent)
    names.log_dir.mkdir(parents=True, exist_ok=True)
    for host in hosts:
        if not (host.tcp or host.udp or host.ftp):
            continue
        pid = _start_services(names, host)
        state["pids"].append(pid)
        state["hosts"][host.name]["pid"] = pid
        _write_state(names, state)
    _wait_reachable(scan, [a for h in hosts for a in (h.address, h.address6) if a is not None])


# Runs in the scanner namespace: connect() to port 1 of each address; a connection or a
# refusal both prove the path works. Bounded: 20 rounds of a 0.5 s timeout.
_REACH_SCRIPT = """
import errno, socket, sys, time
todo = set(sys.argv[1:])
for _ in range(20):
    for addr in sorted(todo):
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET); s.settimeout(0.5)
        err = s.connect_ex((addr, 1)); s.close()
        if err in (0, errno.ECONNREFUSED):
            todo.discard(addr)
    if not todo:
        sys.exit(0)
    time.sleep(0.1)
print(" ".join(sorted(todo)))
sys.exit(1)
"""


def _wait_reachable(scan_ns: str, addresses: list[str]) -> None:
    if not addresses:
        return
    argv = ["ip", "netns", "exec", scan_ns, sys.executable, "-c", _REACH_SCRIPT, *addresses]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise LabSetupFailed(f"lab host(s) unreachable from {scan_ns}: {proc.stdout.strip()}")


#: The sink's firewall: every IP packet dies before routing (ARP still works, so the sink
#: answers ARP for its own address and scanners can reach the silent hosts routed to it).
SINK_RULESET = """table ip twinscan {
  chain prerouting {
    type filter hook prerouting priority -300; policy drop;
  }
}
"""
#: The dual-stack sink: the same for IPv6, but neighbour discovery (IPv6's ARP) passes.
SINK_RULESET6 = """table inet twinscan {
  chain prerouting {
    type filter hook prerouting priority -300; policy drop;
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
  }
}
"""


def _build_sink(
    spec: LabSpec, names: Names, hosts: list[Host], index: int, silent: list[Host]
) -> None:
    """Silent addresses: host routes (in every namespace) via a namespace that drops all IP."""
    ns = names.sink_ns
    veth = names.veth(index)
    plen = spec.subnet.prefixlen
    v6 = spec.subnet6 is not None
    _netns_add(ns, v6=v6)
    _run(["ip", "link", "add", veth, "netns", names.scanner_ns, "type", "veth", "peer", "name",
          "eth0", "netns", ns])  # fmt: skip
    _run(["ip", "-n", names.scanner_ns, "link", "set", veth, "master", names.bridge, "up"])
    _run(["ip", "-n", ns, "addr", "add", f"{spec.sink}/{plen}", "dev", "eth0"])
    if spec.sink6 is not None and spec.subnet6 is not None:
        _run(["ip", "-n", ns, "addr", "add", f"{spec.sink6}/{spec.subnet6.prefixlen}", "dev",
              "eth0", "nodad"])  # fmt: skip
    _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=SINK_RULESET6 if v6 else SINK_RULESET)
    devs = [(names.scanner_ns, names.bridge)] + [(names.host_ns(h.name), "eth0") for h in hosts]
    for host in silent:
        for other, dev in devs:
            _run(["ip", "-n", other, "route", "replace", f"{host.address}/32", "via", spec.sink,
                  "dev", dev])  # fmt: skip
            if host.address6 is not None and spec.sink6 is not None:
                _run(["ip", "-n", other, "-6", "route", "replace", f"{host.address6}/128", "via",
                      spec.sink6, "dev", dev])  # fmt: skip


def _netns_add(ns: str, *, v6: bool = False) -> None:
    _run(["ip", "netns", "add", ns])
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    if not v6:  # an IPv4-only lab: no IPv6 at all in its namespaces
        _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        return
    # Dual stack: no duplicate address detection (addresses work at once), no router
    # solicitations or autoconfiguration (nothing but the lab's own addresses).
    _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
          "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_ra=0",
          "net.ipv6.conf.default.accept_ra=0", "net.ipv6.conf.default.router_solicitations=0",
          "net.ipv6.conf.all.disable_ipv6=0"])  # fmt: skip


def _start_services(names: Names, host: Host) -> int:
    ns = names.host_ns(host.name)
    log = open(names.log_dir / f"{host.name}.log", "ab")  # noqa: SIM115 - handed to the child
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "twinscan.lab.services",
            json.dumps(services_config(host))]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], _SERVICES_READY_S)
    line = proc.stdout.readline() if ready else b""
    proc.stdout.close()
    if line.strip() != b"ready":
        _terminate([proc.pid])
        tail = (names.log_dir / f"{host.name}.log").read_text(errors="replace").strip()
        last = tail.splitlines()[-1] if tail else "no output"
        raise LabSetupFailed(f"services of host {host.name} did not start: {last}")
    return proc.pid


def down(prefix: str | None = None) -> list[str]:
    """Remove every process, namespace (with its interfaces and rules) and file of the lab."""
    names = Names(resolve_prefix(prefix))
    check_environment(need_nft=False)
    state = read_state(names.prefix) or {}
    _terminate([int(p) for p in state.get("pids", []) if _pid_is_ours(int(p))])
    removed: list[str] = []
    for ns in list_namespaces():
        if not names.owns(ns):
            continue
        pids = _run(["ip", "netns", "pids", ns], check=False).split()
        _terminate([int(p) for p in pids if p.isdigit()])
        _run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    with contextlib.suppress(FileNotFoundError):
        names.state_file.unlink()
    if names.log_dir.exists():
        shutil.rmtree(names.log_dir, ignore_errors=True)
    return removed


def status(prefix: str | None = None) -> dict[str, Any]:
    """What is running: the state file's view checked against the live namespaces and PIDs."""
    names = Names(resolve_prefix(prefix))
    state = read_state(names.prefix)
    present = [ns for ns in list_namespaces() if names.owns(ns)]
    if state is None:
        return {"prefix": names.prefix, "status": "down" if not present else "stale",
                "namespaces": present}  # fmt: skip
    hosts = {}
    for name, info in state.get("hosts", {}).items():
        ns = info.get("namespace")
        pid = info.get("pid")
        hosts[name] = {
            **info,
            "namespace_present": ns is None or ns in present,
            "services_running": pid is None or _pid_is_ours(int(pid)),
        }
    healthy = state.get("status") == "up" and all(
        h["namespace_present"] and h["services_running"] for h in hosts.values()
    )
    return {
        "prefix": names.prefix,
        "status": "up" if healthy else "degraded",
        "spec": state.get("spec"),
        "scanner_ns": state.get("scanner_ns"),
        "scanner": state.get("scanner"),
        "namespaces": present,
        "hosts": hosts,
    }


def exec_in_scanner(
    argv: list[str], prefix: str | None = None, *, timeout: float | None = None
) -> int:
    """Run ``argv`` in the scanner namespace, inheriting stdio; return its exit code."""
    names = Names(resolve_prefix(prefix))
    check_environment(need_nft=False)
    if not argv:
        raise UsageError("lab exec: no command given (usage: twinscan lab exec -- CMD ...)")
    if names.scanner_ns not in list_namespaces():
        raise LabNotUp(f"lab {names.prefix!r} is not up (run `twinscan lab up` first)")
    problem = exec_problem(argv[0])
    if problem is not None:
        code, why = problem
        print(f"twinscan lab exec: {argv[0]}: {why}", file=sys.stderr)
        return code
    try:
        proc = subprocess.run(["ip", "netns", "exec", names.scanner_ns, *argv], timeout=timeout)
    except FileNotFoundError:
        print(f"twinscan lab exec: {argv[0]}: command not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    return proc.returncode


#: Exit statuses of a command that could not run, as a POSIX shell gives them.
EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE = 127, 126


def exec_problem(command: str, path: str | None = None) -> tuple[int, str] | None:
    """Why ``command`` cannot be executed, as ``(exit status, message)`` like a shell: 127 when
    it does not exist (or is not on ``PATH``), 126 when it exists but cannot be executed (a
    directory, no execute permission). None: it can run.

    ``ip netns exec`` keeps ``PATH`` and the file system, so the lookup here is the one it does.
    """
    if "/" in command:
        target = Path(command)
        if not target.exists():
            return EXIT_NOT_FOUND, "No such file or directory"
        if target.is_dir():
            return EXIT_NOT_EXECUTABLE, "Is a directory"
        if not os.access(target, os.X_OK):
            return EXIT_NOT_EXECUTABLE, "Permission denied"
        return None
    if not command:
        return EXIT_NOT_FOUND, "command not found"
    if shutil.which(command, path=path) is not None:
        return None
    search = os.environ.get("PATH", os.defpath) if path is None else path
    for directory in search.split(os.pathsep):
        candidate = Path(directory or ".") / command
        if candidate.is_file():
            return EXIT_NOT_EXECUTABLE, "Permission denied"
    return EXIT_NOT_FOUND, "command not found"
