"""This network namespace's own addresses and its routes, asked of the kernel over rtnetlink.

The target guard (``twinscan.request.safety``) accepts an address of this namespace's own
interfaces, and a lab address only where the kernel's route for it leads into a lab. It used to
list the addresses with psutil (whose import alone cost a lab scan ~25 ms before its first
probe) and ask ``ip route get`` in a child process (~10 ms with its imports); one
``RTM_GETADDR`` dump and one ``RTM_GETROUTE`` question per address on a netlink socket answer
the same questions in well under a millisecond, with the standard library.

``parse_addresses`` and ``parse_route`` are pure (the kernel's bytes in, answers out) and take
any bytes without raising anything but ``NetlinkError``; ``interface_addresses`` and
``route_get`` are the I/O.

* Which address counts follows glibc's ``getifaddrs`` (what psutil reads): ``IFA_LOCAL`` when
  the kernel sends it, else ``IFA_ADDRESS`` -- on a point-to-point IPv4 link ``IFA_ADDRESS`` is
  the *peer's* address, which is not ours and must not be accepted as local.
* A route is what ``ip route get ADDRESS`` asks (``RTM_GETROUTE``, no flags): the route type,
  the output interface (``RTA_OIF``, by name) and the gateway (``RTA_GATEWAY``), or the error
  the kernel answers for a destination it cannot route.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

__all__ = [
    "NetlinkError",
    "RouteAnswer",
    "interface_addresses",
    "parse_addresses",
    "parse_route",
    "route_get",
]

_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTM_NEWROUTE, _RTM_GETROUTE = 24, 26
_RTA_DST, _RTA_OIF, _RTA_GATEWAY = 1, 4, 5
#: rtmsg: family, destination and source prefix lengths, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
#: rtnetlink's route types (``RTN_*``), by the names ``ip -j route get`` prints
ROUTE_TYPES = {
    0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
    6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat", 11: "xresolve",
}  # fmt: skip
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_RTATTR = struct.Struct("=HH")  # length, type
_ADDRESS_BYTES: dict[int, int] = {int(socket.AF_INET): 4, int(socket.AF_INET6): 16}
#: datagrams read before giving up on a dump that never says it is done
_MAX_READS = 4096


class NetlinkError(OSError):
    """The kernel refused the dump or did not finish it."""


class RouteAnswer(NamedTuple):
    """The kernel's answer to one route question: a route, or the error it gave instead."""

    kind: str | None  # the route type (``ROUTE_TYPES``); None: the kernel answered an error
    oif: int | None = None  # output interface index
    gateway: str | None = None
    error: str | None = None  # the kernel's error, as ``ip`` prints it (strerror)


def _align(n: int) -> int:
    return (n + 3) & ~3


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Each whole netlink message in ``data`` as (type, sequence number, body), in order; a
    message cut short or of an impossible length ends the walk."""
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, pos)
        if length < _HEADER.size or pos + length > len(data):
            return
        yield kind, seq, data[pos + _HEADER.size : pos + length]
        pos += _align(length)


def _attributes(body: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    """Each whole rtattr of a message body from ``start``, as (type, data), in order."""
    pos = _align(start)
    while pos + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, pos)
        if length < _RTATTR.size or pos + length > len(body):
            return
        yield kind, body[pos + _RTATTR.size : pos + length]
        pos += _align(length)


def _error_code(body: bytes, missing: int) -> int:
    """The errno an ``NLMSG_ERROR`` body carries (0: an acknowledgement), ``missing`` when
    the body is too short to say."""
    return -struct.unpack_from("=i", body)[0] if len(body) >= 4 else missing


def _message_address(body: bytes) -> str | None:
    """The address an ``RTM_NEWADDR`` message's body (``ifaddrmsg`` + attributes) gives, or
    None for another family or a malformed body."""
    if len(body) < _IFADDRMSG.size:
        return None
    family = body[0]
    size = _ADDRESS_BYTES.get(family)
    if size is None:
        return None
    found = {  # (the last of each kind of the right size)
        kind: value
        for kind, value in _attributes(body, _IFADDRMSG.size)
        if kind in (_IFA_ADDRESS, _IFA_LOCAL) and len(value) == size
    }
    raw = found.get(_IFA_LOCAL, found.get(_IFA_ADDRESS))
    if raw is None:
        return None
    return str(ipaddress.IPv4Address(raw) if size == 4 else ipaddress.IPv6Address(raw))


def parse_addresses(data: bytes) -> tuple[set[str], bool]:
    """The addresses in a run of netlink messages, and whether the run ended the dump
    (``NLMSG_DONE``). Raises ``NetlinkError`` for an ``NLMSG_ERROR`` that reports an error."""
    out: set[str] = set()
    for kind, _seq, body in _messages(data):
        if kind == _NLMSG_DONE:
            return out, True
        if kind == _NLMSG_ERROR:
            code = _error_code(body, missing=1)
            if code != 0:
                raise NetlinkError(code, "the kernel refused the address dump")
        elif kind == _RTM_NEWADDR:
            address = _message_address(body)
            if address is not None:
                out.add(address)
    return out, False


def interface_addresses(timeout_s: float = 5.0) -> set[str]:
    """Every IPv4 and IPv6 address assigned to an interface of this network namespace."""
    request = _HEADER.pack(
        _HEADER.size + _IFADDRMSG.size, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
    ) + _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    out: set[str] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(request, (0, 0))
        for _ in range(_MAX_READS):
            found, done = parse_addresses(sock.recv(1 << 16))
            out |= found
            if done:
                return out
    raise NetlinkError("the kernel's address dump did not end")


def parse_route(data: bytes, seq: int) -> RouteAnswer | None:
    """The answer to route question ``seq`` in a run of netlink messages (None: not in it)."""
    for kind, msg_seq, body in _messages(data):
        if msg_seq != seq:
            continue
        if kind == _NLMSG_ERROR:
            code = _error_code(body, missing=0)
            if code <= 0:
                raise NetlinkError("the kernel acknowledged a route question without a route")
            return RouteAnswer(None, error=os.strerror(code))
        if kind != _RTM_NEWROUTE or len(body) < _RTMSG.size:
            continue
        family, rtype = body[0], body[7]
        attrs: dict[int, bytes] = {}
        for attr, value in _attributes(body, _RTMSG.size):
            attrs.setdefault(attr, value)  # (the first of each kind)
        oif = attrs.get(_RTA_OIF)
        gateway = attrs.get(_RTA_GATEWAY)
        size = _ADDRESS_BYTES.get(family)
        return RouteAnswer(
            ROUTE_TYPES.get(rtype, str(rtype)),
            struct.unpack("=I", oif)[0] if oif is not None and len(oif) == 4 else None,
            str(ipaddress.ip_address(gateway))
            if gateway is not None and len(gateway) == size
            else None,
        )
    return None


def route_get(addresses: list[str], timeout_s: float = 5.0) -> dict[str, RouteAnswer]:
    """The kernel's route to each address (IPv4 or IPv6), as ``ip route get`` asks it."""
    out: dict[str, RouteAnswer] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(timeout_s)
        for seq, address in enumerate(addresses, start=1):
            ip = ipaddress.ip_address(address)
            family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            dst = ip.packed
            attr = _RTATTR.pack(_RTATTR.size + len(dst), _RTA_DST) + dst
            body = _RTMSG.pack(family, 8 * len(dst), 0, 0, 0, 0, 0, 0, 0) + attr
            sock.sendto(
                _HEADER.pack(_HEADER.size + len(body), _RTM_GETROUTE, _NLM_F_REQUEST, seq, 0)
                + body,
                (0, 0),
            )
            for _ in range(_MAX_READS):
                answer = parse_route(sock.recv(1 << 16), seq)
                if answer is not None:
                    out[address] = answer
                    break
            else:
                raise NetlinkError(f"the kernel did not answer the route question for {address}")
    return out
