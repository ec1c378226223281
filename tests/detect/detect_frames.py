"""Hand-built packets and captures for the detect tests (struct only: byte-exact, no scapy)."""

from __future__ import annotations

import ipaddress
import struct

from twinscan.detect import capture as cap


def ip4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ipid: int = 1, ttl: int = 64) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        ipid,
        0,
        ttl,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    flags: int,
    *,
    seq: int = 0,
    ack: int = 0,
    win: int = 1024,
    options: bytes = b"",
    payload: bytes = b"",
    ipid: int = 1,
) -> bytes:
    doff = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, win, 0, 0)
    return ipv4(src, dst, 6, seg + options + payload, ipid=ipid)


def udp(
    src: str, dst: str, sport: int, dport: int, payload: bytes = b"", *, ipid: int = 1
) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return ipv4(src, dst, 17, seg + payload, ipid=ipid)


def icmp_unreach(src: str, quoted: bytes, code: int = 3) -> bytes:
    """An ICMP destination unreachable from ``src`` quoting ``quoted`` (IP header + 8 bytes)."""
    dst = str(ipaddress.IPv4Address(quoted[12:16]))
    body = struct.pack("!BBHI", 3, code, 0, 0) + quoted[:28]
    return ipv4(src, dst, 1, body)


MSS_1460 = b"\x02\x04\x05\xb4"
ETH_HDR = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"


def eth(packet: bytes) -> bytes:
    return ETH_HDR + packet


def pcap(packets: list[tuple[float, bytes]], linktype: int = cap.LINKTYPE_ETHERNET) -> bytes:
    """A classic pcap of ``(ts, IPv4 packet)``; the link header is added for ``linktype``."""
    return cap.pcap_header(linktype) + b"".join(
        cap.pcap_record(t, link(linktype, p)) for t, p in packets
    )


def link(linktype: int, packet: bytes) -> bytes:
    if linktype == cap.LINKTYPE_ETHERNET:
        return eth(packet)
    if linktype in (cap.LINKTYPE_RAW, cap.LINKTYPE_IPV4):
        return packet
    if linktype == cap.LINKTYPE_NULL:
        return struct.pack("<I", 2) + packet
    if linktype == cap.LINKTYPE_LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800) + packet
    if linktype == cap.LINKTYPE_LINUX_SLL2:
        return struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, b"\0" * 8) + packet
    raise ValueError(linktype)


def pcapng(
    packets: list[tuple[float, bytes]], *, tsresol: int | None = None, big: bool = False
) -> bytes:
    """A pcapng (one section, one Ethernet interface) of Enhanced Packet Blocks."""
    o = ">" if big else "<"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)

    shb = block(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    unit = 1e-6
    if tsresol is not None:
        opts = (
            struct.pack(o + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + struct.pack(o + "HH", 0, 0)
        )
        unit = 2.0 ** -(tsresol & 0x7F) if tsresol & 0x80 else 10.0**-tsresol
    idb = block(1, struct.pack(o + "HHI", cap.LINKTYPE_ETHERNET, 0, 262144) + opts)
    out = [shb, idb]
    for t, p in packets:
        frame = eth(p)
        ticks = round(t / unit)
        out.append(
            block(
                6,
                struct.pack(o + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
                + frame,
            )
        )
    return b"".join(out)
