"""Re-timing a real capture to a slower pace (pure, over pcap bytes): how ``bench detect``
makes the rows of paces that would take hours (nmap -T2 and slower, long --scan-delay values).

Every probe conversation keeps its packets and their spacing; its start moves to the pace's
schedule (probe k at k x delay).
"""

from __future__ import annotations

import struct
from typing import Any


def _ip_at(linktype: int, frame: bytes) -> int | None:
    """Offset of the IPv4 header in ``frame`` (Ethernet or raw IP), or None."""
    if linktype == 1:
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
            return 14
        return None
    if linktype in (101, 228, 12, 14) and frame[:1] and frame[0] >> 4 == 4:
        return 0
    return None


def _flow(frame: bytes, at: int) -> tuple[int, int, tuple[Any, ...]] | None:
    """(source, destination, direction-free conversation key) of an IPv4 frame."""
    if len(frame) < at + 20:
        return None
    ihl = (frame[at] & 0x0F) * 4
    proto = frame[at + 9]
    src, dst = struct.unpack_from("!II", frame, at + 12)
    sport = dport = 0
    if proto in (6, 17) and len(frame) >= at + ihl + 4:
        sport, dport = struct.unpack_from("!HH", frame, at + ihl)
    a, b = (src, sport), (dst, dport)
    return src, dst, (proto, min(a, b), max(a, b))


def _frames(data: bytes) -> tuple[int, list[tuple[float, bytes]]]:
    from twinscan.detect.capture import read_capture

    fr = read_capture(data)
    buf = fr.buf.tobytes()
    out = [
        (float(t), buf[o : o + n])
        for t, o, n in zip(fr.ts.tolist(), fr.offset.tolist(), fr.caplen.tolist(), strict=True)
    ]
    linktype = int(fr.linktype[0]) if len(fr) else 1
    return linktype, out


def scanner_probes(data: bytes, scanner: int) -> tuple[int, float | None, float | None]:
    """Conversations the scanner started in a capture: (count, first probe, last probe)."""
    linktype, frames = _frames(data)
    seen: set[tuple[Any, ...]] = set()
    first = last = None
    for t, frame in frames:
        at = _ip_at(linktype, frame)
        f = _flow(frame, at) if at is not None else None
        if f is None or f[0] != scanner or f[2] in seen:
            continue
        seen.add(f[2])
        first = t if first is None else first
        last = t
    return len(seen), first, last


def retime(data: bytes, scanner: int, delay: float) -> bytes:
    """The capture with probe k of ``scanner`` starting k x ``delay`` after the first one.

    Every packet of a conversation moves with its probe (replies and retransmissions keep
    their spacing); packets of no scanner conversation move with the last probe before them.
    """
    from twinscan.detect.capture import pcap_header, pcap_record

    linktype, frames = _frames(data)
    shift: dict[tuple[Any, ...], float] = {}
    t0: float | None = None
    current = 0.0
    out: list[tuple[float, bytes]] = []
    for t, frame in frames:
        at = _ip_at(linktype, frame)
        f = _flow(frame, at) if at is not None else None
        if f is not None and f[2] in shift:
            out.append((t + shift[f[2]], frame))
            continue
        if f is not None and f[0] == scanner:
            t0 = t if t0 is None else t0
            current = t0 + len(shift) * delay - t
            shift[f[2]] = current
        out.append((t + current, frame))
    out.sort(key=lambda r: r[0])
    return pcap_header(linktype) + b"".join(pcap_record(t, fr) for t, fr in out)
