"""``request.netlink``: this namespace's addresses from one rtnetlink dump.

The parser is pure: messages built here (as the kernel lays them out) must give back their
addresses, IFA_LOCAL must win over IFA_ADDRESS (a point-to-point peer is not ours), and no
bytes may make it raise anything but ``NetlinkError``. The I/O is held to psutil, which the
guard used before and which reads the same kernel answer through glibc's ``getifaddrs``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.request.netlink import (
    NetlinkError,
    RouteAnswer,
    interface_addresses,
    parse_addresses,
    parse_route,
)

RTM_NEWADDR, NLMSG_DONE, NLMSG_ERROR = 20, 3, 2
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, body: bytes) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def _addr_message(family: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = struct.pack("=BBBBI", family, 24, 0, 0, 2) + b"".join(_attr(k, d) for k, d in attrs)
    return _message(RTM_NEWADDR, body)


def _done() -> bytes:
    return _message(NLMSG_DONE, struct.pack("=i", 0))


v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


@given(st.lists(st.one_of(v4, v6), max_size=20))
def test_addresses_come_back(
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    data = b"".join(
        _addr_message(
            socket.AF_INET if a.version == 4 else socket.AF_INET6,
            [(IFA_LABEL, b"eth0\0"), (IFA_ADDRESS, a.packed)],
        )
        for a in addresses
    )
    assert parse_addresses(data + _done()) == ({str(a) for a in addresses}, True)
    assert parse_addresses(data) == ({str(a) for a in addresses}, False)


def test_local_wins_over_the_peer_address() -> None:
    """A point-to-point IPv4 link: IFA_ADDRESS is the peer, IFA_LOCAL is ours (glibc's rule)."""
    ours, peer = ipaddress.IPv4Address("10.9.0.1"), ipaddress.IPv4Address("10.9.0.2")
    for attrs in ([(IFA_ADDRESS, peer.packed), (IFA_LOCAL, ours.packed)],
                  [(IFA_LOCAL, ours.packed), (IFA_ADDRESS, peer.packed)]):  # fmt: skip
        assert parse_addresses(_addr_message(socket.AF_INET, attrs)) == ({"10.9.0.1"}, False)


def test_other_families_and_wrong_sizes_are_skipped() -> None:
    data = _addr_message(socket.AF_PACKET, [(IFA_ADDRESS, b"\1" * 4)])
    data += _addr_message(socket.AF_INET, [(IFA_ADDRESS, b"\1" * 5)])
    data += _addr_message(socket.AF_INET6, [(IFA_ADDRESS, b"\1" * 4)])
    assert parse_addresses(data + _done()) == (set(), True)


def test_an_error_message_raises() -> None:
    with pytest.raises(NetlinkError):
        parse_addresses(_message(NLMSG_ERROR, struct.pack("=i", -1) + b"\0" * 16))
    # an acknowledgement (error code 0) is not an error
    assert parse_addresses(_message(NLMSG_ERROR, struct.pack("=i", 0)) + _done()) == (set(), True)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_netlink_error(data: bytes) -> None:
    try:
        found, _ = parse_addresses(data)
    except NetlinkError:
        return
    for address in found:
        ipaddress.ip_address(address)


@given(st.lists(st.one_of(v4, v6), min_size=1, max_size=5), st.integers(1, 40))
def test_a_cut_short_dump_keeps_what_is_whole(
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address], cut: int
) -> None:
    messages = [
        _addr_message(
            socket.AF_INET if a.version == 4 else socket.AF_INET6, [(IFA_ADDRESS, a.packed)]
        )
        for a in addresses
    ]
    data = b"".join(messages)
    found, done = parse_addresses(data[: max(0, len(data) - cut)])
    assert not done
    assert found <= {str(a) for a in addresses}


def test_the_dump_matches_psutil() -> None:
    expected = {
        a.address.split("%", 1)[0]
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family in (socket.AF_INET, socket.AF_INET6)
    }
    found = interface_addresses()
    assert found == expected
    assert "127.0.0.1" in found


RTM_NEWROUTE = 24
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5


def _route_message(seq: int, family: int, rtype: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = struct.pack("=BBBBBBBBI", family, 32, 0, 0, 254, 2, 0, rtype, 0)
    body += b"".join(_attr(k, d) for k, d in attrs)
    raw = struct.pack("=IHHII", 16 + len(body), RTM_NEWROUTE, 0, seq, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


@given(
    st.integers(1, 1000),
    st.sampled_from([(1, "unicast"), (2, "local"), (7, "unreachable"), (99, "99")]),
    st.integers(1, 2**31),
    st.none() | v4,
)
def test_a_route_answer_comes_back(
    seq: int, rtype: tuple[int, str], oif: int, gateway: ipaddress.IPv4Address | None
) -> None:
    attrs = [(RTA_DST, b"\xc6\x12\x00\x0a"), (RTA_OIF, struct.pack("=I", oif))]
    if gateway is not None:
        attrs.append((RTA_GATEWAY, gateway.packed))
    other = _route_message(seq + 1, socket.AF_INET, 1, [(RTA_OIF, b"\1\0\0\0")])
    data = other + _route_message(seq, socket.AF_INET, rtype[0], attrs)
    answer = parse_route(data, seq)
    assert answer == RouteAnswer(rtype[1], oif, None if gateway is None else str(gateway))
    assert parse_route(other, seq) is None  # another question's answer


def test_a_route_error_is_the_kernels_errno() -> None:
    data = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 7, 0) + struct.pack("=i", -113) + b"\0" * 16
    assert parse_route(data, 7) == RouteAnswer(None, error=os.strerror(113))


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(0, 3))
def test_any_bytes_give_a_route_none_or_netlink_error(data: bytes, seq: int) -> None:
    try:
        answer = parse_route(data, seq)
    except NetlinkError:
        return
    assert answer is None or isinstance(answer, RouteAnswer)
