"""From packets to contacts: one row per conversation a host started, with its outcome.

A *contact* is the first packet of a TCP or UDP conversation (its 5-tuple, either direction)
plus what came back: the detectors never look at single packets. Conversations are found by
sorting all packets on their canonical 5-tuple (numpy, no per-packet Python); ICMP errors
join the conversation they quote.

Per contact:

- ``technique``: from the first packet's TCP flags (``PROBE_FLAGS``; ECN bits ignored), or
  udp. A first packet with other flags (SYN+ACK, PSH+ACK, ...) or one that carries payload is
  the middle of a conversation the capture joined late: not a contact (``kept`` is False).
  ACK and FIN+ACK conversations that carry data are mid-stream too. (UDP contacts may carry
  payload: DNS queries, nmap's UDP payloads.)
- ``outcome``: what the responder did (``Outcome``), and ``t_event``: when that became
  known (the first reply, or the probe itself when nothing came back).
- ``completed`` (the initiator answered a SYN+ACK with a bare ACK: a full handshake, as a
  connect() scan or a real client does), ``orig_rst`` (the initiator reset it), ``data``
  (payload in either direction), ``tries`` (copies of the first packet: retransmissions).
- the first packet's header fields that fingerprints need (window, MSS-only options, IP ID,
  sequence number, data offset).
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from typing import Any, Final

import numpy as np

from twinscan.core.rules import ACK, FIN, PSH, RST, SYN, URG
from twinscan.core.vocab import Technique
from twinscan.detect.fields import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Packets

T = Technique


class Outcome(IntEnum):
    """What the responder did with a contact."""

    SILENT = 0  # nothing came back
    OPEN = 1  # SYN+ACK (TCP SYN), or a UDP datagram back
    ANSWERED = 2  # some other non-negative reply (an ACK or data in a conversation)
    RST = 3  # a TCP reset: the negative answer
    UNREACH = 4  # an ICMP destination unreachable quoting the contact

    @property
    def negative(self) -> bool:
        return self in (Outcome.RST, Outcome.UNREACH)

    @property
    def success(self) -> bool:
        return self in (Outcome.OPEN, Outcome.ANSWERED)


#: The TCP flags of each technique's probe (nmap(1), "Port Scanning Techniques"). A lone ACK
#: cannot be told from a Window scan probe: both are ACK.
PROBE_FLAGS: Final[dict[int, Technique]] = {
    SYN: T.SYN,
    FIN: T.FIN,
    FIN | PSH | URG: T.XMAS,
    0: T.NULL,
    ACK: T.ACK,
    FIN | ACK: T.MAIMON,
}

#: Small integer codes for the technique column (index into this tuple).
TECHNIQUES: Final[tuple[Technique, ...]] = (
    T.SYN,
    T.CONNECT,
    T.FIN,
    T.XMAS,
    T.NULL,
    T.ACK,
    T.MAIMON,
    T.UDP,
)
TECH_CODE: Final[dict[Technique, int]] = {t: i for i, t in enumerate(TECHNIQUES)}
NO_TECHNIQUE: Final = -1

_FLAG_CODE = np.full(64, NO_TECHNIQUE, dtype=np.int64)
for _flags, _tech in PROBE_FLAGS.items():
    _FLAG_CODE[_flags] = TECH_CODE[_tech]


@dataclasses.dataclass(frozen=True)
class Contacts:
    """Column table, one row per contact, sorted by ``t_event``; integer columns are int64."""

    t_probe: Any  # float64: the first packet
    t_event: Any  # float64: the first reply, or t_probe when nothing came back
    src: Any
    dst: Any
    proto: Any
    sport: Any
    dport: Any
    technique: Any  # code into TECHNIQUES
    outcome: Any  # Outcome value
    completed: Any  # bool
    orig_rst: Any  # bool
    data: Any  # bool
    tries: Any  # copies of the first packet (>= 1)
    win: Any
    mss_only: Any  # bool
    doff: Any
    ipid: Any
    seq: Any
    ack: Any

    def __len__(self) -> int:
        return int(self.t_event.shape[0])

    def rows(self, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
        """Selected columns as Python tuples (for the detectors' loops)."""
        return list(zip(*(getattr(self, n).tolist() for n in names), strict=True))

    def take(self, idx: Any) -> Contacts:
        return Contacts(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})


def contacts(p: Packets) -> Contacts:
    """The contacts of a packet table (see the module docstring)."""
    icmp_err = (p.proto == PROTO_ICMP) & (p.icmp_type == 3)
    icmp_err &= (p.inner_proto == PROTO_TCP) | (p.inner_proto == PROTO_UDP)
    l4 = (p.proto == PROTO_TCP) | (p.proto == PROTO_UDP)
    use = np.flatnonzero(l4 | icmp_err)
    is_icmp = icmp_err[use]
    # endpoints as (address << 16 | port); ICMP rows stand for the datagram they quote
    src = np.where(is_icmp, p.inner_src[use], p.src[use])
    dst = np.where(is_icmp, p.inner_dst[use], p.dst[use])
    sport = np.where(is_icmp, p.inner_sport[use], p.sport[use])
    dport = np.where(is_icmp, p.inner_dport[use], p.dport[use])
    proto = np.where(is_icmp, p.inner_proto[use], p.proto[use])
    a = (src << 16) | sport
    b = (dst << 16) | dport
    lo = np.minimum(a, b)
    hi = (np.maximum(a, b) << 8) | proto  # 48 + 8 bits
    order = np.lexsort((lo, hi))  # stable: capture order within a conversation
    use, is_icmp, a = use[order], is_icmp[order], a[order]
    lo, hi = lo[order], hi[order]
    n = use.shape[0]
    if n == 0:
        return _empty()
    new = np.ones(n, dtype=bool)
    new[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    first = use[starts]  # packet index of each conversation's first packet

    ts = p.ts[use]
    flags = p.flags[use]
    paylen = p.paylen[use]
    fwd = (a == a[starts][group]) & ~is_icmp
    rev = ~fwd & ~is_icmp
    first_flags = p.flags[first]
    same_flags = fwd & (flags == first_flags[group]) & (paylen == 0)

    def any_(mask: Any) -> Any:
        return np.logical_or.reduceat(mask, starts)

    rev_synack = any_(rev & ((flags & (SYN | ACK)) == (SYN | ACK)))
    rev_rst = any_(rev & ((flags & RST) != 0))
    rev_any = any_(rev)
    icmp_any = any_(is_icmp)
    data = any_(paylen > 0)
    completed = any_(fwd & ((flags & (SYN | FIN | RST | ACK)) == ACK)) & rev_synack
    orig_rst = any_(fwd & ((flags & RST) != 0))
    tries = np.add.reduceat(same_flags.astype(np.int64), starts)
    reply_ts = np.minimum.reduceat(np.where(rev | is_icmp, ts, np.inf), starts)

    g_proto = p.proto[first]
    is_tcp = g_proto == PROTO_TCP
    is_udp = g_proto == PROTO_UDP
    tech = np.where(is_tcp, _FLAG_CODE[first_flags & 0x3F], NO_TECHNIQUE)
    tech = np.where(is_udp, TECH_CODE[T.UDP], tech)
    # SYN conversations the initiator completed with a bare ACK are connect()s
    tech = np.where((tech == TECH_CODE[T.SYN]) & completed, TECH_CODE[T.CONNECT], tech)
    kept = (~is_icmp[starts]) & (tech != NO_TECHNIQUE) & (is_udp | (p.paylen[first] == 0))
    # ACK / FIN+ACK first packets in a conversation with data: a capture that began mid-stream
    midstream = ((first_flags & ACK) != 0) & data
    kept &= ~midstream

    syn = (first_flags & (SYN | ACK)) == SYN
    outcome = np.full(starts.shape[0], int(Outcome.SILENT), dtype=np.int64)
    outcome = np.where(rev_any, int(Outcome.ANSWERED), outcome)
    outcome = np.where(rev_any & (is_udp | (syn & rev_synack)), int(Outcome.OPEN), outcome)
    outcome = np.where(icmp_any & ~rev_any, int(Outcome.UNREACH), outcome)
    outcome = np.where(rev_rst & ~rev_synack, int(Outcome.RST), outcome)

    t_probe = p.ts[first]
    t_event = np.where(np.isfinite(reply_ts), np.maximum(reply_ts, t_probe), t_probe)
    k = np.flatnonzero(kept)
    k = k[np.argsort(t_event[k], kind="stable")]
    f = first[k]
    return Contacts(
        t_probe=t_probe[k],
        t_event=t_event[k],
        src=p.src[f],
        dst=p.dst[f],
        proto=g_proto[k],
        sport=p.sport[f],
        dport=p.dport[f],
        technique=tech[k],
        outcome=outcome[k],
        completed=completed[k],
        orig_rst=orig_rst[k],
        data=data[k],
        tries=np.maximum(tries[k], 1),
        win=p.win[f],
        mss_only=p.mss_only[f],
        doff=p.doff[f],
        ipid=p.ipid[f],
        seq=p.seq[f],
        ack=p.ack[f],
    )


def _empty() -> Contacts:
    z = np.zeros(0, dtype=np.int64)
    zf = np.zeros(0, dtype=np.float64)
    zb = np.zeros(0, dtype=bool)
    return Contacts(zf, zf, z, z, z, z, z, z, z, zb, zb, zb, z, z, zb, z, z, z, z)
