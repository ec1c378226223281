"""Who owns a port: the local process behind a listening TCP or bound UDP socket (read-only).

``listeners()`` asks psutil for this host's (or network namespace's) sockets and the processes
holding them; ``match`` decides, purely, which of them receive traffic for ``address:port``;
``add_owners`` adds ``pid, process, user, cmdline`` to the open ports of local targets in a
results frame; ``twinscan who`` prints them. Nothing here signals or changes a process.

Without root, psutil sees other users' sockets but not their processes: those owners come back
with ``pid`` None (``twinscan who`` says so).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from twinscan.core.vocab import PortState, Proto

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass(frozen=True, slots=True)
class Owner:
    """One listening socket and the process that holds it (process fields None if unknown)."""

    proto: Proto
    address: str
    port: int
    pid: int | None
    process: str | None = None
    user: str | None = None
    cmdline: str | None = None

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclasses.dataclass(frozen=True, slots=True)
class Socket:
    """A listening socket as the OS lists it (``psutil.net_connections``), before process info."""

    proto: Proto
    address: str
    port: int
    pid: int | None


_WILDCARD = {4: "0.0.0.0", 6: "::"}


def _plain(address: str) -> str:
    """Drop a zone (``fe80::1%eth0``) and unwrap IPv4-mapped IPv6 (``::ffff:127.0.0.1``)."""
    address = address.split("%", 1)[0]
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def match(sockets: Iterable[Socket], address: str | None, port: int, proto: Proto) -> list[Socket]:
    """The sockets that receive ``proto`` traffic to ``address:port`` (any address if None).

    A socket bound to the exact address wins; otherwise the wildcard of the address's family;
    for IPv4 a ``::`` socket too (Linux dual-stack, unless IPV6_V6ONLY). Sorted by pid.
    """
    candidates = [s for s in sockets if s.proto is proto and s.port == port]
    if address is None:
        return sorted(candidates, key=_order)
    target = _plain(address)
    version = ipaddress.ip_address(target).version
    exact = [s for s in candidates if _plain(s.address) == target]
    if exact:
        return sorted(exact, key=_order)
    wild = [s for s in candidates if _plain(s.address) == _WILDCARD[version]]
    if not wild and version == 4:
        wild = [s for s in candidates if _plain(s.address) == "::"]
    return sorted(wild, key=_order)


def _order(s: Socket) -> tuple[int, str]:
    return (s.pid if s.pid is not None else 1 << 31, s.address)


def local_sockets() -> list[Socket]:
    """Every listening TCP socket and bound, unconnected UDP socket of this host/namespace."""
    import psutil

    out: list[Socket] = []
    for conn in psutil.net_connections(kind="inet"):
        if not conn.laddr:
            continue
        if conn.type == _sock_stream():
            if conn.status != psutil.CONN_LISTEN:
                continue
            proto = Proto.TCP
        else:
            if conn.raddr:
                continue  # a connected UDP socket receives only from its peer
            proto = Proto.UDP
        out.append(Socket(proto, conn.laddr.ip, conn.laddr.port, conn.pid))
    return out


def _sock_stream() -> int:
    import socket

    return int(socket.SOCK_STREAM)


def describe(sock: Socket) -> Owner:
    """Add the process's name, user and command line (None where psutil may not look)."""
    import psutil

    if sock.pid is None:
        return Owner(sock.proto, sock.address, sock.port, None)
    try:
        proc = psutil.Process(sock.pid)
        with proc.oneshot():
            name = proc.name()
            try:
                user: str | None = proc.username()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                user = None
            try:
                cmd: list[str] = proc.cmdline()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmd = []
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return Owner(sock.proto, sock.address, sock.port, sock.pid)
    cmdline = " ".join(cmd) if cmd else None
    return Owner(sock.proto, sock.address, sock.port, sock.pid, name, user, cmdline)


def one_line(text: str) -> str:
    """``text`` for one table cell: control characters (newlines, tabs, escapes) become spaces
    and runs of whitespace one space (a process may put anything in its command line)."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(printable.split())


def nothing_listens(port: int, protos: Sequence[Proto]) -> str:
    """``nothing listens on port 53/udp``; ``... on port 22 (tcp or udp)`` for both."""
    if len(protos) == 1:
        return f"nothing listens on port {port}/{protos[0].value}"
    return f"nothing listens on port {port} ({' or '.join(p.value for p in protos)})"


def listeners(port: int, protos: Sequence[Proto] = (Proto.TCP, Proto.UDP)) -> list[Owner]:
    """Who listens on ``port`` (any local address), one entry per socket and process."""
    sockets = local_sockets()
    found: list[Owner] = []
    for proto in protos:
        found.extend(describe(s) for s in match(sockets, None, port, proto))
    return _dedupe(found)


def _dedupe(owners: Iterable[Owner]) -> list[Owner]:
    seen: set[Owner] = set()
    out: list[Owner] = []
    for o in owners:
        if o not in seen:
            seen.add(o)
            out.append(o)
    return out


def add_owners(frame: pd.DataFrame, *, sockets: Sequence[Socket] | None = None) -> pd.DataFrame:
    """``frame`` with ``pid, process, user, cmdline`` filled for open ports of local targets.

    Other rows get missing values. When several processes share a socket (a pre-forking
    server), the lowest pid — usually the parent — is reported.
    """
    from twinscan.core.schema import conform
    from twinscan.request.safety import is_local, local_addresses

    socks = list(local_sockets() if sockets is None else sockets)
    local = local_addresses()
    described: dict[Socket, Owner] = {}
    columns: dict[str, list[Any]] = {"pid": [], "process": [], "user": [], "cmdline": []}
    cache: dict[tuple[str, int, str], Owner | None] = {}
    is_open = frame["state"].astype(str) == PortState.OPEN.value
    for host, proto, port, open_ in zip(
        frame["host"].astype(str), frame["proto"].astype(str), frame["port"], is_open, strict=True
    ):
        owner: Owner | None = None
        if open_:
            key = (host, int(port), proto)
            if key not in cache:
                cache[key] = None
                if is_local(host, local):
                    hits = match(socks, host, int(port), Proto(proto))
                    if hits:
                        first = hits[0]
                        if first not in described:
                            described[first] = describe(first)
                        cache[key] = described[first]
            owner = cache[key]
        columns["pid"].append(owner.pid if owner else None)
        columns["process"].append(owner.process if owner else None)
        columns["user"].append(owner.user if owner else None)
        columns["cmdline"].append(owner.cmdline if owner else None)
    out = frame.copy()
    for name, values in columns.items():
        out[name] = values
    return conform(out)
