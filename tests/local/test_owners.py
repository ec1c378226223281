"""Who owns a port: the pure matcher, and add_owners on real listeners of this process."""

from __future__ import annotations

import os
import socket

import pandas as pd
import psutil
from hypothesis import given
from hypothesis import strategies as st

from twinscan.core.schema import OWNER_COLUMNS, PortVerdict, to_frame
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.local.owners import Socket, add_owners, listeners, match

TCP, UDP = Proto.TCP, Proto.UDP


def test_exact_address_beats_wildcard() -> None:
    socks = [
        Socket(TCP, "0.0.0.0", 80, 10),
        Socket(TCP, "127.0.0.1", 80, 20),
        Socket(UDP, "127.0.0.1", 80, 30),
    ]
    assert [s.pid for s in match(socks, "127.0.0.1", 80, TCP)] == [20]
    assert [s.pid for s in match(socks, "127.0.0.2", 80, TCP)] == [10]
    assert [s.pid for s in match(socks, "127.0.0.1", 80, UDP)] == [30]
    assert match(socks, "127.0.0.1", 81, TCP) == []


def test_ipv6_wildcard_serves_ipv4_only_as_fallback_and_mapped_addresses_unwrap() -> None:
    socks = [Socket(TCP, "::", 8080, 5), Socket(TCP, "::ffff:127.0.0.1", 9090, 6)]
    assert [s.pid for s in match(socks, "127.0.0.1", 8080, TCP)] == [5]
    assert [s.pid for s in match(socks, "::1", 8080, TCP)] == [5]
    assert [s.pid for s in match(socks, "127.0.0.1", 9090, TCP)] == [6]
    v4 = Socket(TCP, "0.0.0.0", 8080, 7)
    assert [s.pid for s in match([*socks, v4], "127.0.0.1", 8080, TCP)] == [7]
    assert [s.pid for s in match([*socks, v4], "::1", 8080, TCP)] == [5]


addresses = st.sampled_from(["127.0.0.1", "127.0.0.2", "0.0.0.0", "::", "::1"])
sockets = st.builds(
    Socket, st.sampled_from([TCP, UDP]), addresses, st.integers(1, 4), st.none() | st.integers(1, 9)
)


@given(
    st.lists(sockets, max_size=12),
    st.none() | addresses,
    st.integers(1, 4),
    st.sampled_from([TCP, UDP]),
)
def test_match_only_returns_sockets_of_that_port_and_proto(
    socks: list[Socket], address: str | None, port: int, proto: Proto
) -> None:
    got = match(socks, address, port, proto)
    assert all(s.port == port and s.proto is proto for s in got)
    assert all(s in socks for s in got)
    if address is None:
        assert len(got) == sum(1 for s in socks if s.port == port and s.proto is proto)
    exact = [s for s in socks if s.port == port and s.proto is proto and s.address == address]
    if exact:
        assert sorted(got, key=id) == sorted(exact, key=id) or set(got) == set(exact)


def _verdict(host: str, port: int, state: PortState, proto: Proto = TCP) -> PortVerdict:
    tech = Technique.CONNECT if proto is TCP else Technique.UDP
    reason = Reason.SYN_ACK if state is PortState.OPEN else Reason.CONN_REFUSED
    return PortVerdict(Engine.NATIVE, tech, host, proto, port, state, reason)


def test_add_owners_fills_open_local_ports_from_real_listeners() -> None:
    tcp = socket.socket()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        tport, uport = tcp.getsockname()[1], udp.getsockname()[1]
        frame = to_frame(
            [
                _verdict("127.0.0.1", tport, PortState.OPEN),
                _verdict("127.0.0.1", tport + 1 if tport < 65535 else 1, PortState.CLOSED),
                _verdict("127.0.0.1", uport, PortState.OPEN, UDP),
                _verdict("198.18.0.1", tport, PortState.OPEN),  # not local: no owner
            ]
        )
        out = add_owners(frame)
    finally:
        tcp.close()
        udp.close()
    assert list(out.columns[-4:]) == list(OWNER_COLUMNS)
    assert out["pid"].tolist()[0] == os.getpid()
    assert out["pid"].tolist()[2] == os.getpid()
    assert pd.isna(out["pid"].iloc[1]) and pd.isna(out["pid"].iloc[3])
    me = psutil.Process()
    assert out["process"].iloc[0] == me.name()
    assert out["cmdline"].iloc[0] == " ".join(me.cmdline())
    assert out["user"].iloc[0] == me.username()
    assert str(out["pid"].dtype) == "Int32"


def test_listeners_finds_this_process_on_ipv6_loopback_udp() -> None:
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        udp.bind(("::1", 0))
        port = udp.getsockname()[1]
        found = listeners(port, (UDP,))
    finally:
        udp.close()
    assert [(o.address, o.pid) for o in found] == [("::1", os.getpid())]
    assert listeners(port, (UDP,)) == []  # closed again
