"""Which addresses twinscan agrees to scan.

By default: loopback (127.0.0.0/8, ::1), addresses assigned to this machine's (or this network
namespace's) own interfaces, and lab addresses (198.18.0.0/16; for IPv6 the documentation
prefix 2001:db8::/32, RFC 3849, inside which labs put their /64s) *whose route leads into a
twinscan lab*. Anything else needs ``--allow-external``, which states that the user is
authorised to scan that network.

198.18.0.0/16 is not special to the kernel: from the host's namespace it is routed like any
other address (usually out through the default gateway), and fake-IP proxies (Clash, Surge, ...)
hand out exactly that range to hostnames. So a lab address is accepted only when the route the
kernel would use for it leads into a lab:

* inside one of a lab's namespaces (``twinscan lab exec -- ...`` runs in ``P-scan``), through an
  interface the lab created there (the scanner's bridge, a host's ``eth0``);
* or, from any other namespace, through a veth whose peer lives in a lab's namespace.

The decision (``lab_route_verdict``) is pure: it takes the address, the kernel's route for it
(``Route``: device, gateway, namespace identity, the namespace a veth leads to) and the known
lab namespaces (``LabNamespace``, from the lab state files ``/run/twinscan/P.json`` and the
namespace inodes under ``/run/netns``). ``kernel_routes`` is the I/O: up to ``_ASK_EACH``
addresses are each asked over rtnetlink in this process (``request.netlink``, what ``ip route
get`` asks; ``ip`` itself where netlink is refused); more go to one ``ip -batch`` process, one
query per group of addresses the routing table cannot tell apart (their /24 and the longer
prefixes of routes and rules that contain them), so a /16 costs a handful of processes, not
65536.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from twinscan.core.errors import TargetError

LAB_NETWORK = ipaddress.ip_network("198.18.0.0/16")
#: IPv6 lab addresses: the documentation prefix (the default lab uses 2001:db8:18::/64). Like
#: 198.18.0.0/16 it is accepted only where the route (``ip -6 route get``) leads into a lab.
LAB_NETWORK6 = ipaddress.ip_network("2001:db8::/32")
LAB_EXEC_HINT = "scan lab hosts with `twinscan lab exec -- twinscan ...`"

#: A network namespace's identity: (st_dev, st_ino) of its nsfs file.
NsId = tuple[int, int]


class Route(NamedTuple):
    """The kernel's answer to ``ip route get ADDRESS`` in the namespace ``netns``."""

    netns: NsId | None  # the namespace the lookup ran in (None: unknown)
    dev: str | None  # output device; None: no route (unreachable, prohibit, blackhole, error)
    gateway: str | None = None
    kind: str = "unicast"  # route type: unicast, local, broadcast, ...
    peer_netns: NsId | None = None  # a veth ``dev``: the namespace its peer lives in
    error: str | None = None  # why there is no route (the kernel's or ip's message)


class LabNamespace(NamedTuple):
    """A namespace of a running lab and the interfaces the lab created in it."""

    prefix: str
    name: str  # e.g. "ts-scan"
    netns: NsId
    devices: frozenset[str]  # e.g. {"tsbr"} in the scanner namespace, {"eth0"} in a host's


class Verdict(NamedTuple):
    accepted: bool
    reason: str  # why, as a clause: "the route to it leaves through eth0 via 192.0.2.1, ..."
    in_lab: bool = False  # the lookup ran inside a lab namespace (no `lab exec` hint then)

    def message(self, address: str) -> str:
        hint = "" if self.in_lab else f"; {LAB_EXEC_HINT}"
        return f"refusing to scan {address}: {self.reason}{hint}"


def lab_route_verdict(address: str, route: Route, labs: Iterable[LabNamespace]) -> Verdict:
    """Accept a lab-range address only if ``route`` leads into one of ``labs`` (pure)."""
    labs = list(labs)
    here = next((lab for lab in labs if route.netns is not None and lab.netns == route.netns), None)
    if route.kind == "local":
        return Verdict(True, "it is an address of this namespace", here is not None)
    if route.dev is None:
        why = f" ({route.error})" if route.error else ""
        if here is not None:
            return Verdict(False, f"lab {here.prefix!r} has no route to it{why}", True)
        return Verdict(False, f"there is no route to it here{why}")
    via = f"{route.dev} via {route.gateway}" if route.gateway else route.dev
    if here is not None:
        if route.dev in here.devices:
            return Verdict(True, f"the route leads into lab {here.prefix!r} through {via}", True)
        return Verdict(
            False,
            f"the route leaves lab namespace {here.name} through {via}, "
            "an interface the lab did not create",
            True,
        )
    peer = next(
        (lab for lab in labs if route.peer_netns is not None and lab.netns == route.peer_netns),
        None,
    )
    if peer is not None:
        return Verdict(True, f"the route leads through {via} into lab namespace {peer.name}")
    return Verdict(
        False,
        f"the route to it leaves through {via}, not into a twinscan lab "
        "(outside a lab, 198.18.0.0/16 and 2001:db8::/32 are ordinary routed ranges)",
    )


# --- route grouping (pure) -------------------------------------------------------------------

Split = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The block size each family's grouping starts from: a /24, an IPv6 /64.
_BLOCK_BITS = {4: 8, 6: 64}


def route_groups(
    addresses: Iterable[str], splits: Iterable[Split]
) -> dict[tuple[int, int, tuple[int, ...]], list[str]]:
    """Group addresses the kernel's routing cannot tell apart.

    Routes and rules of prefix length <= 24 contain a whole /24 or none of it, so two addresses
    of one /24 that lie in the same longer prefixes (``splits``: every route and rule
    destination longer than /24, e.g. the lab's /32 sink routes) match the same routes. IPv6
    addresses group the same way by /64 (and the splits longer than /64).
    """
    by_block: dict[tuple[int, int], list[Split]] = {}
    for net in splits:
        shift = _BLOCK_BITS[net.version]
        if net.prefixlen > net.max_prefixlen - shift:
            where = (int(net.version), int(net.network_address) >> shift)
            by_block.setdefault(where, []).append(net)
    groups: dict[tuple[int, int, tuple[int, ...]], list[str]] = {}
    for address in addresses:
        ip = ipaddress.ip_address(address)
        value = int(ip)
        block = value >> _BLOCK_BITS[ip.version]
        inside = by_block.get((ip.version, block))
        key: tuple[int, int, tuple[int, ...]] = (
            int(ip.version),
            block,
            tuple(
                i
                for i, n in enumerate(inside)
                if int(n.network_address) <= value <= int(n.broadcast_address)
            )
            if inside
            else (),
        )
        groups.setdefault(key, []).append(address)
    return groups


# --- I/O: the kernel's routes, the namespaces, the labs --------------------------------------


IpCall = tuple[Sequence[str], str | None]  # (arguments after ``ip``, standard input)
#: how long the ``ip`` processes of one lookup may take together
_IP_TIMEOUT_S = 60.0


def _ip_all(calls: Sequence[IpCall]) -> list[str | None]:
    """stdout of several ``ip`` commands, run at once (also when one failed part-way, as
    ``-force -batch`` does; None: it could not run or did not finish in time). They run side
    by side: one process's start-up is the whole wait, not their sum."""
    import subprocess  # (only a lab address needs it: a loopback scan does without, ~3 ms)
    import time

    procs: list[subprocess.Popen[str] | None] = []
    for args, stdin in calls:
        try:
            procs.append(
                subprocess.Popen(
                    ["ip", *args],
                    stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        except OSError:
            procs.append(None)
    deadline = time.monotonic() + _IP_TIMEOUT_S
    out: list[str | None] = []
    for proc, (_args, stdin) in zip(procs, calls, strict=True):
        if proc is None:
            out.append(None)
            continue
        try:
            stdout, _ = proc.communicate(stdin, timeout=max(0.1, deadline - time.monotonic()))
        except (OSError, subprocess.SubprocessError):
            proc.kill()
            proc.communicate()
            out.append(None)
            continue
        out.append(stdout)
    return out


def _json_values(text: str) -> list[Any]:
    """Every JSON value in ``text`` (``ip -j -batch`` prints one array per command)."""
    import json  # (here: only lab addresses need it, not a loopback scan's start-up)

    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return out
        out.append(value)


def _records(text: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for value in _json_values(text or ""):
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, dict))
    return out


def _netns_id(path: str) -> NsId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def current_netns() -> NsId | None:
    return _netns_id("/proc/self/ns/net")


def _split_calls(family: int) -> list[IpCall]:
    """The ``ip`` commands whose output ``_splits`` reads."""
    return [
        (["-j", f"-{family}", "route", "show", "table", "all"], None),
        (["-j", f"-{family}", "rule", "show"], None),
    ]


def _splits(family: int, route_text: str | None, rule_text: str | None) -> list[Split]:
    """Destinations longer than a /24 (IPv6: a /64) in any routing table or rule that touch
    the family's lab range (from the output of ``_split_calls(family)``)."""
    full = 32 if family == 4 else 128
    out: list[Split] = []
    for route in _records(route_text):
        dst = str(route.get("dst", "default"))
        if dst != "default":
            try:
                out.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/{full}", False))
            except ValueError:
                continue
    for rule in _records(rule_text):
        if "dst" in rule:
            try:
                out.append(ipaddress.ip_network(f"{rule['dst']}/{rule.get('dstlen', full)}", False))
            except ValueError:
                continue
    lab = LAB_NETWORK if family == 4 else LAB_NETWORK6
    longest = full - _BLOCK_BITS[family]
    return [n for n in out if n.version == family and n.prefixlen > longest and n.overlaps(lab)]


#: the ``ip`` commands whose output ``_peer_namespaces`` reads
_PEER_CALLS: list[IpCall] = [
    (["-j", "-d", "link", "show"], None),
    (["-j", "netns", "list-id"], None),
]


def _peer_namespaces(
    devices: set[str], link_text: str | None, list_id_text: str | None
) -> dict[str, NsId]:
    """For each veth among ``devices`` whose peer is in a named namespace: that namespace
    (from the output of ``_PEER_CALLS``)."""
    if not devices:
        return {}
    nsids: dict[str, int] = {}
    for link in _records(link_text):
        name, nsid = link.get("ifname"), link.get("link_netnsid")
        if name in devices and isinstance(nsid, int):
            nsids[str(name)] = nsid
    if not nsids:
        return {}
    names = {
        int(r["nsid"]): str(r["name"])
        for r in _records(list_id_text)
        if isinstance(r.get("nsid"), int) and "name" in r
    }
    out: dict[str, NsId] = {}
    for dev, nsid in nsids.items():
        ns = names.get(nsid)
        ident = _netns_id(f"/run/netns/{ns}") if ns and "/" not in ns else None
        if ident is not None:
            out[dev] = ident
    return out


#: up to this many addresses are each asked of the kernel; more are grouped first
#: (``route_groups``), which needs the routing tables and rules listed
_ASK_EACH = 64


def kernel_routes(addresses: Sequence[str], *, peers: bool = True) -> dict[str, Route]:
    """The kernel's route for each ``address`` (IPv4 or IPv6), as ``ip route get`` gives it.

    A few addresses are each asked over rtnetlink, in this process; the links and namespace
    ids a veth's peer needs are listed by ``ip`` only when a route leaves through something
    other than loopback (where netlink is refused, ``ip route get`` and those listings run
    side by side: one round of processes). Many addresses are grouped by the routing tables
    first (a second round), so a /16 asks a handful of questions, not 65536.
    ``peers=False``: leave ``Route.peer_netns`` unset (the lookup runs inside a lab
    namespace, where ``lab_route_verdict`` does not read it)."""
    here = current_netns()
    peer_calls = _PEER_CALLS if peers else []
    link_text = list_id_text = None
    records: list[dict[str, Any]] | None  # (``ip -j route get``'s; None: nobody answered)
    if len(addresses) <= _ASK_EACH:
        probes = {a: [a] for a in dict.fromkeys(addresses)}
        records = _netlink_records(list(probes))
        if records is not None:  # (no process: the links only where a veth may lead on)
            if peers and any(r.get("dev") not in (None, "lo") for r in records):
                link_text, list_id_text = _ip_all(_PEER_CALLS)
        else:  # netlink refused: as ``ip`` answers it, in one round of processes
            first = _ip_all([_route_get_call(probes), *peer_calls])
            records = None if first[0] is None else _records(first[0])
            if peers:
                link_text, list_id_text = first[1], first[2]
    else:
        families = sorted({ipaddress.ip_address(a).version for a in addresses})
        calls = [c for f in families for c in _split_calls(f)]
        texts = _ip_all([*calls, *peer_calls])
        splits = [
            n for k, f in enumerate(families) for n in _splits(f, texts[2 * k], texts[2 * k + 1])
        ]
        if peers:
            link_text, list_id_text = texts[-2], texts[-1]
        groups = route_groups(addresses, splits)
        probes = {members[0]: members for members in groups.values()}
        out = _ip_all([_route_get_call(probes)])[0]
        records = None if out is None else _records(out)
    if records is None:
        missing = Route(here, None, error="cannot run iproute2's `ip` to ask for the route")
        return dict.fromkeys(addresses, missing)
    answers = {_canonical(str(r.get("dst"))): r for r in records}
    devices = {str(r["dev"]) for r in answers.values() if "dev" in r}
    peer_of = _peer_namespaces(devices - {"lo"}, link_text, list_id_text)
    routes: dict[str, Route] = {}
    for probe, members in probes.items():
        answer = answers.get(_canonical(probe))
        if answer is None or answer.get("type") in {"unreachable", "prohibit", "blackhole"}:
            route = Route(here, None)  # ip printed no route: unreachable
        else:
            dev = str(answer["dev"]) if "dev" in answer else None
            route = Route(
                here,
                dev,
                gateway=str(answer["gateway"]) if "gateway" in answer else None,
                kind=str(answer.get("type", "unicast")),
                peer_netns=peer_of.get(dev) if dev else None,
            )
        routes.update(dict.fromkeys(members, route))
    return routes


def _netlink_records(addresses: list[str]) -> list[dict[str, Any]] | None:
    """``ip -j route get``'s records for ``addresses``, asked over rtnetlink in this process
    (``request.netlink``); an address the kernel cannot route has none, as ``ip`` prints
    none. None when netlink is not available here (then ``ip`` is asked)."""
    import socket

    from twinscan.request.netlink import route_get

    try:
        answers = route_get(addresses)
        records: list[dict[str, Any]] = []
        for address, answer in answers.items():
            if answer.kind is None:
                continue
            record: dict[str, Any] = {"dst": address, "type": answer.kind}
            if answer.oif is not None:
                record["dev"] = socket.if_indextoname(answer.oif)
            if answer.gateway is not None:
                record["gateway"] = answer.gateway
            records.append(record)
    except OSError:
        return None
    return records


def _route_get_call(probes: Mapping[str, list[str]]) -> IpCall:
    """One ``ip -batch`` process asking ``route get`` for every probe address."""
    return (["-j", "-force", "-batch", "-"], "".join(f"route get {a}\n" for a in probes))


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def lab_namespaces(state_dir: Path | None = None) -> list[LabNamespace]:
    """The namespaces of every lab with a state file, identified by their inode."""
    if state_dir is None:
        from twinscan.core.paths import lab_state_dir

        state_dir = lab_state_dir()
    out: list[LabNamespace] = []
    try:
        files = sorted(state_dir.glob("*.json"))
    except OSError:
        return out
    for path in files:
        try:
            import json

            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict):
            continue
        prefix, scanner, bridge = state.get("prefix"), state.get("scanner_ns"), state.get("bridge")
        namespaces = state.get("namespaces")
        if not (isinstance(prefix, str) and isinstance(namespaces, list)):
            continue
        for ns in namespaces:
            if not isinstance(ns, str) or "/" in ns:
                continue
            ident = _netns_id(f"/run/netns/{ns}")
            if ident is None:
                continue
            devices = {str(bridge)} if ns == scanner and bridge else {"eth0"}
            out.append(LabNamespace(prefix, ns, ident, frozenset(devices)))
    return out


# --- the guard -------------------------------------------------------------------------------

RouteLookup = Callable[[Sequence[str]], Mapping[str, Route]]


def local_addresses() -> set[str]:
    """The addresses of this namespace's interfaces: one rtnetlink dump (``request.netlink``),
    or psutil where netlink is not allowed (its import alone is ~25 ms of a scan's start-up)."""
    from twinscan.request.netlink import interface_addresses

    try:
        return interface_addresses()
    except OSError:
        import psutil

        out: set[str] = set()
        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                out.add(a.address.split("%", 1)[0])
        return out


def is_local(address: str, local: set[str] | None = None) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return True
    return address in (local if local is not None else local_addresses())


def check_targets(
    addresses: Iterable[str],
    *,
    allow_external: bool = False,
    routes: RouteLookup | None = None,
    labs: Sequence[LabNamespace] | None = None,
    local: set[str] | None = None,
) -> None:
    """Raise ``TargetError`` for the first address twinscan must not scan.

    ``routes``, ``labs`` and ``local`` replace the kernel's routes, the running labs and this
    namespace's addresses (tests); by default they are read from the system, and only when an
    address needs them.
    """
    if allow_external:
        return
    lab_range: list[str] = []
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if ip.is_loopback:
            continue
        if local is None:
            local = local_addresses()
        if address in local:
            continue
        if ip in (LAB_NETWORK if ip.version == 4 else LAB_NETWORK6):
            lab_range.append(address)
            continue
        raise TargetError(
            f"refusing to scan {address}: not loopback, a local address or a twinscan lab host "
            "(198.18.0.0/16 or 2001:db8::/32, through `twinscan lab exec --`); pass "
            "--allow-external only for networks you are authorised to scan"
        )
    if not lab_range:
        return
    known = lab_namespaces() if labs is None else labs
    found: Mapping[str, Route]
    if routes is None:
        here = current_netns()
        in_lab = here is not None and any(lab.netns == here for lab in known)
        found = kernel_routes(lab_range, peers=not in_lab)
    else:
        found = routes(lab_range)
    verdicts: dict[Route, Verdict] = {}
    for address in lab_range:
        route = found.get(address) or Route(None, None, error="the route lookup did not answer")
        verdict = verdicts.get(route)
        if verdict is None:
            verdict = verdicts[route] = lab_route_verdict(address, route, known)
        if not verdict.accepted:
            raise TargetError(verdict.message(address))
