"""The declared header layouts against scapy's dissection of real packets (the oracle)."""

from __future__ import annotations

import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.packet import Packet

from twinscan.protocol import wire

#: Real packets with a distinct value in every field, with and without options.
PACKETS: dict[str, Packet] = {
    "tcp": IP(src="10.1.2.3", dst="198.18.0.9", id=0x1234, ttl=57, tos=0x28, flags="DF")
    / TCP(sport=40123, dport=443, seq=0x01020304, ack=0xA0B0C0D0, flags="SA", window=29200,
          urgptr=7),
    "tcp-options": IP(src="127.0.0.1", dst="127.0.0.2", id=7, flags="MF", options=b"\x01\x01\x01\x00")
    / TCP(sport=1, dport=65535, seq=5, ack=6, flags="FPU", options=[("MSS", 1460), ("NOP", None)]),
    "udp": IP(src="192.0.2.1", dst="198.18.0.13", id=0xFFFF, ttl=1) / UDP(sport=53, dport=5353)
    / b"payload",
    "icmp-echo": IP(src="203.0.113.5", dst="127.0.0.1") / ICMP(type=8, code=0, id=0xBEEF, seq=9),
}  # fmt: skip

#: ICMP errors quoting a probe (the quoted datagram has no IP options, as our probes).
ERRORS: dict[str, Packet] = {
    "unreach-tcp": IP(src="198.18.0.1", dst="10.0.0.1", ttl=63)
    / ICMP(type=3, code=13)
    / IPerror(bytes(IP(src="10.0.0.1", dst="198.18.0.7", id=0x4242) / TCP(sport=40123, seq=77))[:28]),
    "timxceed-udp": IP(src="198.18.0.1", dst="10.0.0.1")
    / ICMP(type=11, code=0)
    / IPerror(bytes(IP(src="10.0.0.1", dst="198.18.0.7", id=0x99) / UDP(sport=50000, dport=161))),
}  # fmt: skip


def _tcp_off(t: Any) -> int:
    return int(t.dataofs) << 4 | int(t.reserved) << 1 | int(t.flags) >> 8


#: (header, field, scapy layer, how scapy's dissection gives that field's wire value)
FIELDS: list[tuple[wire.Header, str, type[Packet], Callable[[Any], object]]] = [
    (wire.IPV4, "ver_ihl", IP, lambda p: p.version << 4 | p.ihl),
    (wire.IPV4, "tos", IP, lambda p: p.tos),
    (wire.IPV4, "len", IP, lambda p: p.len),
    (wire.IPV4, "id", IP, lambda p: p.id),
    (wire.IPV4, "frag", IP, lambda p: int(p.flags) << 13 | p.frag),
    (wire.IPV4, "ttl", IP, lambda p: p.ttl),
    (wire.IPV4, "proto", IP, lambda p: p.proto),
    (wire.IPV4, "sum", IP, lambda p: p.chksum),
    (wire.IPV4, "src", IP, lambda p: socket.inet_aton(p.src)),
    (wire.IPV4, "dst", IP, lambda p: socket.inet_aton(p.dst)),
    (wire.TCP, "sport", TCP, lambda t: t.sport),
    (wire.TCP, "dport", TCP, lambda t: t.dport),
    (wire.TCP, "seq", TCP, lambda t: t.seq),
    (wire.TCP, "ack", TCP, lambda t: t.ack),
    (wire.TCP, "off", TCP, _tcp_off),
    (wire.TCP, "flags", TCP, lambda t: int(t.flags) & 0xFF),
    (wire.TCP, "win", TCP, lambda t: t.window),
    (wire.TCP, "sum", TCP, lambda t: t.chksum),
    (wire.TCP, "urp", TCP, lambda t: t.urgptr),
    (wire.UDP, "sport", UDP, lambda u: u.sport),
    (wire.UDP, "dport", UDP, lambda u: u.dport),
    (wire.UDP, "ulen", UDP, lambda u: u.len),
    (wire.UDP, "sum", UDP, lambda u: u.chksum),
    (wire.ICMP, "type", ICMP, lambda i: i.type),
    (wire.ICMP, "code", ICMP, lambda i: i.code),
    (wire.ICMP, "sum", ICMP, lambda i: i.chksum),
    (wire.ICMP, "rest", ICMP, lambda i: i.id << 16 | i.seq),  # an echo's id and seq
]


def _dissect(name: str) -> tuple[bytes, Packet]:
    """The packet's bytes and scapy's dissection of those bytes (checksums filled in)."""
    raw = bytes(PACKETS.get(name) or ERRORS[name])
    return raw, IP(raw)


def _read(raw: bytes, base: int, field: wire.Field) -> object:
    (value,) = struct.unpack_from("!" + field.fmt, raw, base + field.offset)
    return value


#: Every field of ``FIELDS`` in every packet that has its layer.
CASES = [
    pytest.param(name, *row, id=f"{name}-{row[0].name}.{row[1]}")
    for name in sorted(PACKETS)
    for row in FIELDS
    if row[2] in _dissect(name)[1]
]


def test_every_declared_field_is_checked() -> None:
    declared = {(h.name, f) for h in (wire.IPV4, wire.TCP, wire.UDP, wire.ICMP) for f in h.fields}
    assert {(h.name, f) for h, f, *_ in FIELDS} == declared
    checked = Counter((c.values[1].name, c.values[2]) for c in CASES)
    assert all(checked["IPv4", f] == len(PACKETS) for f in wire.IPV4.fields)
    assert all(checked["TCP", f] == 2 for f in wire.TCP.fields)  # with and without options


@pytest.mark.parametrize(("name", "header", "field", "layer", "scapy_value"), CASES)
def test_declared_fields_read_what_scapy_dissects(
    name: str,
    header: wire.Header,
    field: str,
    layer: type[Packet],
    scapy_value: Callable[[Any], object],
) -> None:
    raw, pkt = _dissect(name)
    base = len(raw) - len(bytes(pkt[layer]))  # where scapy found the layer
    assert _read(raw, base, header[field]) == scapy_value(pkt[layer])


@pytest.mark.parametrize(
    ("header", "length"), [(wire.IPV4, 20), (wire.TCP, 20), (wire.UDP, 8), (wire.ICMP, 8)]
)
def test_lengths_are_the_option_less_headers(header: wire.Header, length: int) -> None:
    assert header.length == header.struct.size == length
    assert list(header.fields.values())[-1].end == length  # fields tile the header


#: (absolute constant, its field, scapy's value) for an option-less probe-like datagram.
ABSOLUTE: list[tuple[str, int, wire.Field, str, Callable[[Any], object]]] = [
    ("IP_ID", wire.IP_ID, wire.IPV4["id"], "tcp", lambda p: p.id),
    ("IP_FRAG", wire.IP_FRAG, wire.IPV4["frag"], "tcp", lambda p: int(p.flags) << 13 | p.frag),
    ("IP_TTL", wire.IP_TTL, wire.IPV4["ttl"], "tcp", lambda p: p.ttl),
    ("IP_PROTO", wire.IP_PROTO, wire.IPV4["proto"], "udp", lambda p: p.proto),
    ("IP_LEN", wire.IP_LEN, wire.IPV4["len"], "udp", lambda p: p.len),
    ("IP_SUM", wire.IP_SUM, wire.IPV4["sum"], "tcp", lambda p: p.chksum),
    ("IP_SRC", wire.IP_SRC, wire.IPV4["src"], "tcp", lambda p: socket.inet_aton(p.src)),
    ("IP_DST", wire.IP_DST, wire.IPV4["dst"], "tcp", lambda p: socket.inet_aton(p.dst)),
    ("TCP_SPORT", wire.TCP_SPORT, wire.TCP["sport"], "tcp", lambda p: p[TCP].sport),
    ("TCP_DPORT", wire.TCP_DPORT, wire.TCP["dport"], "tcp", lambda p: p[TCP].dport),
    ("TCP_SEQ", wire.TCP_SEQ, wire.TCP["seq"], "tcp", lambda p: p[TCP].seq),
    ("TCP_ACK", wire.TCP_ACK, wire.TCP["ack"], "tcp", lambda p: p[TCP].ack),
    ("TCP_FLAGS", wire.TCP_FLAGS, wire.TCP["flags"], "tcp", lambda p: int(p[TCP].flags)),
    ("TCP_WIN", wire.TCP_WIN, wire.TCP["win"], "tcp", lambda p: p[TCP].window),
    ("TCP_SUM", wire.TCP_SUM, wire.TCP["sum"], "tcp", lambda p: p[TCP].chksum),
    ("UDP_SPORT", wire.UDP_SPORT, wire.UDP["sport"], "udp", lambda p: p[UDP].sport),
    ("UDP_DPORT", wire.UDP_DPORT, wire.UDP["dport"], "udp", lambda p: p[UDP].dport),
    ("UDP_SUM", wire.UDP_SUM, wire.UDP["sum"], "udp", lambda p: p[UDP].chksum),
    ("L4_SPORT", wire.L4_SPORT, wire.UDP["sport"], "udp", lambda p: p[UDP].sport),
    ("L4_DPORT", wire.L4_DPORT, wire.TCP["dport"], "tcp", lambda p: p[TCP].dport),
]


@pytest.mark.parametrize(
    ("const", "offset", "field", "name", "scapy_value"), ABSOLUTE, ids=[a[0] for a in ABSOLUTE]
)
def test_absolute_offsets_in_an_option_less_datagram(
    const: str, offset: int, field: wire.Field, name: str, scapy_value: Callable[[Any], object]
) -> None:
    raw, pkt = _dissect(name)
    assert raw[0] == wire.IPV4_PLAIN
    assert _read(raw, offset - field.offset, field) == scapy_value(pkt)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_icmp_error_quotes_at_the_declared_offsets(name: str) -> None:
    raw, pkt = _dissect(name)
    icmp_at = len(raw) - len(bytes(pkt[ICMP]))
    assert raw[icmp_at + wire.ICMP.offset("type")] in (wire.ICMP_UNREACH, wire.ICMP_TIMXCEED)
    assert raw[icmp_at + wire.ICMP_LEN :] == bytes(pkt[IPerror])  # the quote follows the header
    quoted = pkt[TCPerror] if TCPerror in pkt else pkt[UDPerror]
    (sport,) = struct.unpack_from("!H", raw, icmp_at + wire.ICMP_QUOTED_SPORT)
    assert sport == quoted.sport


def test_the_two_l4_headers_share_the_port_fields() -> None:
    assert wire.PORTS.size == 4
    for f in ("sport", "dport"):
        assert wire.TCP.offset(f) == wire.UDP.offset(f)


def test_struct_of_needs_adjacent_fields() -> None:
    assert wire.TCP.struct_of("dport", "seq", "ack").format == "!HII"
    with pytest.raises(ValueError, match="not adjacent"):
        wire.TCP.struct_of("sport", "seq")
    with pytest.raises(KeyError, match="no field"):
        wire.UDP.offset("seq")


@given(st.ip_addresses(v=4))
def test_address_codecs_agree_with_the_socket_module(addr: Any) -> None:
    text, packed = str(addr), socket.inet_aton(str(addr))
    assert wire.aton(text) == packed
    assert wire.ntoa(packed) == socket.inet_ntoa(packed) == text


@pytest.mark.parametrize(
    "bad", ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "::1", "a.b.c.d", " 1.2.3.4"]
)
def test_aton_refuses_what_is_not_a_dotted_quad(bad: str) -> None:
    with pytest.raises(ValueError):
        wire.aton(bad)
