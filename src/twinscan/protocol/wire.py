"""The wire layout of IPv4, IPv6, TCP, UDP, ICMP and ICMPv6 headers, declared once as data (pure).

Each header is a table of ``(name, struct format)`` fields in wire order, in the manner of
dpkt's ``__hdr__``; ``Header`` derives every field's offset and size from it, and the struct
that packs or unpacks a run of fields. Everything that reads or writes header bytes takes its
offsets from here: the probe template and both probe builders (``twinscan.protocol.packets``),
the batch matcher, the template cache check (``twinscan.engines.template_cache``) and the
kernel BPF filters (``twinscan.engines.bpf``). ``tests/protocol/test_wire.py`` holds the declarations
to scapy's dissection of real packets.

Offsets inside a header are ``HEADER.offset(name)``. The module-level ``IP_*``, ``TCP_*`` and
``UDP_*`` constants are absolute offsets in a datagram whose IPv4 header has no options, as
our probes are (20 bytes); replies may carry options, so their parsers add the real IHL to
the in-header offsets instead.

``aton``/``ntoa`` convert the 4-byte address fields to and from dotted quads without the
``socket`` module (this folder does no I/O); ``aton6``/``ntoa6`` do the same for IPv6's 16 bytes.

IPv6 (RFC 8200, 4443): our IPv6 probes are whole datagrams too (a 40-byte header without
extension headers, sent on an ``IPPROTO_RAW`` socket, which implies ``IPV6_HDRINCL``), so the
``IP6_*``/``TCP6_*``/``UDP6_*`` constants are absolute offsets in them. Replies are different: an
``AF_INET6`` raw socket delivers the transport header or ICMPv6 message *without* the IPv6
header (the sender comes from ``recvmsg``), so reply parsers and BPF filters count from the
transport header; an ICMPv6 error quotes our probe's IPv6 header and transport header.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final, NamedTuple


class Field(NamedTuple):
    """One header field: its name, ``struct`` format, offset in the header and size."""

    name: str
    fmt: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


class Header:
    """A fixed header declared as ``(name, struct format)`` pairs in wire order (big-endian)."""

    def __init__(self, name: str, *fields: tuple[str, str]) -> None:
        self.name = name
        self.fields: dict[str, Field] = {}
        offset = 0
        for field_name, fmt in fields:
            size = struct.calcsize("!" + fmt)
            self.fields[field_name] = Field(field_name, fmt, offset, size)
            offset += size
        #: The header without options, in bytes.
        self.length: Final = offset
        #: Packs and unpacks the whole header.
        self.struct: Final = struct.Struct("!" + "".join(fmt for _, fmt in fields))

    def __getitem__(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"{self.name} has no field {name!r}") from None

    def offset(self, name: str) -> int:
        return self[name].offset

    def size(self, name: str) -> int:
        return self[name].size

    def struct_of(self, *names: str) -> struct.Struct:
        """The struct of consecutive fields ``names`` (to pack or unpack them at once)."""
        fields = [self[n] for n in names]
        for a, b in zip(fields, fields[1:], strict=False):
            if a.end != b.offset:
                raise ValueError(f"{self.name}: {a.name} and {b.name} are not adjacent")
        return struct.Struct("!" + "".join(f.fmt for f in fields))


# --- the declarations (RFC 791, 793, 768, 792) ------------------------------------------------

IPV4: Final = Header(
    "IPv4",
    ("ver_ihl", "B"),  # version (4 bits) and header length in 32-bit words (4 bits)
    ("tos", "B"),
    ("len", "H"),  # total length of the datagram
    ("id", "H"),
    ("frag", "H"),  # flags (3 bits) and fragment offset (13 bits)
    ("ttl", "B"),
    ("proto", "B"),
    ("sum", "H"),
    ("src", "4s"),
    ("dst", "4s"),
)

TCP: Final = Header(
    "TCP",
    ("sport", "H"),
    ("dport", "H"),
    ("seq", "I"),
    ("ack", "I"),
    ("off", "B"),  # data offset in 32-bit words (4 bits) and 4 reserved bits
    ("flags", "B"),
    ("win", "H"),
    ("sum", "H"),
    ("urp", "H"),
)

UDP: Final = Header(
    "UDP",
    ("sport", "H"),
    ("dport", "H"),
    ("ulen", "H"),
    ("sum", "H"),
)

#: An ICMP error message's header; the offending datagram's IPv4 header follows it.
ICMP: Final = Header(
    "ICMP",
    ("type", "B"),
    ("code", "B"),
    ("sum", "H"),
    ("rest", "I"),  # unused, or the next-hop MTU of a "fragmentation needed"
)

#: The IPv6 header (RFC 8200); ``vtf``: version (4 bits), traffic class (8), flow label (20).
IPV6: Final = Header(
    "IPv6",
    ("vtf", "I"),
    ("plen", "H"),  # payload length (what follows this header)
    ("nh", "B"),  # next header
    ("hlim", "B"),  # hop limit
    ("src", "16s"),
    ("dst", "16s"),
)

#: An ICMPv6 error message's header (RFC 4443); the offending packet's IPv6 header follows it.
ICMP6: Final = Header(
    "ICMPv6",
    ("type", "B"),
    ("code", "B"),
    ("sum", "H"),
    ("rest", "I"),  # unused, the MTU of a "packet too big", the pointer of a parameter problem
)

#: The pseudo-header the TCP and UDP checksums cover (src, dst from IPv4; then these).
PSEUDO_TAIL: Final = Header("pseudo-header tail", ("zero", "B"), ("proto", "B"), ("len", "H"))

#: The IPv6 pseudo-header's tail after src and dst (RFC 8200 8.1): upper-layer length, next header.
PSEUDO6_TAIL: Final = Header("IPv6 pseudo-header tail", ("len", "I"), ("zero", "3s"), ("nh", "B"))

# --- constants of the bit fields and values --------------------------------------------------

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17

#: ``ver_ihl`` of an IPv4 header without options: version 4, five 32-bit words.
IPV4_PLAIN: Final = 0x45
#: The fragment offset bits of ``frag`` (non-zero: not the first fragment).
FRAG_OFFSET_MASK: Final = 0x1FFF

ICMP_UNREACH: Final = 3  # destination unreachable
ICMP_TIMXCEED: Final = 11  # time exceeded

IPPROTO_ICMPV6: Final = 58
#: ``vtf`` of our IPv6 probes before the flow label: version 6, traffic class 0.
IPV6_VERSION: Final = 6 << 28
#: The flow label bits of ``vtf`` (UDP probes carry their cookie in the low 16, as IPv4's IP ID).
FLOW_MASK: Final = 0xFFFFF
#: ICMPv6 error types (RFC 4443): destination unreachable, packet too big, time exceeded,
#: parameter problem. Informational messages (echo, neighbour discovery) have types >= 128.
ICMP6_UNREACH: Final = 1
ICMP6_PACKET_TOO_BIG: Final = 2
ICMP6_TIMXCEED: Final = 3
ICMP6_PARAMPROB: Final = 4
ICMP6_ERRORS: Final = (ICMP6_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIMXCEED, ICMP6_PARAMPROB)

# --- absolute offsets in a datagram whose IPv4 header has no options (our probes) -------------

IPV4_LEN: Final = IPV4.length
TCP_LEN: Final = TCP.length
UDP_LEN: Final = UDP.length
ICMP_LEN: Final = ICMP.length

IP_VER_IHL: Final = IPV4.offset("ver_ihl")
IP_LEN: Final = IPV4.offset("len")
IP_ID: Final = IPV4.offset("id")
IP_FRAG: Final = IPV4.offset("frag")
IP_TTL: Final = IPV4.offset("ttl")
IP_PROTO: Final = IPV4.offset("proto")
IP_SUM: Final = IPV4.offset("sum")
IP_SRC: Final = IPV4.offset("src")
IP_DST: Final = IPV4.offset("dst")

TCP_SPORT: Final = IPV4_LEN + TCP.offset("sport")
TCP_DPORT: Final = IPV4_LEN + TCP.offset("dport")
TCP_SEQ: Final = IPV4_LEN + TCP.offset("seq")
TCP_ACK: Final = IPV4_LEN + TCP.offset("ack")
TCP_FLAGS: Final = IPV4_LEN + TCP.offset("flags")
TCP_WIN: Final = IPV4_LEN + TCP.offset("win")
TCP_SUM: Final = IPV4_LEN + TCP.offset("sum")

UDP_SPORT: Final = IPV4_LEN + UDP.offset("sport")
UDP_DPORT: Final = IPV4_LEN + UDP.offset("dport")
UDP_SUM: Final = IPV4_LEN + UDP.offset("sum")

#: Where a probe's source port sits inside an ICMP error quoting it (the quoted IPv4 header
#: has no options: our probes carry none), counted from the start of the ICMP message.
ICMP_QUOTED_SPORT: Final = ICMP_LEN + IPV4_LEN + TCP.offset("sport")

if TCP.offset("sport") != UDP.offset("sport") or TCP.offset("dport") != UDP.offset("dport"):
    raise AssertionError("TCP and UDP must share the port fields' layout")  # pragma: no cover
#: Source and destination port: the first two fields of both TCP and UDP.
PORTS: Final = TCP.struct_of("sport", "dport")
L4_SPORT: Final = TCP_SPORT
L4_DPORT: Final = TCP_DPORT

# --- absolute offsets in an IPv6 probe (no extension headers) ---------------------------------

IPV6_LEN: Final = IPV6.length
ICMP6_LEN: Final = ICMP6.length
IP6_VTF: Final = IPV6.offset("vtf")
IP6_FLOW16: Final = IP6_VTF + 2  # the low 16 bits of the flow label
IP6_NH: Final = IPV6.offset("nh")
IP6_SRC: Final = IPV6.offset("src")
IP6_DST: Final = IPV6.offset("dst")
TCP6_DPORT: Final = IPV6_LEN + TCP.offset("dport")
TCP6_SUM: Final = IPV6_LEN + TCP.offset("sum")
UDP6_DPORT: Final = IPV6_LEN + UDP.offset("dport")
UDP6_SUM: Final = IPV6_LEN + UDP.offset("sum")
#: Where a probe's source port sits inside an ICMPv6 error quoting it, counted from the start
#: of the ICMPv6 message (as a raw ``AF_INET6`` socket delivers it).
ICMP6_QUOTED_SPORT: Final = ICMP6_LEN + IPV6_LEN + TCP.offset("sport")

# --- address fields ----------------------------------------------------------------------------

_names: dict[bytes, str] = {}


def ntoa(addr: bytes) -> str:
    """The dotted quad of a 4-byte address (``socket.inet_ntoa``; memoised: replies come from a
    few addresses)."""
    name = _names.get(addr)
    if name is None:
        if len(addr) != 4:
            raise ValueError(f"an IPv4 address has 4 bytes, not {len(addr)}")
        if len(_names) >= 4096:
            _names.clear()
        name = _names[bytes(addr)] = f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
    return name


def aton(addr: str) -> bytes:
    """The 4 bytes of a dotted-quad IPv4 address; ``ValueError`` for anything else."""
    try:
        packed = bytes(map(int, addr.split(".")))
    except ValueError:
        packed = b""
    if len(packed) == 4 and f"{packed[0]}.{packed[1]}.{packed[2]}.{packed[3]}" == addr:
        return packed  # the canonical form (what the target parser gives): the fast path
    return ipaddress.IPv4Address(addr).packed


_names6: dict[bytes, str] = {}


def ntoa6(addr: bytes) -> str:
    """The canonical (RFC 5952, as ``ipaddress`` and ``inet_ntop`` write it) text of a 16-byte
    IPv6 address; memoised."""
    name = _names6.get(addr)
    if name is None:
        if len(addr) != 16:
            raise ValueError(f"an IPv6 address has 16 bytes, not {len(addr)}")
        if len(_names6) >= 4096:
            _names6.clear()
        name = _names6[bytes(addr)] = str(ipaddress.IPv6Address(bytes(addr)))
    return name


def aton6(addr: str) -> bytes:
    """The 16 bytes of an IPv6 address; ``ValueError`` for anything else."""
    return ipaddress.IPv6Address(addr).packed


def aton_any(addr: str) -> bytes:
    """The 4 or 16 bytes of an IPv4 or IPv6 address."""
    return aton6(addr) if ":" in addr else aton(addr)
