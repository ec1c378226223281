"""Capture files (pcap and pcapng) into frame offsets, without a per-field Python loop.

``read_capture(data)`` walks the container once (a short loop over record headers, the only
per-packet Python work) and returns a ``Frames``: the whole file as one ``uint8`` array plus,
per packet, where its bytes start, how many were captured, its timestamp and its link type.
``twinscan.detect.fields`` then pulls every header field out of all packets at once with
numpy gathers.

Formats:

- classic pcap (libpcap's ``pcap-savefile(5)``): magic ``a1b2c3d4`` (microseconds) or
  ``a1b23c4d`` (nanoseconds), either byte order; 24-byte file header, 16-byte record headers.
- pcapng (IETF draft ``draft-ietf-opsawg-pcapng``): Section Header, Interface Description
  (link type and ``if_tsresol``), Enhanced Packet, Simple Packet and the obsolete Packet
  block; every other block is skipped. A new section resets the interfaces.

A capture cut short (a record that runs past the end of the file, a block with a bad length)
yields the packets read so far and a warning; bytes that are not a capture at all raise
``NotACapture``.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, Final

import numpy as np

from twinscan.core.errors import MalformedData

PCAP_MAGIC_US: Final = 0xA1B2C3D4
PCAP_MAGIC_NS: Final = 0xA1B23C4D
PCAPNG_SHB: Final = 0x0A0D0D0A
PCAPNG_BOM: Final = 0x1A2B3C4D
#: Largest record we believe (libpcap's MAXIMUM_SNAPLEN is 262144).
MAX_RECORD: Final = 262144 * 4

# Link types (tcpdump.org/linktypes.html) this package understands.
LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_LINUX_SLL2: Final = 276
#: DLT_RAW as some systems number it (12 on most BSDs, 14 on OpenBSD).
LINKTYPE_RAW_ALIASES: Final = (12, 14)


class NotACapture(MalformedData):
    """The bytes are neither a pcap nor a pcapng capture."""


@dataclasses.dataclass(frozen=True)
class Frames:
    """Where each packet of a capture lies in ``buf``; all arrays have one row per packet."""

    buf: Any  # np.ndarray[uint8]: the whole capture
    offset: Any  # int64: first byte of the packet (link-layer header) in buf
    caplen: Any  # int64: bytes captured
    ts: Any  # float64: seconds since the epoch
    linktype: Any  # int32
    fmt: str  # "pcap" or "pcapng"
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.offset.shape[0])


def read_capture(data: bytes) -> Frames:
    """Parse a pcap or pcapng file held in ``data`` (see the module docstring)."""
    if len(data) < 4:
        raise NotACapture("too short to be a capture")
    (magic_le,) = struct.unpack_from("<I", data, 0)
    if magic_le == PCAPNG_SHB:
        return _read_pcapng(data)
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", data, 0)
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            return _read_pcap(data, order, nanos=magic == PCAP_MAGIC_NS)
    raise NotACapture("not a pcap or pcapng capture (unknown magic number)")


def _read_pcap(data: bytes, order: str, *, nanos: bool) -> Frames:
    n = len(data)
    if n < 24:
        raise NotACapture("pcap file header cut short")
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    linktype &= 0xFFFF  # the upper bits may carry FCS information
    caplen_at = struct.Struct(order + "I").unpack_from
    starts: list[int] = []
    append = starts.append
    pos = 24
    warning = None
    while pos + 16 <= n:
        (cl,) = caplen_at(data, pos + 8)
        end = pos + 16 + cl
        if cl > MAX_RECORD:
            warning = f"corrupt record header at byte {pos} (caplen {cl})"
            break
        if end > n:
            warning = f"capture truncated: last record at byte {pos} needs {end - n} more bytes"
            break
        append(pos)
        pos = end
    else:
        if pos != n:
            warning = f"capture truncated: {n - pos} trailing bytes of a record header"
    buf = np.frombuffer(data, dtype=np.uint8)
    rec = np.asarray(starts, dtype=np.int64)
    dt = np.dtype(order + "u4")
    sec = _gather_u32(buf, rec, dt)
    frac = _gather_u32(buf, rec + 4, dt)
    caplen = _gather_u32(buf, rec + 8, dt).astype(np.int64)
    ts = sec.astype(np.float64) + frac.astype(np.float64) * (1e-9 if nanos else 1e-6)
    return Frames(
        buf=buf,
        offset=rec + 16,
        caplen=caplen,
        ts=ts,
        linktype=np.full(rec.shape[0], linktype, dtype=np.int32),
        fmt="pcap",
        warnings=(warning,) if warning else (),
    )


def _gather_u32(buf: Any, at: Any, dt: Any) -> Any:
    """The 32-bit words at byte offsets ``at`` (any alignment), in byte order ``dt``."""
    if at.shape[0] == 0:
        return np.zeros(0, dtype=np.uint32)
    idx = at[:, None] + np.arange(4, dtype=np.int64)
    return buf[idx].copy().view(dt).reshape(-1).astype(np.uint32)


@dataclasses.dataclass
class _Iface:
    linktype: int
    snaplen: int
    ts_unit: float  # seconds per timestamp tick


def _tsresol(value: int) -> float:
    if value & 0x80:
        return float(2.0 ** -(value & 0x7F))
    return float(10.0**-value)


def _read_pcapng(data: bytes) -> Frames:
    n = len(data)
    order = "<"
    ifaces: list[_Iface] = []
    off: list[int] = []
    cap: list[int] = []
    tss: list[float] = []
    links: list[int] = []
    warning = None
    pos = 0
    head = struct.Struct("<II")
    while pos + 12 <= n:
        btype, blen = head.unpack_from(data, pos)
        if btype == PCAPNG_SHB:
            (bom,) = struct.unpack_from("<I", data, pos + 8)
            if bom == PCAPNG_BOM:
                order = "<"
            elif bom == 0x4D3C2B1A:
                order = ">"
            else:
                if pos == 0:
                    raise NotACapture("pcapng section header with a bad byte-order magic")
                warning = f"corrupt section header at byte {pos}"
                break
            head = struct.Struct(order + "II")
            btype, blen = head.unpack_from(data, pos)
            ifaces = []
        if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
            if pos == 0:
                raise NotACapture("pcapng block with an impossible length")
            warning = f"corrupt block header at byte {pos} (length {blen})"
            break
        if pos + blen > n:
            warning = (
                f"capture truncated: last block at byte {pos} needs {pos + blen - n} more bytes"
            )
            break
        body = pos + 8
        if btype == 1:  # Interface Description Block
            linktype, _r, snaplen = struct.unpack_from(order + "HHI", data, body)
            ifaces.append(
                _Iface(linktype, snaplen, _idb_tsresol(data, body + 8, pos + blen - 4, order))
            )
        elif btype == 6 or btype == 2:  # Enhanced Packet / obsolete Packet Block
            if btype == 6:
                iface_id, hi, lo, cl = struct.unpack_from(order + "IIII", data, body)
            else:
                iface_id, _drops, hi, lo, cl = struct.unpack_from(order + "HHIII", data, body)
            start = body + 20
            if iface_id >= len(ifaces) or start + cl > pos + blen - 4:
                warning = f"corrupt packet block at byte {pos}"
                break
            unit = ifaces[iface_id].ts_unit
            off.append(start)
            cap.append(cl)
            tss.append(((hi << 32) | lo) * unit)
            links.append(ifaces[iface_id].linktype)
        elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
            if not ifaces:
                warning = f"simple packet block before any interface at byte {pos}"
                break
            (orig,) = struct.unpack_from(order + "I", data, body)
            snap = ifaces[0].snaplen or orig
            cl = min(orig, snap, blen - 16)
            off.append(body + 4)
            cap.append(cl)
            tss.append(tss[-1] if tss else 0.0)
            links.append(ifaces[0].linktype)
        pos += blen
    else:
        if pos != n:
            warning = f"capture truncated: {n - pos} trailing bytes of a block header"
    return Frames(
        buf=np.frombuffer(data, dtype=np.uint8),
        offset=np.asarray(off, dtype=np.int64),
        caplen=np.asarray(cap, dtype=np.int64),
        ts=np.asarray(tss, dtype=np.float64),
        linktype=np.asarray(links, dtype=np.int32),
        fmt="pcapng",
        warnings=(warning,) if warning else (),
    )


def _idb_tsresol(data: bytes, pos: int, end: int, order: str) -> float:
    """``if_tsresol`` (option 9) of an Interface Description Block; microseconds by default."""
    opt = struct.Struct(order + "HH")
    while pos + 4 <= end:
        code, length = opt.unpack_from(data, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            return _tsresol(data[pos + 4])
        pos += 4 + ((length + 3) & ~3)
    return 1e-6


# --- writing (tests, the live capture and the benchmark generator) ----------------------------


def pcap_header(linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144) -> bytes:
    """A little-endian microsecond pcap file header."""
    return struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts: float, frame: bytes) -> bytes:
    """One pcap record (header + bytes) for ``pcap_header``'s format."""
    sec = int(ts)
    usec = round((ts - sec) * 1e6)
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
