"""This network namespace's own addresses, asked of the kernel over rtnetlink.

The target guard (``twinscan.request.safety``) accepts an address of this namespace's own
interfaces. It used to list them with psutil, whose import alone cost a lab scan ~25 ms before
its first probe; one ``RTM_GETADDR`` dump on a netlink socket answers the same question in well
under a millisecond, with the standard library.

``parse_addresses`` is pure (the dump's bytes in, addresses out) and takes any bytes without
raising; ``interface_addresses`` is the I/O. Which address counts follows glibc's
``getifaddrs`` (what psutil reads): ``IFA_LOCAL`` when the kernel sends it, else
``IFA_ADDRESS`` -- on a point-to-point IPv4 link ``IFA_ADDRESS`` is the *peer's* address, which
is not ours and must not be accepted as local.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

__all__ = ["NetlinkError", "interface_addresses", "parse_addresses"]

_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_RTATTR = struct.Struct("=HH")  # length, type
_ADDRESS_BYTES: dict[int, int] = {int(socket.AF_INET): 4, int(socket.AF_INET6): 16}
#: datagrams read before giving up on a dump that never says it is done
_MAX_READS = 4096


class NetlinkError(OSError):
    """The kernel refused the dump or did not finish it."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def _message_address(body: bytes) -> str | None:
    """The address an ``RTM_NEWADDR`` message's body (``ifaddrmsg`` + attributes) gives, or
    None for another family or a malformed body."""
    if len(body) < _IFADDRMSG.size:
        return None
    family = body[0]
    size = _ADDRESS_BYTES.get(family)
    if size is None:
        return None
    found: dict[int, bytes] = {}
    pos = _align(_IFADDRMSG.size)
    while pos + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, pos)
        if length < _RTATTR.size or pos + length > len(body):
            break
        if kind in (_IFA_ADDRESS, _IFA_LOCAL) and length - _RTATTR.size == size:
            found[kind] = body[pos + _RTATTR.size : pos + length]
        pos += _align(length)
    raw = found.get(_IFA_LOCAL, found.get(_IFA_ADDRESS))
    if raw is None:
        return None
    return str(ipaddress.IPv4Address(raw) if size == 4 else ipaddress.IPv6Address(raw))


def parse_addresses(data: bytes) -> tuple[set[str], bool]:
    """The addresses in a run of netlink messages, and whether the run ended the dump
    (``NLMSG_DONE``). Raises ``NetlinkError`` for an ``NLMSG_ERROR`` that reports an error."""
    out: set[str] = set()
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, pos)
        if length < _HEADER.size or pos + length > len(data):
            break
        body = data[pos + _HEADER.size : pos + length]
        if kind == _NLMSG_DONE:
            return out, True
        if kind == _NLMSG_ERROR:
            code = struct.unpack_from("=i", body)[0] if len(body) >= 4 else -1
            if code != 0:
                raise NetlinkError(-code, "the kernel refused the address dump")
        elif kind == _RTM_NEWADDR:
            address = _message_address(body)
            if address is not None:
                out.add(address)
        pos += _align(length)
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
