"""IPv6 probes and replies (issue #17): scapy as the oracle, hypothesis for the parser."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core import rules
from twinscan.core.rules import IcmpReply, TcpReply, UdpReply
from twinscan.core.vocab import Technique
from twinscan.engines.bpf import bpf_dport_filter6, bpf_icmp6_filter, bpf_run
from twinscan.engines.template_cache import build_template, cached_template
from twinscan.protocol import wire
from twinscan.protocol.packets import (
    PROBE_FLAGS,
    MalformedReply,
    ProbeBuilder,
    fold,
    ones_sum,
    parse_reply6,
)

T = Technique
SECRET = b"0123456789abcdef"
SRC, DST, SPORT = "2001:db8:18::1", "2001:db8:18::a", 40123
TECHS = sorted(PROBE_FLAGS, key=str) + [T.UDP]


def _builder(tech: Technique, payload: bytes = b"hi", src: str = SRC) -> ProbeBuilder:
    return ProbeBuilder(
        tech, src, SPORT, SECRET, payloads=lambda _p: (payload,), template=build_template
    )


def _l4_checksum_ok(probe: bytes) -> bool:
    src, dst = probe[8:24], probe[24:40]
    l4 = probe[40:]
    pseudo = src + dst + struct.pack("!I3xB", len(l4), probe[6])
    return fold(ones_sum(pseudo) + ones_sum(l4)) == 0


@pytest.mark.parametrize("tech", TECHS)
@pytest.mark.parametrize(("dport", "tryno"), [(1, 0), (22, 1), (65535, 5)])
def test_probe_matches_scapy(tech: Technique, dport: int, tryno: int) -> None:
    from scapy.layers.inet import TCP, UDP
    from scapy.layers.inet6 import IPv6

    b = _builder(tech)
    raw = b.probes(DST, dport, tryno)[0]
    pkt = IPv6(raw)
    assert pkt.src == SRC and pkt.dst == DST and pkt.hlim == 64 and pkt.plen == len(raw) - 40
    assert _l4_checksum_ok(raw)
    ck = b.cookie(DST, dport)
    if tech is T.UDP:
        assert pkt[UDP].sport == SPORT and pkt[UDP].dport == dport
        assert pkt.fl == (ck + tryno) & 0xFFFF and bytes(pkt[UDP].payload) == b"hi"
        again = IPv6(
            bytes(IPv6(src=SRC, dst=DST, fl=pkt.fl) / UDP(sport=SPORT, dport=dport) / b"hi")
        )
        assert bytes(again) == raw  # scapy computes the same checksum
    else:
        tcp = pkt[TCP]
        assert (tcp.sport, tcp.dport, int(tcp.flags)) == (SPORT, dport, PROBE_FLAGS[tech])
        assert tcp.seq == (ck + tryno) & 0xFFFFFFFF
        assert tcp.ack == (tcp.seq if PROBE_FLAGS[tech] & rules.ACK else 0)
        assert pkt.fl == 0


@pytest.mark.parametrize("tech", TECHS)
def test_cached_template_equals_scapy(tech: Technique) -> None:
    for src in ("::1", SRC):
        assert cached_template(tech, src, 4242, b"x" if tech is T.UDP else b"") == build_template(
            tech, src, 4242, b"x" if tech is T.UDP else b""
        )


def _tcp_reply(
    sport: int, dport: int, flags: int, seq: int = 0, ack: int = 0, win: int = 0
) -> bytes:
    return wire.TCP.struct.pack(sport, dport, seq, ack, 5 << 4, flags, win, 0, 0)


def _icmp6(type_: int, code: int, quoted: bytes) -> bytes:
    return wire.ICMP6.struct.pack(type_, code, 0, 0) + quoted


@pytest.mark.parametrize("tech", sorted(PROBE_FLAGS, key=str))
@pytest.mark.parametrize("tryno", [0, 3])
def test_rst_replies_match_their_try(tech: Technique, tryno: int) -> None:
    b = _builder(tech)
    ck = b.cookie(DST, 80)
    seq = (ck + tryno) & 0xFFFFFFFF
    flags = rules.PROBE_FLAGS[tech]
    if flags & rules.ACK:
        data = _tcp_reply(80, SPORT, rules.RST, seq=seq)
    else:
        data = _tcp_reply(80, SPORT, rules.RST | rules.ACK, ack=(seq + b.consumed) & 0xFFFFFFFF)
    parsed = parse_reply6(data, DST, wire.IPPROTO_TCP, 63)
    assert (parsed.host, parsed.port, parsed.ttl, parsed.sender) == (DST, 80, 63, DST)
    assert isinstance(parsed.reply, TcpReply)
    assert b.try_of(parsed) == tryno


@pytest.mark.parametrize("tech", TECHS)
@given(
    dport=st.integers(1, 65535),
    tryno=st.integers(0, 10),
    icmp=st.sampled_from([(1, c) for c in range(8)] + [(2, 0), (3, 0), (4, 0), (4, 1)]),
    router=st.booleans(),
)
@settings(max_examples=25, deadline=None)
def test_icmp6_error_quoting_a_probe(
    tech: Technique, dport: int, tryno: int, icmp: tuple[int, int], router: bool
) -> None:
    b = _builder(tech)
    probe = b.probes(DST, dport, tryno)[0]
    sender = "2001:db8:18::fe" if router else DST
    parsed = parse_reply6(_icmp6(*icmp, probe[: 48 + 8]), sender, wire.IPPROTO_ICMPV6)
    assert parsed.host == DST and parsed.port == dport and parsed.sender == sender
    assert parsed.reply == IcmpReply(icmp[0], icmp[1], from_target=not router, v6=True)
    assert b.try_of(parsed) == tryno


def test_udp_reply_and_own_probe() -> None:
    b = _builder(T.UDP)
    parsed = parse_reply6(struct.pack("!HHHH", 53, SPORT, 8, 0), DST, wire.IPPROTO_UDP)
    assert parsed.reply == UdpReply() and b.try_of(parsed) == -1
    syn = _builder(T.SYN)
    own = syn.probes(DST, 99, 0)[0][40:]  # our own probe, seen on lo
    assert syn.try_of(parse_reply6(own, SRC, wire.IPPROTO_TCP)) is None


@pytest.mark.parametrize(
    ("data", "proto"),
    [
        (b"", wire.IPPROTO_TCP),
        (b"\0" * 19, wire.IPPROTO_TCP),
        (b"\0" * 7, wire.IPPROTO_UDP),
        (b"\x80\0" + b"\0" * 60, wire.IPPROTO_ICMPV6),  # echo request
        (b"\x01\x04" + b"\0" * 6 + b"\x45" + b"\0" * 60, wire.IPPROTO_ICMPV6),  # quotes IPv4
        (b"\x01\x04" + b"\0" * 20, wire.IPPROTO_ICMPV6),  # too short
        (b"\0" * 40, 132),
    ],
)
def test_malformed(data: bytes, proto: int) -> None:
    with pytest.raises(MalformedReply):
        parse_reply6(data, DST, proto)


@settings(max_examples=400)
@given(data=st.binary(max_size=120), proto=st.sampled_from([6, 17, 58, 0, 41]))
def test_parse_reply6_total(data: bytes, proto: int) -> None:
    """Any bytes: a ``Parsed`` or ``MalformedReply``, nothing else."""
    try:
        parsed = parse_reply6(data, DST, proto)
    except MalformedReply:
        return
    assert 0 <= parsed.port <= 65535 and parsed.proto in (6, 17)
    ipaddress.IPv6Address(parsed.host)


@settings(max_examples=200)
@given(
    addr=st.ip_addresses(v=6),
    tail=st.binary(min_size=8, max_size=40),
    type_=st.integers(0, 255),
    nh=st.sampled_from([6, 17, 0, 58]),
)
def test_parse_icmp6_on_ipv6_looking_quotes(
    addr: ipaddress.IPv6Address, tail: bytes, type_: int, nh: int
) -> None:
    quoted = wire.IPV6.struct.pack(6 << 28, len(tail), nh, 64, bytes(16), addr.packed) + tail
    try:
        parsed = parse_reply6(_icmp6(type_, 0, quoted), str(addr), wire.IPPROTO_ICMPV6)
    except MalformedReply:
        assert type_ not in wire.ICMP6_ERRORS or nh not in (6, 17)
        return
    assert parsed.host == str(addr) and parsed.reply == IcmpReply(type_, 0, True, True)


@settings(max_examples=200)
@given(st.ip_addresses(v=6))
def test_address_round_trip(addr: ipaddress.IPv6Address) -> None:
    assert wire.ntoa6(wire.aton6(str(addr))) == str(addr)
    assert wire.aton_any(str(addr)) == addr.packed


def test_bpf_filters6() -> None:
    syn = _builder(T.SYN)
    probe = syn.probes(DST, 22, 0)[0]
    dport = bpf_dport_filter6(SPORT)
    assert bpf_run(dport, _tcp_reply(22, SPORT, rules.RST)) > 0
    assert bpf_run(dport, probe[40:]) == 0  # our own probe on lo: its dport is the scanned one
    icmp = bpf_icmp6_filter(SPORT)
    for type_ in (1, 2, 3, 4):
        assert bpf_run(icmp, _icmp6(type_, 0, probe[:48])) > 0
    assert bpf_run(icmp, _icmp6(128, 0, probe[:48])) == 0  # echo request
    assert bpf_run(icmp, _icmp6(0, 0, probe[:48])) == 0
    assert bpf_run(icmp, _icmp6(1, 4, _builder(T.UDP, src="::1").probes(DST, 9, 0)[0])) > 0
    other = bytearray(probe[:48])
    other[40:42] = b"\x00\x01"
    assert bpf_run(icmp, _icmp6(1, 4, bytes(other))) == 0


@settings(max_examples=30, deadline=None)
@given(
    hosts=st.lists(st.ip_addresses(v=6).map(str), min_size=1, max_size=3),
    ports=st.lists(st.integers(1, 65535), min_size=1, max_size=20),
    tech=st.sampled_from(sorted(PROBE_FLAGS, key=str)),
)
def test_tcp_batch6_equals_probe_by_probe(
    hosts: list[str], ports: list[int], tech: Technique
) -> None:
    b1, b2 = _builder(tech), _builder(tech)
    dsts = [hosts[i % len(hosts)] for i in range(len(ports))]
    trynos = [i % 3 for i in range(len(ports))]
    rows = b1.tcp_batch(dsts, ports, trynos)
    want = [b2.probes(d, p, k)[0] for d, p, k in zip(dsts, ports, trynos, strict=True)]
    assert [bytes(r) for r in rows] == want


@settings(max_examples=40, deadline=None)
@given(tech=st.sampled_from(sorted(PROBE_FLAGS, key=str)), data=st.data())
def test_match_tcp6_equals_parse_and_try_of(tech: Technique, data: st.DataObject) -> None:
    """The batched IPv6 matcher (recvmmsg rows, senders, hop limits) keeps exactly the replies
    ``parse_reply6`` + ``try_of`` keep, with the same fields."""
    import numpy as np

    b = _builder(tech)
    hosts = [DST, "2001:db8:18::b", "::1"]
    n = data.draw(st.integers(1, 12))
    rows, senders, hlims, want = [], [], [], []
    for _ in range(n):
        host = data.draw(st.sampled_from([*hosts, "2001:db8:18::99"]))
        port = data.draw(st.integers(1, 65535))
        tryno = data.draw(st.integers(0, 3))
        seq = (b.cookie(host, port) + tryno) & 0xFFFFFFFF if host in hosts else 7
        flags = data.draw(
            st.sampled_from([rules.RST, rules.RST | rules.ACK, rules.SYN | rules.ACK])
        )
        ack = (seq + (0 if PROBE_FLAGS[tech] & rules.ACK else b.consumed)) & 0xFFFFFFFF
        raw = _tcp_reply(
            port,
            data.draw(st.sampled_from([SPORT, SPORT + 1])),
            flags,
            seq=seq if not flags & rules.ACK else data.draw(st.integers(0, 2**32 - 1)),
            ack=ack if flags & rules.ACK else 0,
            win=data.draw(st.integers(0, 65535)),
        )
        hlim = data.draw(st.integers(1, 255))
        rows.append(raw + bytes(128 - len(raw)))
        senders.append(wire.aton6(host))
        hlims.append(hlim)
        parsed = parse_reply6(raw, host, wire.IPPROTO_TCP, hlim)
        if host in hosts and (k := b.try_of(parsed)) is not None:
            r = parsed.reply
            assert isinstance(r, TcpReply)
            want.append((host, parsed.port, k, r.flags, r.window, hlim))
    arr = np.frombuffer(b"".join(rows), np.uint8).reshape(n, 128)
    got = b.match_tcp6(
        arr, [20] * n, np.array(senders, dtype="S16"), np.array(hlims, dtype=np.uint32), hosts
    )
    assert got == want
