"""Probe bytes and reply parsing, both ways, against scapy as the independent oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core import rules
from twinscan.core.rules import IcmpReply, TcpReply, UdpReply
from twinscan.core.vocab import Technique
from twinscan.engines.bpf import bpf_dport_filter, bpf_icmp_filter, bpf_run
from twinscan.engines.template_cache import build_template
from twinscan.protocol.packets import (
    PROBE_FLAGS,
    MalformedReply,
    ProbeBuilder,
    internet_checksum,
    parse_reply,
)

SECRET = b"0123456789abcdef"
SRC, DST, SPORT = "127.0.0.1", "198.18.0.2", 40123


def _builder(tech: Technique, payload: bytes = b"hi") -> ProbeBuilder:
    return ProbeBuilder(
        tech,
        SRC,
        SPORT,
        SECRET,
        ip_id_base=0x1000,
        payloads=lambda _p: (payload,),
        template=build_template,
    )


#: A SYN probe, try 0, to 198.18.0.2:22, as bytes (golden: catches any drift in the template).
GOLDEN_SYN = bytes.fromhex(
    "4500002c100100004006"
    "25b6"
    "7f000001c6120002"  # IPv4, len 44, id 0x1001, ttl 64, TCP
    "9cbb0016"  # sport 40123, dport 22
)


def test_golden_syn_probe_prefix() -> None:
    probe = _builder(Technique.SYN).probes(DST, 22, 0)[0]
    assert len(probe) == 44  # 20 IP + 20 TCP + MSS option
    assert probe[:24] == GOLDEN_SYN
    assert probe[40:44] == bytes.fromhex("020405b4")  # MSS 1460


@pytest.mark.parametrize("tech", sorted(PROBE_FLAGS, key=str) + [Technique.UDP])
@pytest.mark.parametrize(("dport", "tryno"), [(1, 0), (22, 1), (65535, 5)])
def test_probe_matches_scapy(tech: Technique, dport: int, tryno: int) -> None:
    from scapy.layers.inet import IP, TCP, UDP

    b = _builder(tech)
    raw = b.probes(DST, dport, tryno)[0]
    pkt = IP(raw)
    assert (pkt.src, pkt.dst, pkt.ttl) == (SRC, DST, 64)
    cookie = b.cookie(DST, dport)
    if tech is Technique.UDP:
        assert pkt[UDP].sport == SPORT and pkt[UDP].dport == dport
        assert bytes(pkt[UDP].payload) == b"hi"
        assert pkt.id == (cookie + tryno) & 0xFFFF
    else:
        tcp = pkt[TCP]
        assert (tcp.sport, tcp.dport, int(tcp.flags)) == (SPORT, dport, PROBE_FLAGS[tech])
        assert tcp.seq == (cookie + tryno) & 0xFFFFFFFF
        assert tcp.ack == (tcp.seq if PROBE_FLAGS[tech] & rules.ACK else 0)
        assert tcp.window == 1024
    # checksums: scapy recomputes both from scratch; the incremental ones must agree
    fresh = IP(raw)
    del fresh.chksum
    del fresh.payload.chksum
    assert bytes(fresh) == raw
    assert internet_checksum(raw[:20]) == 0


def test_probe_fields_differ_per_port_and_scan() -> None:
    a = _builder(Technique.SYN)
    other = ProbeBuilder(Technique.SYN, SRC, SPORT, b"another secret!!", template=build_template)
    assert a.cookie(DST, 22) != a.cookie(DST, 23)
    assert a.cookie(DST, 22) != other.cookie(DST, 22)


def _reply(tcp_flags: str, *, seq: int = 0, ack: int = 0, window: int = 0) -> bytes:
    from scapy.layers.inet import IP, TCP

    return bytes(IP(src=DST, dst=SRC, ttl=61) / TCP(sport=22, dport=SPORT, flags=tcp_flags,
                                                    seq=seq, ack=ack, window=window))  # fmt: skip


def test_syn_ack_parses_and_matches_the_cookie() -> None:
    b = _builder(Technique.SYN)
    ck = b.cookie(DST, 22)
    parsed = parse_reply(_reply("SA", seq=777, ack=ck + 2 + 1))
    assert (parsed.host, parsed.port, parsed.sport, parsed.ttl) == (DST, 22, SPORT, 61)
    assert parsed.reply == TcpReply(rules.SYN | rules.ACK, 0)
    assert b.try_of(parsed) == 2
    # a SYN/ACK that acks something we never sent is a stray
    assert b.try_of(parse_reply(_reply("SA", ack=ck + 1000))) is None


def test_rst_to_ack_probe_matches_on_seq() -> None:
    b = _builder(Technique.ACK)
    ck = b.cookie(DST, 22)
    parsed = parse_reply(_reply("R", seq=ck + 1))
    assert parsed.reply == TcpReply(rules.RST, 0)
    assert b.try_of(parsed) == 1
    assert b.try_of(parse_reply(_reply("R", seq=ck - 1))) is None


@pytest.mark.parametrize(("tech", "consumed"), [(Technique.FIN, 1), (Technique.NULL, 0)])
def test_rst_ack_to_fin_and_null(tech: Technique, consumed: int) -> None:
    b = _builder(tech)
    ck = b.cookie(DST, 22)
    assert b.try_of(parse_reply(_reply("RA", ack=ck + consumed))) == 0


def test_own_probe_looped_back_is_not_a_reply() -> None:
    b = _builder(Technique.SYN)
    looped = b.probes(SRC, SPORT, 0)[0]  # a probe to our own source port on lo
    parsed = parse_reply(looped)
    assert b.try_of(parsed) is None


def test_icmp_error_quoting_a_udp_probe() -> None:
    from scapy.layers.inet import ICMP, IP

    b = _builder(Technique.UDP)
    probe = b.probes(DST, 53, 1)[0]
    reply = bytes(IP(src=DST, dst=SRC, ttl=63) / ICMP(type=3, code=3) / probe[:28])
    parsed = parse_reply(reply)
    assert (parsed.host, parsed.port, parsed.sport) == (DST, 53, SPORT)
    assert parsed.reply == IcmpReply(3, 3, from_target=True)
    assert b.try_of(parsed) == 1
    # the same error from a router is not from the target
    routed = bytes(IP(src="198.18.0.1", dst=SRC) / ICMP(type=3, code=13) / probe[:28])
    assert parse_reply(routed).reply == IcmpReply(3, 13, from_target=False)


def test_icmp_error_quoting_a_tcp_probe() -> None:
    from scapy.layers.inet import ICMP, IP

    b = _builder(Technique.SYN)
    probe = b.probes(DST, 25, 0)[0]
    parsed = parse_reply(bytes(IP(src=DST, dst=SRC) / ICMP(type=3, code=13) / probe[:28]))
    assert parsed.reply == IcmpReply(3, 13)
    assert b.try_of(parsed) == 0


def test_udp_reply() -> None:
    from scapy.layers.inet import IP, UDP

    parsed = parse_reply(bytes(IP(src=DST, dst=SRC) / UDP(sport=53, dport=SPORT) / b"x"))
    assert (parsed.port, parsed.reply) == (53, UdpReply())
    assert _builder(Technique.UDP).try_of(parsed) == -1
    assert _builder(Technique.SYN).try_of(parsed) is None  # wrong protocol for the scan


@pytest.mark.parametrize(
    "data",
    [b"", b"\x45" * 10, b"\x60" + b"\0" * 39, bytes.fromhex("46000014") + b"\0" * 16],
    ids=["empty", "short", "ipv6", "ihl-past-end"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(MalformedReply):
        parse_reply(data)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_parse_reply_total(data: bytes) -> None:
    try:
        parsed = parse_reply(data)
    except MalformedReply:
        return
    assert 0 <= parsed.port <= 65535


@settings(max_examples=200)
@given(st.binary(min_size=20, max_size=80))
def test_parse_reply_total_on_ipv4_looking_bytes(tail: bytes) -> None:
    for proto in (1, 6, 17):
        data = bytes([0x45, 0, 0, 60, 0, 0, 0, 0, 64, proto, 0, 0]) + tail
        try:
            parse_reply(data)
        except MalformedReply:
            pass


def test_bpf_filters_accept_replies_and_drop_our_probes() -> None:
    from scapy.layers.inet import ICMP, IP

    b = _builder(Technique.SYN)
    probe = b.probes(DST, 22, 0)[0]
    tcp_filter = bpf_dport_filter(SPORT)
    assert bpf_run(tcp_filter, _reply("RA")) > 0
    assert bpf_run(tcp_filter, probe) == 0  # outgoing probe seen on lo
    assert bpf_run(tcp_filter, b"\x45") == 0  # too short: the kernel drops it
    icmp = bpf_icmp_filter(SPORT)
    assert bpf_run(icmp, bytes(IP(src=DST, dst=SRC) / ICMP(type=3, code=3) / probe[:28])) > 0
    assert bpf_run(icmp, bytes(IP(src=DST, dst=SRC) / ICMP(type=11) / probe[:28])) > 0
    assert bpf_run(icmp, bytes(IP(src=DST, dst=SRC) / ICMP(type=0) / probe[:28])) == 0
    assert bpf_run(icmp, bytes(IP(src=DST, dst=SRC) / ICMP(type=3) / _reply("S")[:28])) == 0


# --- bulk paths: numpy builds and matches exactly what the per-probe code does ----------------

BULK_HOSTS = ["127.0.0.1", "198.18.0.10"]


@settings(max_examples=40, deadline=None)
@given(
    tech=st.sampled_from(sorted(PROBE_FLAGS, key=str)),
    probes=st.lists(
        st.tuples(st.sampled_from(BULK_HOSTS), st.integers(0, 65535), st.integers(0, 63)),
        min_size=1,
        max_size=40,
    ),
    id_base=st.integers(0, 0xFFFF),
)
def test_tcp_batch_equals_probe_by_probe(
    tech: Technique, probes: list[tuple[str, int, int]], id_base: int
) -> None:
    one = ProbeBuilder(tech, SRC, SPORT, SECRET, ip_id_base=id_base, template=build_template)
    bulk = ProbeBuilder(tech, SRC, SPORT, SECRET, ip_id_base=id_base, template=build_template)
    want = [one.probes(d, p, k)[0] for d, p, k in probes]
    rows = bulk.tcp_batch(
        [d for d, _, _ in probes], [p for _, p, _ in probes], [k for *_, k in probes]
    )
    assert [bytes(r) for r in rows] == want
    # the running IP ID carries on across calls, as it does probe by probe
    assert bytes(bulk.tcp_batch([DST], [1], [0])[0]) == one.probes(DST, 1, 0)[0]


#: the flags a reply is drawn with (besides the probe's own, looped back)
REPLY_FLAGS = [0x12, 0x14, 0x04, 0x02, 0x10, 0x11]


@st.composite
def reply_bytes(
    draw: st.DrawFn, builder: ProbeBuilder, hosts: list[str], flags: int | None = None
) -> bytes:
    """A TCP reply to one of ``builder``'s probes to ``hosts``, or a near miss (wrong host,
    port, cookie); ``flags``: every reply's flags (else drawn per reply)."""
    from scapy.layers.inet import IP, TCP

    host = draw(st.sampled_from([*hosts, "198.18.0.77"]))
    port = draw(st.integers(0, 65535))
    ck = builder.cookie(host, port)
    t = draw(st.integers(0, 70))
    seq = draw(st.sampled_from([(ck + t) & 0xFFFFFFFF, 12345]))
    ack = draw(st.sampled_from([(ck + t) & 0xFFFFFFFF, (ck + t + 1) & 0xFFFFFFFF, 999]))
    if flags is None:
        flags = draw(st.sampled_from(REPLY_FLAGS + [builder.flags]))
    pkt = IP(
        src=host,
        dst=SRC,
        ttl=draw(st.integers(1, 255)),
        options=draw(st.sampled_from([b"", b"", b"\x01\x01\x01\x00"])),
    ) / TCP(
        sport=port,
        dport=draw(st.sampled_from([SPORT, SPORT, SPORT + 1])),
        seq=seq,
        ack=ack,
        flags=flags,
        window=draw(st.integers(0, 65535)),
        options=draw(st.sampled_from([[], [("MSS", 1460)]])),
    )
    return bytes(pkt)


@settings(max_examples=120, deadline=None)
@given(tech=st.sampled_from(sorted(PROBE_FLAGS, key=str)), data=st.data())
def test_match_tcp_equals_parse_and_try_of(tech: Technique, data: st.DataObject) -> None:
    """Several targets or one (a comparison instead of a search), replies of mixed flags or all
    of one kind (the flags tested once: every kind, our own probe's included)."""
    builder = ProbeBuilder(tech, SRC, SPORT, SECRET, template=build_template)
    hosts = data.draw(st.sampled_from([BULK_HOSTS, BULK_HOSTS[:1], BULK_HOSTS[1:2]]))
    flags = data.draw(st.none() | st.sampled_from([*REPLY_FLAGS, builder.flags, 0x01, 0x00]))
    packets = data.draw(st.lists(reply_bytes(builder, hosts, flags), min_size=1, max_size=25))
    _match_equals_one_by_one(builder, hosts, packets)


@settings(max_examples=60, deadline=None)
@given(tech=st.sampled_from(sorted(PROBE_FLAGS, key=str)), data=st.data())
def test_match_tcp_of_our_own_probes_looped_back(tech: Technique, data: st.DataObject) -> None:
    """A batch of our own probes seen on loopback (the probe's flags, our cookie) among
    replies with those flags: none of the probes is a reply."""
    builder = ProbeBuilder(tech, SRC, SPORT, SECRET, template=build_template)
    hosts = data.draw(st.sampled_from([BULK_HOSTS, BULK_HOSTS[:1]]))
    packets = data.draw(
        st.lists(reply_bytes(builder, hosts, builder.flags), min_size=1, max_size=25)
    )
    _match_equals_one_by_one(builder, hosts, packets)


def _match_equals_one_by_one(builder: ProbeBuilder, hosts: list[str], packets: list[bytes]) -> None:
    import numpy as np

    rows = np.zeros((len(packets), 128), np.uint8)
    for i, p in enumerate(packets):
        rows[i, : len(p)] = np.frombuffer(p, np.uint8)
    got, slow = builder.match_tcp(rows, [len(p) for p in packets], hosts)
    want = []
    for p in packets:
        if p[0] != 0x45:
            continue  # IP options: left to the per-packet path
        parsed = parse_reply(p)
        tryno = builder.try_of(parsed) if parsed.host in hosts else None
        if tryno is not None:
            assert isinstance(parsed.reply, TcpReply)
            reply = parsed.reply
            want.append((parsed.host, parsed.port, tryno, reply.flags, reply.window, parsed.ttl))
    assert got == want
    assert list(slow) == [i for i, p in enumerate(packets) if p[0] != 0x45]
