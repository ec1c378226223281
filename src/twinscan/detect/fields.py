"""Header fields of every IPv4 packet of a capture at once: numpy gathers at fixed offsets.

``extract(frames)`` finds each packet's IPv4 header behind its link-layer header (Ethernet
with or without one 802.1Q/802.1ad tag, Linux cooked v1/v2, BSD loopback, raw IP), then the
TCP, UDP or ICMP header behind it, and returns a ``Packets`` table: one row per IPv4 packet
whose transport header was captured, one numpy column per field. Non-IPv4 frames (IPv6, ARP,
...) and later fragments are counted in ``skipped`` and otherwise ignored.

For ICMP errors the ``inner_*`` columns hold the quoted datagram's addresses, protocol and
ports (RFC 792: the IP header plus at least 64 bits of the original datagram).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import numpy as np

from twinscan.detect import capture as cap
from twinscan.detect.capture import Frames

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17


COLUMNS: Final = (
    "ts",
    "src",
    "dst",
    "proto",
    "sport",
    "dport",
    "flags",
    "win",
    "seq",
    "ack",
    "ipid",
    "ttl",
    "doff",
    "paylen",
    "mss_only",
    "icmp_type",
    "icmp_code",
    "inner_src",
    "inner_dst",
    "inner_proto",
    "inner_sport",
    "inner_dport",
)


@dataclasses.dataclass(frozen=True)
class Packets:
    """Column table of IPv4 packets (see ``COLUMNS``); integer columns are int64."""

    ts: Any
    src: Any
    dst: Any
    proto: Any
    sport: Any
    dport: Any
    flags: Any  # TCP flags (0 for UDP/ICMP)
    win: Any
    seq: Any
    ack: Any
    ipid: Any
    ttl: Any
    doff: Any  # TCP data offset in 32-bit words
    paylen: Any  # transport payload bytes, from the IP total length (not the capture length)
    mss_only: Any  # bool: TCP options are exactly one MSS option (kind 2, length 4)
    icmp_type: Any
    icmp_code: Any
    inner_src: Any
    inner_dst: Any
    inner_proto: Any
    inner_sport: Any
    inner_dport: Any
    index: Any = None  # int64: the packet's position in the capture
    skipped: int = 0  # frames that are not IPv4 with a captured transport header

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def from_columns(cls, skipped: int = 0, **cols: Any) -> Packets:
        """A table from column arrays (missing columns are zeros); for tests and generators."""
        n = len(next(iter(cols.values())))
        full = {}
        for name in COLUMNS:
            if name in cols:
                dtype = np.float64 if name == "ts" else (bool if name == "mss_only" else np.int64)
                full[name] = np.asarray(cols[name], dtype=dtype)
            else:
                full[name] = np.zeros(n, dtype=bool if name == "mss_only" else np.int64)
        return cls(skipped=skipped, index=np.arange(n, dtype=np.int64), **full)


class _Reader:
    """Bounds-clamped big-endian gathers from the capture buffer."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf
        self.last = max(int(buf.shape[0]) - 1, 0)

    def u8(self, pos: Any) -> Any:
        return self.buf[np.clip(pos, 0, self.last)].astype(np.int64)

    def u16(self, pos: Any) -> Any:
        return (self.u8(pos) << 8) | self.u8(pos + 1)

    def u32(self, pos: Any) -> Any:
        return (self.u16(pos) << 16) | self.u16(pos + 2)


def _l3_offsets(fr: Frames, rd: _Reader) -> Any:
    """Byte offset of each packet's IPv4 header, or -1 when it carries something else."""
    start, end = fr.offset, fr.offset + fr.caplen
    l3 = np.full(len(fr), -1, dtype=np.int64)
    for lt in np.unique(fr.linktype).tolist():
        m = fr.linktype == lt
        s = start[m]
        if lt == cap.LINKTYPE_ETHERNET:
            et = rd.u16(s + 12)
            tagged = (et == 0x8100) | (et == 0x88A8)
            inner = rd.u16(s + 16)
            pos = np.where(tagged, s + 18, s + 14)
            ok = np.where(tagged, inner, et) == 0x0800
        elif lt in (cap.LINKTYPE_NULL, cap.LINKTYPE_LOOP):
            # AF_INET is 2 on every system; NULL is host byte order, LOOP network order
            ok = (rd.u8(s) == 2) | (rd.u8(s + 3) == 2)
            pos = s + 4
        elif lt in (cap.LINKTYPE_RAW, cap.LINKTYPE_IPV4, *cap.LINKTYPE_RAW_ALIASES):
            ok = np.ones(s.shape[0], dtype=bool)
            pos = s
        elif lt == cap.LINKTYPE_LINUX_SLL:
            ok = rd.u16(s + 14) == 0x0800
            pos = s + 16
        elif lt == cap.LINKTYPE_LINUX_SLL2:
            ok = rd.u16(s) == 0x0800
            pos = s + 20
        else:
            continue
        l3[m] = np.where(ok & (pos + 20 <= end[m]), pos, -1)
    return l3


#: Bytes read per packet from its IPv4 header on, in one gather: IPv4 + TCP + MSS option, or
#: IPv4 + ICMP + the quoted IPv4 header + ports, all without IP options.
WINDOW: Final = 56
_CHUNK: Final = 1 << 17


def extract(fr: Frames) -> Packets:
    """The ``Packets`` table of a capture (see the module docstring).

    Packets whose IPv4 headers (and, in ICMP errors, the quoted one) have no options take the
    fast path: one ``WINDOW``-byte gather per packet, then every field is a column slice. The
    others (IP options) go through per-field gathers at computed offsets.
    """
    rd = _Reader(fr.buf)
    l3 = _l3_offsets(fr, rd)
    cand = np.flatnonzero(l3 >= 0)
    w = _window(rd, l3[cand])
    plain = (w[:, 0] == 0x45) & ~(
        (w[:, 9] == PROTO_ICMP) & (w[:, 28] != 0x45) & (w[:, 28] >> 4 == 4)
    )
    if plain.all():
        fast = _extract_plain(fr, cand, l3[cand], w)
    else:
        fast = _extract_plain(fr, cand[plain], l3[cand[plain]], w[plain])
    slow = _extract_general(fr, rd, l3, cand[~plain])
    if len(slow) == 0:
        return dataclasses.replace(fast, skipped=len(fr) - len(fast))
    order = np.argsort(np.concatenate([fast.index, slow.index]), kind="stable")
    merged = {
        name: np.concatenate([getattr(fast, name), getattr(slow, name)])[order]
        for name in (*COLUMNS, "index")
    }
    return Packets(skipped=len(fr) - len(order), **merged)


def _window(rd: _Reader, pos: Any) -> Any:
    """``WINDOW`` bytes from each position, as a contiguous (n, WINDOW) array."""
    buf = rd.buf
    if buf.shape[0] < int(pos.max(initial=0)) + WINDOW:
        buf = np.concatenate([buf, np.zeros(WINDOW, dtype=np.uint8)])
    return np.lib.stride_tricks.sliding_window_view(buf, WINDOW)[pos]


#: Header fields at fixed offsets from the IPv4 header when it has no options.
_PLAIN = np.dtype(
    {
        "names": ["vihl", "total", "ipid", "frag", "ttl", "proto", "src", "dst", "sport",
                  "dport", "seq", "ulen", "ack", "off", "flags", "win", "o0", "o1",
                  "itype", "icode", "ivihl", "iproto", "isrc", "idst", "isport", "idport"],
        "formats": ["u1", ">u2", ">u2", ">u2", "u1", "u1", ">u4", ">u4", ">u2",
                    ">u2", ">u4", ">u2", ">u4", "u1", "u1", ">u2", "u1", "u1",
                    "u1", "u1", "u1", "u1", ">u4", ">u4", ">u2", ">u2"],
        "offsets": [0, 2, 4, 6, 8, 9, 12, 16, 20,
                    22, 24, 24, 28, 32, 33, 34, 40, 41,
                    20, 21, 28, 37, 40, 44, 48, 50],
        "itemsize": WINDOW,
    }
)  # fmt: skip


def _extract_plain(fr: Frames, idx: Any, l3: Any, w: Any) -> Packets:
    """Rows whose IPv4 header (and quoted header) is 20 bytes: fixed offsets of ``w``."""
    r = np.ascontiguousarray(w).view(_PLAIN).reshape(-1)

    def col(name: str) -> Any:
        return r[name].astype(np.int64)

    room = fr.offset[idx] + fr.caplen[idx] - l3  # bytes captured from the IPv4 header on
    proto = col("proto")
    tcp = proto == PROTO_TCP
    udp = proto == PROTO_UDP
    icmp = proto == PROTO_ICMP
    need = np.where(tcp, 40, np.where(udp | icmp, 28, 1 << 30))
    keep = (room >= need) & ((col("frag") & 0x1FFF) == 0)
    if not keep.all():
        r, idx, room = r[keep], idx[keep], room[keep]
        proto, tcp, udp, icmp = proto[keep], tcp[keep], udp[keep], icmp[keep]
    zero = np.zeros(r.shape[0], dtype=np.int64)
    ports = tcp | udp
    doff = np.where(tcp, col("off") >> 4, zero)
    paylen = np.where(tcp, col("total") - 20 - doff * 4, np.where(udp, col("ulen") - 8, zero))
    has_inner = icmp & (col("ivihl") == 0x45) & (room >= 48)
    has_ports = has_inner & (room >= 52)
    return Packets(
        ts=fr.ts[idx],
        src=col("src"),
        dst=col("dst"),
        proto=proto,
        sport=np.where(ports, col("sport"), zero),
        dport=np.where(ports, col("dport"), zero),
        flags=np.where(tcp, col("flags"), zero),
        win=np.where(tcp, col("win"), zero),
        seq=np.where(tcp, col("seq"), zero),
        ack=np.where(tcp, col("ack"), zero),
        ipid=col("ipid"),
        ttl=col("ttl"),
        doff=doff,
        paylen=np.maximum(paylen, 0),
        mss_only=tcp & (doff == 6) & (col("o0") == 2) & (col("o1") == 4) & (room >= 44),
        icmp_type=np.where(icmp, col("itype"), zero),
        icmp_code=np.where(icmp, col("icode"), zero),
        inner_src=np.where(has_inner, col("isrc"), zero),
        inner_dst=np.where(has_inner, col("idst"), zero),
        inner_proto=np.where(has_inner, col("iproto"), zero),
        inner_sport=np.where(has_ports, col("isport"), zero),
        inner_dport=np.where(has_ports, col("idport"), zero),
        index=idx,
    )


def _extract_general(fr: Frames, rd: _Reader, l3_all: Any, rows: Any) -> Packets:
    """Rows with IP options: per-field gathers at offsets computed per packet."""
    end_all = fr.offset + fr.caplen
    keep = np.zeros(len(fr), dtype=bool)
    keep[rows] = True
    vihl = rd.u8(l3_all)
    keep &= (vihl >> 4) == 4
    keep &= (vihl & 0xF) >= 5
    frag = rd.u16(l3_all + 6)
    keep &= (frag & 0x1FFF) == 0  # later fragments carry no transport header
    ihl = (vihl & 0xF) * 4
    l4_all = l3_all + ihl
    proto_all = rd.u8(l3_all + 9)
    need = np.select(
        [proto_all == PROTO_TCP, proto_all == PROTO_UDP, proto_all == PROTO_ICMP],
        [20, 8, 8],
        default=1 << 30,
    )
    keep &= l4_all + need <= end_all
    idx = np.flatnonzero(keep)
    l3, l4, end = l3_all[idx], l4_all[idx], end_all[idx]
    proto = proto_all[idx]
    ihl = ihl[idx]
    n = idx.shape[0]
    tcp = proto == PROTO_TCP
    udp = proto == PROTO_UDP
    icmp = proto == PROTO_ICMP
    total = rd.u16(l3 + 2)
    zero = np.zeros(n, dtype=np.int64)

    ports = tcp | udp
    sport = np.where(ports, rd.u16(l4), zero)
    dport = np.where(ports, rd.u16(l4 + 2), zero)
    b12 = rd.u8(l4 + 12)
    doff = np.where(tcp, b12 >> 4, zero)
    flags = np.where(tcp, rd.u8(l4 + 13), zero)
    mss_only = tcp & (doff == 6) & (rd.u8(l4 + 20) == 2) & (rd.u8(l4 + 21) == 4)
    mss_only &= l4 + 24 <= end
    paylen = np.where(
        tcp,
        total - ihl - doff * 4,
        np.where(udp, rd.u16(l4 + 4) - 8, zero),
    )
    paylen = np.maximum(paylen, 0)

    # ICMP errors quote the offending datagram: inner IPv4 header at l4 + 8
    inner = l4 + 8
    ivihl = rd.u8(inner)
    has_inner = icmp & ((ivihl >> 4) == 4) & (inner + 20 <= end)
    inner_l4 = inner + (ivihl & 0xF) * 4
    has_ports = has_inner & (inner_l4 + 4 <= end)
    return Packets(
        ts=fr.ts[idx],
        src=rd.u32(l3 + 12),
        dst=rd.u32(l3 + 16),
        proto=proto,
        sport=sport,
        dport=dport,
        flags=flags,
        win=np.where(tcp, rd.u16(l4 + 14), zero),
        seq=np.where(tcp, rd.u32(l4 + 4), zero),
        ack=np.where(tcp, rd.u32(l4 + 8), zero),
        ipid=rd.u16(l3 + 4),
        ttl=rd.u8(l3 + 8),
        doff=doff,
        paylen=paylen,
        mss_only=mss_only,
        icmp_type=np.where(icmp, rd.u8(l4), zero),
        icmp_code=np.where(icmp, rd.u8(l4 + 1), zero),
        inner_src=np.where(has_inner, rd.u32(inner + 12), zero),
        inner_dst=np.where(has_inner, rd.u32(inner + 16), zero),
        inner_proto=np.where(has_inner, rd.u8(inner + 9), zero),
        inner_sport=np.where(has_ports, rd.u16(inner_l4), zero),
        inner_dport=np.where(has_ports, rd.u16(inner_l4 + 2), zero),
        index=idx,
    )
