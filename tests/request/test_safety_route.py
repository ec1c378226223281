"""Lab addresses (198.18.0.0/16) are scanned only where the route to them leads into a lab.

Pure tests drive ``lab_route_verdict`` and ``check_targets`` with made-up routes. The ``lab``
tests use real namespaces this module creates (prefix ``tsS<4 hex>``, always deleted):

* ``P-out``: its route for 198.18.0.0/16 goes over a veth into ``P-void`` (loopback only,
  where packets die), standing in for a host whose default route leaves the machine. Every CLI check
  that must be refused runs there, so even a broken guard could not send a packet off the
  machine.
* ``P-scan`` + ``P-via``: a stand-in lab scanner namespace with a bridge, and a namespace whose
  route for the range is a veth into that bridge (a host connected to a lab).

The real lab (session fixture ``lab``) must keep accepting the same target forms. From the
host's own namespace only the guard function is called (it asks ``ip route get``, which sends
nothing).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from conftest import lab_unavailable
from twinscan.core.errors import TargetError
from twinscan.request import safety
from twinscan.request.safety import (
    LabNamespace,
    Route,
    check_targets,
    kernel_routes,
    lab_route_verdict,
    route_groups,
)

TWINSCAN = [sys.executable, "-m", "twinscan"]
HINT = "twinscan lab exec --"

# --- pure: the decision ----------------------------------------------------------------------

HOST_NS, SCAN_NS, PLAIN_NS, OTHER_NS = (4, 1), (4, 100), (4, 101), (4, 200)
LABS = [
    LabNamespace("ts", "ts-scan", SCAN_NS, frozenset({"tsbr"})),
    LabNamespace("ts", "ts-h-plain", PLAIN_NS, frozenset({"eth0"})),
]

VERDICTS = [
    # (case, route, accepted, a fragment of the reason)
    ("lab bridge", Route(SCAN_NS, "tsbr"), True, "into lab 'ts' through tsbr"),
    ("sink host route", Route(SCAN_NS, "tsbr", "198.18.0.254"), True, "tsbr via 198.18.0.254"),
    ("broadcast on the bridge", Route(SCAN_NS, "tsbr", kind="broadcast"), True, "lab 'ts'"),
    ("lab host's eth0", Route(PLAIN_NS, "eth0"), True, "into lab 'ts' through eth0"),
    ("own address", Route(HOST_NS, "lo", kind="local"), True, "address of this namespace"),
    ("host default route", Route(HOST_NS, "eth0", "192.0.2.1"), False, "eth0 via 192.0.2.1"),
    ("fake-IP tun", Route(HOST_NS, "Meta"), False, "leaves through Meta, not into a twinscan"),
    ("no route", Route(HOST_NS, None), False, "there is no route to it here"),
    ("no route in the lab", Route(SCAN_NS, None), False, "lab 'ts' has no route to it"),
    ("foreign device in a lab ns", Route(SCAN_NS, "eth9"), False, "the lab did not create"),
    ("lab's device name, other ns", Route(HOST_NS, "tsbr"), False, "not into a twinscan lab"),
    ("veth into the lab", Route(HOST_NS, "v0", peer_netns=SCAN_NS), True, "into lab namespace"),
    ("veth elsewhere", Route(HOST_NS, "v0", peer_netns=OTHER_NS), False, "not into a twinscan"),
    ("unknown namespace", Route(None, "tsbr"), False, "not into a twinscan lab"),
]


@pytest.mark.parametrize(
    ("route", "accepted", "fragment"),
    [case[1:] for case in VERDICTS],
    ids=[case[0] for case in VERDICTS],
)
def test_lab_route_verdict(route: Route, accepted: bool, fragment: str) -> None:
    verdict = lab_route_verdict("198.18.0.10", route, LABS)
    assert verdict.accepted is accepted
    assert fragment in verdict.reason
    message = verdict.message("198.18.0.10")
    assert message.startswith("refusing to scan 198.18.0.10: ")
    assert "\n" not in message
    # outside a lab the refusal says how to reach one; inside, it does not send you there
    assert (HINT in message) is (route.netns not in (SCAN_NS, PLAIN_NS))


def test_no_labs_refuses_everything_routed() -> None:
    assert not lab_route_verdict("198.18.0.10", Route(SCAN_NS, "tsbr"), []).accepted


def fixed_routes(table: Mapping[str, Route], calls: list[list[str]]) -> safety.RouteLookup:
    def lookup(addresses: Sequence[str]) -> Mapping[str, Route]:
        calls.append(list(addresses))
        return {a: table.get(a, table["*"]) for a in addresses}

    return lookup


def test_check_targets_asks_once_and_only_for_the_lab_range() -> None:
    calls: list[list[str]] = []
    lookup = fixed_routes({"*": Route(SCAN_NS, "tsbr")}, calls)
    targets = ["127.0.0.1", "::1", "198.18.0.10", "198.18.0.99", "198.18.0.1"]
    check_targets(targets, routes=lookup, labs=LABS, local={"198.18.0.1"})
    assert calls == [["198.18.0.10", "198.18.0.99"]]


def test_check_targets_refuses_the_first_lab_address_routed_elsewhere() -> None:
    calls: list[list[str]] = []
    table = {"*": Route(SCAN_NS, "tsbr"), "198.18.0.77": Route(SCAN_NS, None)}
    with pytest.raises(TargetError, match=r"refusing to scan 198\.18\.0\.77: lab 'ts' has no"):
        check_targets(
            ["198.18.0.10", "198.18.0.77", "198.18.0.78"],
            routes=fixed_routes(table, calls),
            labs=LABS,
            local=set(),
        )
    outside = fixed_routes({"*": Route(HOST_NS, "eth0", "192.0.2.1")}, calls)
    with pytest.raises(TargetError, match=r"leaves through eth0 via 192\.0\.2\.1.*lab exec --"):
        check_targets(["198.18.0.10"], routes=outside, labs=LABS, local=set())


def test_allow_external_and_non_lab_addresses_never_ask_for_routes() -> None:
    calls: list[list[str]] = []
    lookup = fixed_routes({"*": Route(HOST_NS, "eth0")}, calls)
    check_targets(["198.18.0.10", "203.0.113.5"], allow_external=True, routes=lookup)
    with pytest.raises(TargetError, match="refusing to scan 203.0.113.5: not loopback"):
        check_targets(["203.0.113.5", "198.18.0.10"], routes=lookup, labs=LABS, local=set())
    assert calls == []


def test_route_groups_one_per_24_plus_longer_routes() -> None:
    every = [str(a) for a in ipaddress.ip_network("198.18.0.0/16")]
    splits = [
        ipaddress.IPv4Network("198.18.0.99/32"),  # a lab sink route
        ipaddress.IPv4Network("198.18.3.128/25"),
        ipaddress.IPv4Network("198.18.3.192/26"),
        ipaddress.IPv4Network("198.18.0.0/16"),  # not longer than /24: splits nothing
    ]
    groups = route_groups(every, splits)
    assert len(groups) == 256 + 1 + 2
    assert sum(map(len, groups.values())) == len(every)
    assert ["198.18.0.99"] in groups.values()
    assert [f"198.18.3.{i}" for i in range(192, 256)] in groups.values()
    assert [f"198.18.3.{i}" for i in range(128, 192)] in groups.values()
    assert [f"198.18.3.{i}" for i in range(128)] in groups.values()


# --- the host's namespace: the guard only (it sends nothing) --------------------------------


def test_host_namespace_refuses_lab_addresses() -> None:
    """This namespace has no lab route: the guard refuses before anything could be sent."""
    with pytest.raises(TargetError, match=r"refusing to scan 198\.18\.0\.10: .*lab exec --"):
        check_targets(["198.18.0.10"])


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[list[Sequence[str]]]:
    """Record each round of ``ip`` processes the guard starts (the commands of each)."""
    rounds: list[list[Sequence[str]]] = []
    real = safety._ip_all

    def counting(calls: Sequence[safety.IpCall]) -> list[str | None]:
        rounds.append([args for args, _ in calls])
        return real(calls)

    monkeypatch.setattr(safety, "_ip_all", counting)
    return rounds


def test_a_16_costs_a_few_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = _counting(monkeypatch)
    every = [str(a) for a in ipaddress.ip_network("198.18.0.0/16")]
    started = time.perf_counter()
    routes = kernel_routes(every)
    elapsed = time.perf_counter() - started
    assert set(routes) == set(every)
    assert len(rounds) == 2, rounds
    assert sum(map(len, rounds)) <= 5, rounds
    assert elapsed < 10
    with pytest.raises(TargetError):
        check_targets(every)


def test_a_few_addresses_cost_one_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to ``_ASK_EACH`` addresses are each asked over rtnetlink (no ``ip route get``
    process; at most one round for the veth peer listing), or, where netlink fails, in one
    round of ``ip`` processes run side by side; either way they get the routes the grouped
    lookup (``ip``) of a larger list gives them."""
    few = ["198.18.0.10", "198.18.7.1", "198.18.0.10", "2001:db8:18::5", "127.0.0.1"]
    grouped = kernel_routes([*few, *(f"198.18.9.{i}" for i in range(100))])
    rounds = _counting(monkeypatch)
    assert kernel_routes(few) == {a: grouped[a] for a in few}
    assert len(rounds) <= 1 and not any("-batch" in args for r in rounds for args in r), rounds
    assert kernel_routes(few, peers=False) == {a: grouped[a]._replace(peer_netns=None) for a in few}
    assert len(rounds) <= 1, rounds  # (no peers: no process at all)

    def refused(addresses: list[str], timeout_s: float = 5.0) -> dict[str, object]:
        raise PermissionError("netlink is not allowed here")

    from twinscan.request import netlink

    monkeypatch.setattr(netlink, "route_get", refused)
    rounds.clear()
    assert kernel_routes(few) == {a: grouped[a] for a in few}
    assert len(rounds) == 1 and any("-batch" in args for args in rounds[0]), rounds


NETLINK_VS_IP = """
import json, subprocess, sys
from twinscan.request.netlink import route_get
import socket
out = {}
for address, answer in route_get(sys.argv[1:]).items():
    ip = subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True)
    record = (json.loads(ip.stdout) or [{}])[0] if ip.stdout.strip() else None
    mine = None if answer.kind is None else {
        "type": answer.kind,
        "dev": socket.if_indextoname(answer.oif) if answer.oif else None,
        "gateway": answer.gateway,
    }
    theirs = None if record is None else {
        "type": record.get("type", "unicast"), "dev": record.get("dev"),
        "gateway": record.get("gateway"),
    }
    out[address] = [mine, theirs]
print(json.dumps(out))
"""
#: addresses whose routes the netlink lookup and ``ip route get`` must agree on, wherever
ROUTE_PROBES = ["127.0.0.1", "127.9.9.9", "198.18.0.10", "198.18.255.254", "10.255.0.1",
                "::1", "2001:db8:18::5", "fe80::1"]  # fmt: skip


def _assert_netlink_agrees_with_ip(stdout: str) -> None:
    answers = json.loads(stdout)
    assert set(answers) == set(ROUTE_PROBES)
    for address, (mine, theirs) in answers.items():
        if theirs is not None and theirs["type"] in {"unreachable", "prohibit", "blackhole"}:
            assert mine is None or mine["type"] == theirs["type"], address
            continue
        assert mine == theirs, address


def test_netlink_routes_agree_with_ip_route_get() -> None:
    proc = subprocess.run([*TWINSCAN[:1], "-c", NETLINK_VS_IP, *ROUTE_PROBES],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _assert_netlink_agrees_with_ip(proc.stdout)


# --- real namespaces ---------------------------------------------------------------------------


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def netns_prefix() -> Iterator[str]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    prefix = "tsS" + secrets.token_hex(2)
    names = [f"{prefix}-out", f"{prefix}-void", f"{prefix}-scan", f"{prefix}-via"]
    try:
        for ns in names:
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        # "elsewhere": the lab range goes over a veth into P-void, a namespace with nothing but
        # loopback (no address, no forwarding), where anything that arrives dies
        out = f"{prefix}-out"
        _sh("ip", "-n", out, "link", "add", "out0", "type", "veth", "peer", "name", "void0",
            "netns", f"{prefix}-void")  # fmt: skip
        _sh("ip", "-n", out, "link", "set", "out0", "up")
        _sh("ip", "-n", f"{prefix}-void", "link", "set", "void0", "up")
        _sh("ip", "-n", out, "route", "add", "198.18.0.0/16", "dev", "out0")
        # a stand-in lab: a bridge in P-scan, and P-via routing the range over a veth into it
        scan, via, bridge = f"{prefix}-scan", f"{prefix}-via", f"{prefix}br"
        _sh("ip", "-n", scan, "link", "add", bridge, "type", "bridge")
        _sh("ip", "-n", scan, "link", "set", bridge, "up")
        _sh("ip", "-n", via, "link", "add", f"{prefix}v0", "type", "veth", "peer", "name",
            f"{prefix}v1", "netns", scan)  # fmt: skip
        _sh("ip", "-n", scan, "link", "set", f"{prefix}v1", "master", bridge, "up")
        _sh("ip", "-n", via, "link", "set", f"{prefix}v0", "up")
        _sh("ip", "-n", via, "route", "add", "198.18.0.0/16", "dev", f"{prefix}v0")
        yield prefix
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _in_ns(
    ns: str, argv: list[str], *, hosts: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run argv in namespace ns; ``hosts`` is bind-mounted over /etc/hosts for that process
    only (a private mount namespace)."""
    if hosts is not None:
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        argv = ["unshare", "--mount", "sh", "-c", script, str(hosts), *argv]
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _hosts_file(tmp_path: Path, address: str) -> Path:
    path = tmp_path / "hosts"
    path.write_text(f"127.0.0.1 localhost\n{address} labhost.test\n")
    return path


REFUSED = [
    # (case, argv after "twinscan", the address named in the refusal)
    ("address -sT", ["scan", "-sT", "-p", "22", "198.18.0.10"], "198.18.0.10"),
    ("address -sS", ["scan", "-sS", "-p", "22", "198.18.0.10"], "198.18.0.10"),
    ("silent address", ["scan", "-sT", "-p", "22", "198.18.0.99"], "198.18.0.99"),
    ("cidr /24", ["scan", "-sT", "-p", "22", "198.18.0.0/24"], "198.18.0.0"),
    ("octet range", ["scan", "-sT", "-p", "22", "198.18.0.10-14"], "198.18.0.10"),
    ("after loopback", ["scan", "-sT", "-p", "22", "127.0.0.1", "198.18.0.11"], "198.18.0.11"),
    ("bounce relay", ["scan", "-p", "22", "-b", "198.18.0.14", "127.0.0.1"], "198.18.0.14"),
    (
        "relay with creds",
        ["scan", "-sT", "-p", "22", "-b", "anonymous:x@198.18.0.14:21", "127.0.0.1"],
        "198.18.0.14",
    ),  # fmt: skip
    ("compare", ["compare", "198.18.0.10", "-sT", "-p", "22"], "198.18.0.10"),
]


def _assert_refused(proc: subprocess.CompletedProcess[str], address: str, via: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert f"refusing to scan {address}: the route to it leaves through {via}" in proc.stderr
    assert HINT in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "PORT" not in proc.stdout  # no report: nothing was scanned


@pytest.mark.lab
@pytest.mark.parametrize(("argv", "address"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_where_the_route_goes_elsewhere(
    lab: object, netns_prefix: str, argv: list[str], address: str
) -> None:
    """A lab is up (the session's), but this namespace routes the range elsewhere."""
    proc = _in_ns(f"{netns_prefix}-out", [*TWINSCAN, *argv])
    _assert_refused(proc, address, "out0")


@pytest.mark.lab
def test_refused_target_files_hostnames_and_a_16(netns_prefix: str, tmp_path: Path) -> None:
    out = f"{netns_prefix}-out"
    targets = tmp_path / "targets.txt"
    targets.write_text("# lab hosts\n127.0.0.1\n198.18.0.12 198.18.0.13  # two\n")
    _assert_refused(
        _in_ns(out, [*TWINSCAN, "scan", "-sT", "-p", "22", "-iL", str(targets)]),
        "198.18.0.12",
        "out0",
    )
    hosts = _hosts_file(tmp_path, "198.18.0.10")
    proc = _in_ns(out, [*TWINSCAN, "scan", "-sT", "-p", "22", "labhost.test"], hosts=hosts)
    _assert_refused(proc, "198.18.0.10", "out0")
    proc = _in_ns(out, [*TWINSCAN, "scan", "-p", "22", "-b", "labhost.test", "127.0.0.1"],
                  hosts=hosts)  # fmt: skip
    _assert_refused(proc, "198.18.0.10", "out0")
    started = time.monotonic()
    proc = _in_ns(out, [*TWINSCAN, "scan", "-sS", "-p", "22", "198.18.0.0/16"])
    _assert_refused(proc, "198.18.0.0", "out0")
    assert time.monotonic() - started < 30


@pytest.mark.lab
def test_netlink_routes_agree_with_ip_in_namespaces(netns_prefix: str) -> None:
    """Where the range leads into a void, over a veth into a bridge, and nowhere (a bridge
    without a route): the same answers as ``ip route get``, errors included."""
    for ns in ("out", "via", "scan"):
        proc = _in_ns(f"{netns_prefix}-{ns}", [*TWINSCAN[:1], "-c", NETLINK_VS_IP, *ROUTE_PROBES])
        assert proc.returncode == 0, proc.stderr
        _assert_netlink_agrees_with_ip(proc.stdout)


def test_loopback_still_scans_where_the_lab_range_goes_elsewhere(netns_prefix: str) -> None:
    proc = _in_ns(f"{netns_prefix}-out", [*TWINSCAN, "scan", "-sT", "-p", "1", "127.0.0.1"])
    assert proc.returncode == 0, proc.stderr
    assert "report for 127.0.0.1" in proc.stdout


GUARD = (
    "import sys; from twinscan.request.safety import check_targets; from twinscan.core.errors import "
    "TargetError\ntry:\n check_targets(sys.argv[1:])\nexcept TargetError as e:\n "
    "print(e); sys.exit(2)\nprint('accepted')"
)


@pytest.mark.lab
def test_a_route_into_a_lab_from_outside_it(netns_prefix: str, tmp_path: Path) -> None:
    """From a namespace that is not the lab's, a route over a veth into a lab is accepted."""
    via, scan = f"{netns_prefix}-via", f"{netns_prefix}-scan"
    state = {"prefix": netns_prefix, "status": "up", "scanner_ns": scan,
             "bridge": f"{netns_prefix}br", "namespaces": [scan]}  # fmt: skip
    labs_dir, empty_dir = tmp_path / "labs", tmp_path / "none"
    labs_dir.mkdir()
    empty_dir.mkdir()
    (labs_dir / f"{netns_prefix}.json").write_text(json.dumps(state))
    argv = [sys.executable, "-c", GUARD, "198.18.0.10", "198.18.0.0"]
    proc = _in_ns(via, argv, env={"TWINSCAN_LAB_STATE_DIR": str(labs_dir)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the same veth, but its peer's namespace is no lab (no state file names it): refused
    proc = _in_ns(via, argv, env={"TWINSCAN_LAB_STATE_DIR": str(empty_dir)})
    assert proc.returncode == 2
    assert f"leaves through {netns_prefix}v0, not into a twinscan lab" in proc.stdout
    # inside the stand-in lab's scanner namespace: its bridge has no route to the range
    proc = _in_ns(scan, argv, env={"TWINSCAN_LAB_STATE_DIR": str(labs_dir)})
    assert proc.returncode == 2
    assert f"lab {netns_prefix!r} has no route to it" in proc.stdout
    assert HINT not in proc.stdout


ACCEPTED = [
    ("address", ["scan", "-sT", "-p", "22", "198.18.0.10"], ["198.18.0.10"]),
    ("silent address", ["scan", "-sT", "-p", "22", "198.18.0.99"], ["198.18.0.99"]),
    ("cidr", ["scan", "-sT", "-p", "22", "198.18.0.10/31"], ["198.18.0.10", "198.18.0.11"]),
    ("octet range", ["scan", "-sS", "-p", "22", "198.18.0.12-13"], ["198.18.0.12", "198.18.0.13"]),
    ("bounce relay", ["scan", "-p", "22", "-b", "198.18.0.14", "198.18.0.10"], ["198.18.0.10"]),
]


@pytest.mark.lab
@pytest.mark.parametrize(("argv", "hosts"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted_inside_the_lab(lab, argv: list[str], hosts: list[str]) -> None:  # type: ignore[no-untyped-def]
    proc = lab.run([*TWINSCAN, *argv, "-T4"])
    assert proc.returncode == 0, proc.stderr
    for host in hosts:
        assert f"report for {host}" in proc.stdout


@pytest.mark.lab
def test_accepted_inside_the_lab_files_and_hostnames(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    targets = tmp_path / "targets.txt"
    targets.write_text("198.18.0.10\n198.18.0.99 # silent, routed via the sink\n")
    proc = lab.run([*TWINSCAN, "scan", "-sT", "-T4", "-p", "22", "-iL", str(targets)])
    assert proc.returncode == 0, proc.stderr
    assert "report for 198.18.0.10" in proc.stdout and "report for 198.18.0.99" in proc.stdout
    hosts = _hosts_file(tmp_path, "198.18.0.10")
    argv = [*TWINSCAN, "scan", "-sT", "-T4", "-p", "22", "labhost.test"]
    proc = _in_ns(lab.scanner_ns, argv, hosts=hosts)
    assert proc.returncode == 0, proc.stderr
    assert "report for 198.18.0.10" in proc.stdout
    # the whole /24 passes the guard in the lab (checked without scanning it)
    proc = lab.run([sys.executable, "-c", GUARD, *(f"198.18.0.{i}" for i in range(256))])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.lab
@pytest.mark.nmap
def test_compare_inside_the_lab(lab) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("nmap") is None:
        pytest.skip("needs nmap")
    proc = lab.run([*TWINSCAN, "compare", "198.18.0.10", "-sT", "-T4", "-p", "22,23"])
    assert proc.returncode == 0, proc.stderr
