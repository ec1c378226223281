"""Probe bytes and reply parsing for the native raw engine (pure: no sockets, no clock).

Probes: scapy builds each technique's IPv4/TCP or IPv4/UDP packet once (the ``template``
function a ``ProbeBuilder`` is given, ``twinscan.engines.template_cache``: this module imports
no scapy); every probe is then a copy of those bytes with the destination, destination port,
sequence number, acknowledgement number, IP ID and both checksums patched in, at the offsets
``twinscan.protocol.wire`` declares. The checksums are computed incrementally: the
one's-complement sum of the fixed fields is taken once per template and host, so a probe
costs a few integer additions.

Replies: ``parse_reply`` reads raw IPv4 bytes (as a raw socket delivers them) into a
``Parsed``: the probed (host, port), our source port as echoed, the ``twinscan.core.rules`` reply
value, and the numbers the cookie check needs. Anything that is not a well-formed reply
raises ``MalformedReply`` and nothing else.

Matching: each probe carries a keyed cookie, ``cookie(dst, dport)``, plus the try number in
its sequence number (and in its acknowledgement number when the ACK flag is set, and in the
IP ID of UDP probes). ``ProbeBuilder.try_of`` recovers the try number from a reply, or
``None`` when the reply does not answer one of our probes (stray, late from another scan,
forged, or our own probe looped back on ``lo``).

IPv6: a builder whose source address is IPv6 patches the same way into an IPv6 template
(``_template6``: no IP checksum or ID; UDP probes carry their cookie in the low 16 bits of the
flow label, which ICMPv6 errors quote as ICMP quotes the IP ID). ``parse_reply6`` reads what an
``AF_INET6`` raw socket delivers: the transport header or ICMPv6 message, without the IPv6
header, with the sender and hop limit from ``recvmsg``.

Longer than most modules on purpose: the per-packet builder, parser and matcher sit next to
their numpy twins (``ProbeBuilder.tcp_batch``, ``ProbeBuilder.match_tcp``), which are
property-tested equal to them (``tests/protocol/test_packets.py``), so that a change to one is seen,
and made, in the other.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

try:  # the built-in BLAKE2 hashlib wraps: hashlib itself loads OpenSSL (~3.4 MiB resident)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2b

from twinscan.core import errors, rules
from twinscan.core.rules import IcmpReply, TcpReply, UdpReply
from twinscan.core.vocab import Technique
from twinscan.protocol import wire
from twinscan.protocol.wire import (
    FRAG_OFFSET_MASK,
    ICMP,
    ICMP_LEN,
    ICMP_TIMXCEED,
    ICMP_UNREACH,
    IP_DST,
    IP_ID,
    IP_PROTO,
    IP_SRC,
    IP_SUM,
    IP_VER_IHL,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4,
    IPV4_LEN,
    IPV4_PLAIN,
    IPV6,
    IPV6_LEN,
    PORTS,
    PSEUDO_TAIL,
    TCP,
    TCP_DPORT,
    TCP_LEN,
    TCP_SUM,
    UDP,
    UDP_DPORT,
    UDP_LEN,
    UDP_SUM,
    aton,
    aton6,
    aton_any,
    ntoa,
    ntoa6,
)

T = Technique


#: TCP flags of each raw TCP technique's probe (from ``rules.PROBE_FLAGS``, the one table).
PROBE_FLAGS: Final[dict[Technique, int]] = {
    t: flags for t, flags in rules.PROBE_FLAGS.items() if t not in (T.CONNECT, T.FTP_BOUNCE)
}

#: Highest try number a cookie may carry (try numbers are 0-based; nmap caps retries at 50).
MAX_TRIES: Final = 64
#: nmap's probe window size and TTL range; we use a fixed per-scan TTL like nmap does per run.
WINDOW: Final = 1024
DEFAULT_TTL: Final = 64

#: A template function: (technique, source address, source port, payload) -> datagram.
TemplateFn = Callable[[Technique, str, int, bytes], bytes]


class MalformedReply(errors.MalformedData):
    """Bytes that are not a reply twinscan understands (truncated, wrong protocol, ...)."""


# --- checksums ------------------------------------------------------------------------------


def ones_sum(data: bytes) -> int:
    """The unfolded one's-complement sum of ``data`` as big-endian 16-bit words."""
    if len(data) % 2:
        data = data + b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def fold(total: int) -> int:
    """Fold a sum to 16 bits and complement it: the Internet checksum (RFC 1071)."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def internet_checksum(data: bytes) -> int:
    return fold(ones_sum(data))


# --- templates ---------------------------------------------------------------------------------


def cookie_key(secret: bytes, dst: str) -> int:
    """Per-(scan, host) 32-bit key: a keyed BLAKE2 hash of the destination address."""
    digest = blake2b(aton_any(dst), key=secret, digest_size=4).digest()
    return int.from_bytes(digest, "big")


def mix_cookie(host_key: int, dport: int, sport: int) -> int:
    """The 32-bit cookie of one (host, port, source port): a keyed integer mix (murmur3 fmix32).

    The per-host key comes from BLAKE2 with the per-scan secret, so the cookie cannot be
    predicted without the secret; the mix itself only has to spread ports over 32 bits.
    """
    h = (host_key ^ ((dport << 16) | sport)) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


class _Host(NamedTuple):
    addr: bytes
    key: int
    ip_sum: int  # one's-complement sum of the destination address words
    l4_sum: int  # the same, for the pseudo-header


class _Template(NamedTuple):
    data: bytes
    ip_sum: int  # IP header sum without id, checksum and dst
    l4_sum: int  # pseudo-header + L4 header (+ payload) sum without dst, dport, seq, ack, csum


#: The fields each probe patches, zeroed in its template: IPv4 id, checksum and destination;
#: L4 destination port and checksum, and for TCP the sequence and acknowledgement numbers.
_VARIABLE: Final = {
    IPPROTO_TCP: [(0, IPV4[f]) for f in ("id", "sum", "dst")]
    + [(IPV4_LEN, TCP[f]) for f in ("dport", "seq", "ack", "sum")],
    IPPROTO_UDP: [(0, IPV4[f]) for f in ("id", "sum", "dst")]
    + [(IPV4_LEN, UDP[f]) for f in ("dport", "sum")],
}


def _template(raw: bytes, proto: int) -> _Template:
    buf = bytearray(raw)
    for base, field in _VARIABLE[proto]:
        buf[base + field.offset : base + field.end] = bytes(field.size)
    ip_sum = ones_sum(bytes(buf[:IPV4_LEN]))
    l4 = bytes(buf[IPV4_LEN:])
    pseudo = bytes(buf[IP_SRC : IPV4["src"].end]) + PSEUDO_TAIL.struct.pack(0, proto, len(l4))
    return _Template(bytes(buf), ip_sum, ones_sum(pseudo) + ones_sum(l4))


#: An IPv6 probe's variable fields, zeroed in its template: the flow label (UDP's cookie) and
#: destination; the same L4 fields as IPv4.
_VARIABLE6: Final = {
    IPPROTO_TCP: [(0, IPV6[f]) for f in ("vtf", "dst")]
    + [(IPV6_LEN, TCP[f]) for f in ("dport", "seq", "ack", "sum")],
    IPPROTO_UDP: [(0, IPV6[f]) for f in ("vtf", "dst")]
    + [(IPV6_LEN, UDP[f]) for f in ("dport", "sum")],
}


def _template6(raw: bytes, proto: int) -> _Template:
    if len(raw) < IPV6_LEN or raw[0] >> 4 != 6 or raw[wire.IP6_NH] != proto:
        raise ValueError("not an IPv6 template of the technique's protocol")
    buf = bytearray(raw)
    for base, field in _VARIABLE6[proto]:
        buf[base + field.offset : base + field.end] = bytes(field.size)
    _pack_vtf(buf, 0, wire.IPV6_VERSION)
    l4 = bytes(buf[IPV6_LEN:])
    src = bytes(buf[wire.IP6_SRC : IPV6["src"].end])
    pseudo = src + wire.PSEUDO6_TAIL.struct.pack(len(l4), b"", proto)
    return _Template(bytes(buf), 0, ones_sum(pseudo) + ones_sum(l4))


class ProbeBuilder:
    """Patches per-probe fields into a technique's scapy-built template.

    ``template(technique, src, sport, payload)`` gives that template: the technique's datagram
    with destination 0.0.0.0, destination port 0, sequence, acknowledgement and IP ID 0
    (``twinscan.engines.template_cache.cached_template`` in a scan). ``payloads(port)`` gives the UDP payloads of a port; try *k* sends payload *k* mod their
    number (so a silent port hears each one), TCP probes have none.
    """

    def __init__(
        self,
        technique: Technique,
        src: str,
        sport: int,
        secret: bytes,
        *,
        ip_id_base: int = 0,
        payloads: Callable[[int], Sequence[bytes]] | None = None,
        template: TemplateFn,
    ) -> None:
        self.technique = technique
        self.src = src
        self.sport = sport
        self.secret = secret
        self.ip_id_base = ip_id_base & 0xFFFF
        self.proto = IPPROTO_UDP if technique is T.UDP else IPPROTO_TCP
        self.flags = PROBE_FLAGS.get(technique, 0)
        #: Sequence space a probe consumes (SYN and FIN count one): what a RST/ACK acks beyond it.
        self.consumed = 1 if self.flags & (rules.SYN | rules.FIN) else 0
        self._with_ack = bool(self.flags & rules.ACK)
        self._payloads = payloads or (lambda _port: (b"",))
        self._make_template = template
        self._templates: dict[bytes, _Template] = {}
        self._hosts: dict[str, _Host] = {}
        self._counter = 0
        self._known_cache: tuple[Sequence[str], tuple[Any, Any, Any]] | None = None
        #: An IPv6 scan (the source address says which family the probes are).
        self.v6 = ":" in src
        self._aton = aton6 if self.v6 else aton
        self._parse_template = _template6 if self.v6 else _template
        if self.v6:
            self._tcp = self._tcp6  # type: ignore[method-assign]
            self._udp = self._udp6  # type: ignore[method-assign]

    # -- per-host and per-payload caches

    def _host(self, dst: str) -> _Host:
        host = self._hosts.get(dst)
        if host is None:
            addr = self._aton(dst)
            words = ones_sum(addr)
            host = _Host(addr, cookie_key(self.secret, dst), words, words)
            self._hosts[dst] = host
        return host

    def _tmpl(self, payload: bytes) -> _Template:
        tmpl = self._templates.get(payload)
        if tmpl is None:
            raw = self._make_template(self.technique, self.src, self.sport, payload)
            tmpl = self._parse_template(raw, self.proto)
            self._templates[payload] = tmpl
        return tmpl

    def cookie(self, dst: str, dport: int) -> int:
        return mix_cookie(self._host(dst).key, dport, self.sport)

    # -- probes

    def probes(self, dst: str, dport: int, tryno: int) -> list[bytes]:
        """The datagram of try ``tryno`` to ``dst:dport`` (UDP: the port's payloads in turn)."""
        host = self._host(dst)
        ck = mix_cookie(host.key, dport, self.sport)
        if self.proto == IPPROTO_TCP:
            return [self._tcp(self._tmpl(b""), host, dport, (ck + tryno) & 0xFFFFFFFF)]
        ip_id = (ck + tryno) & 0xFFFF
        payloads = self._payloads(dport)
        payload = payloads[tryno % len(payloads)]  # one payload per try, in turn
        return [self._udp(self._tmpl(payload), host, dport, ip_id)]

    def _ip(self, buf: bytearray, tmpl: _Template, host: _Host, ip_id: int) -> None:
        csum = fold(tmpl.ip_sum + host.ip_sum + ip_id)
        # (struct's "x" pad bytes would write zeros: pack each field on its own)
        _pack_ip_id(buf, IP_ID, ip_id)
        _pack_ip_sum(buf, IP_SUM, csum)
        buf[IP_DST:_IP_DST_END] = host.addr

    def _tcp(self, tmpl: _Template, host: _Host, dport: int, seq: int) -> bytes:
        buf = bytearray(tmpl.data)
        self._counter = (self._counter + 1) & 0xFFFF
        self._ip(buf, tmpl, host, (self.ip_id_base + self._counter) & 0xFFFF)
        ack = seq if self._with_ack else 0
        total = tmpl.l4_sum + host.l4_sum + dport + (seq >> 16) + (seq & 0xFFFF)
        total += (ack >> 16) + (ack & 0xFFFF)
        _pack_tcp_dport_seq_ack(buf, TCP_DPORT, dport, seq, ack)
        _pack_tcp_sum(buf, TCP_SUM, fold(total))
        return bytes(buf)

    def _udp(self, tmpl: _Template, host: _Host, dport: int, ip_id: int) -> bytes:
        buf = bytearray(tmpl.data)
        self._ip(buf, tmpl, host, ip_id)
        csum = fold(tmpl.l4_sum + host.l4_sum + dport) or 0xFFFF
        _pack_udp_dport(buf, UDP_DPORT, dport)
        _pack_udp_sum(buf, UDP_SUM, csum)
        return bytes(buf)

    def _tcp6(self, tmpl: _Template, host: _Host, dport: int, seq: int) -> bytes:
        buf = bytearray(tmpl.data)
        buf[_IP6_DST : _IP6_DST + 16] = host.addr
        ack = seq if self._with_ack else 0
        total = tmpl.l4_sum + host.l4_sum + dport + (seq >> 16) + (seq & 0xFFFF)
        total += (ack >> 16) + (ack & 0xFFFF)
        _pack_tcp_dport_seq_ack(buf, _TCP6_DPORT, dport, seq, ack)
        _pack_tcp_sum(buf, _TCP6_SUM, fold(total))
        return bytes(buf)

    def _udp6(self, tmpl: _Template, host: _Host, dport: int, ip_id: int) -> bytes:
        buf = bytearray(tmpl.data)
        buf[_IP6_DST : _IP6_DST + 16] = host.addr
        _pack_flow16(buf, wire.IP6_FLOW16, ip_id)  # the cookie, where ICMPv6 quotes it back
        csum = fold(tmpl.l4_sum + host.l4_sum + dport) or 0xFFFF
        _pack_udp_dport(buf, _UDP6_DPORT, dport)
        _pack_udp_sum(buf, _UDP6_SUM, csum)
        return bytes(buf)

    def tcp_batch(self, dsts: Sequence[str], dports: Sequence[int], trynos: Sequence[int]) -> Any:
        """Many TCP probes at once: a C-contiguous ``uint8`` array, one probe per row.

        Row *i* is byte for byte what ``probes(dsts[i], dports[i], trynos[i])`` would give
        (including the running IP ID), built with numpy instead of per-probe Python.
        """
        import numpy as np

        return self.tcp_rows(self.host_table(dsts), np.arange(len(dsts)), dports, trynos)

    def host_table(self, dsts: Sequence[str]) -> tuple[Any, Any, Any]:
        """``dsts``' cookie keys, address sums (``uint64``) and addresses (``uint8`` rows):
        what ``tcp_rows`` reads per probe, made once per target list."""
        import numpy as np

        hosts = [self._host(d) for d in dsts]
        width = 16 if self.v6 else 4
        addr = np.frombuffer(b"".join(h.addr for h in hosts), dtype=np.uint8)
        return (
            np.array([h.key for h in hosts], dtype=np.uint64),
            np.array([h.ip_sum for h in hosts], dtype=np.uint64),
            addr.reshape(len(hosts), width),
        )

    def tcp_rows(self, table: tuple[Any, Any, Any], hosts: Any, dports: Any, trynos: Any) -> Any:
        """``tcp_batch`` for probes given as host numbers into ``table`` (``host_table``)."""
        import numpy as np

        if self.proto != IPPROTO_TCP:
            raise ValueError("tcp_batch builds TCP probes only")
        n = len(dports)
        tmpl = self._tmpl(b"")
        u64 = np.uint64
        keys, sums, addrs = table
        key, hsum, addr = keys[hosts], sums[hosts], addrs[hosts]
        dport = np.asarray(dports, dtype=u64)
        seq = _mix_cookies(key, dport, self.sport) + np.asarray(trynos).astype(np.uint32)
        ip_id = (u64(self.ip_id_base + self._counter + 1) + np.arange(n, dtype=u64)) & u64(0xFFFF)
        self._counter = (self._counter + n) & 0xFFFF
        ack = seq if self._with_ack else np.zeros(n, dtype=np.uint32)
        ip_csum = _fold(u64(tmpl.ip_sum) + hsum + ip_id)
        l4 = u64(tmpl.l4_sum) + hsum + dport + (seq >> 16) + (seq & 0xFFFF)
        l4 += (ack >> 16) + (ack & 0xFFFF)
        out = np.empty((n, len(tmpl.data)), dtype=np.uint8)
        out[:] = np.frombuffer(tmpl.data, dtype=np.uint8)
        if self.v6:
            out[:, _IP6_DST : _IP6_DST + 16] = addr
            v = _fields_view(out, _V6_PROBE)
        else:
            out[:, IP_DST:_IP_DST_END] = addr
            v = _fields_view(out, _V4_PROBE)
            v["ip_id"] = ip_id
            v["ip_sum"] = ip_csum
        v["dport"] = dport
        v["seq"] = seq
        v["ack"] = ack
        v["sum"] = _fold(l4)
        return out

    def match_tcp(self, rows: Any, lengths: Any, hosts: Sequence[str]) -> tuple[list[Any], Any]:
        """``match_tcp_arrays`` as ``(host, port, tryno, flags, window, ttl)`` tuples, ``host``
        the address; and the slow rows' indices."""
        cols, slow = self.match_tcp_arrays(rows, lengths, hosts)
        return _as_tuples(cols, hosts), slow

    def match_tcp_arrays(self, rows: Any, lengths: Any, hosts: Sequence[str]) -> tuple[Any, Any]:
        """Parse and match many raw TCP datagrams at once (numpy), as ``parse_reply`` and
        ``try_of`` would one by one.

        ``rows``: ``uint8`` array, datagram *i* in row *i* (at least 40 bytes wide), its true
        length ``lengths[i]``; ``hosts``: the scanned addresses. Returns the matched replies as
        arrays ``(host, port, tryno, flags, window, ttl)``, ``host`` the index of the sender
        in ``hosts``, in row order, and the indices of rows this fast path does not handle
        (IP options, a fragment): parse those one by one. Rows that are no reply to this
        scan's probes are dropped, as ``try_of`` drops them.
        """
        import numpy as np

        u64 = np.uint64
        lengths = np.asarray(lengths)
        if not len(lengths):
            return _no_match(), np.zeros(0, dtype=np.int64)
        v = _fields_view(rows, _V4_REPLY)
        b0 = v["ver_ihl"]
        simple = (
            (b0 == IPV4_PLAIN)
            & (lengths >= IPV4_LEN + TCP_LEN)
            & (v["proto"] == IPPROTO_TCP)
            & (v["frag"] & FRAG_OFFSET_MASK == 0)
        )
        if simple.all():  # (as a rule: no options, no fragments)
            slow = np.zeros(0, dtype=np.int64)
        else:
            slow = np.flatnonzero(
                ~simple & (lengths >= IPV4_LEN) & ((b0 >> 4) == 4) & (b0 != IPV4_PLAIN)
            )
        known, to_target, keys = self._known(hosts)
        if len(known) == 1:  # one target: a comparison, no search
            pos = None
            sender = v["src"] == known[0]
        else:
            src = v["src"].astype(u64)
            pos = np.minimum(np.searchsorted(known, src), len(known) - 1)
            sender = known[pos] == src
        idx = np.nonzero(simple & sender & (v["dport"] == self.sport))[0]
        if not len(idx):
            return _no_match(), slow
        cols = self._matched_arrays(v, idx, pos, v["ttl"], keys)
        return (to_target[cols[0]], *cols[1:]), slow

    def match_tcp6_arrays(
        self, rows: Any, lengths: Any, senders: Any, hlims: Any, hosts: Sequence[str]
    ) -> tuple[Any, ...]:
        """``match_tcp6`` as arrays, as ``match_tcp_arrays`` gives them (no slow rows)."""
        import numpy as np

        lengths = np.asarray(lengths)
        if not len(lengths):
            return _no_match()
        v = _fields_view(rows, _V6_REPLY)
        known, to_target, keys = self._known(hosts)
        pos = np.minimum(np.searchsorted(known, senders), len(known) - 1)
        ok = (lengths >= TCP_LEN) & (known[pos] == senders) & (v["dport"] == self.sport)
        idx = np.nonzero(ok)[0]
        if not len(idx):
            return _no_match()
        cols = self._matched_arrays(v, idx, pos, np.asarray(hlims), keys)
        return (to_target[cols[0]], *cols[1:])

    def _known(self, hosts: Sequence[str]) -> tuple[Any, Any, Any]:
        """``hosts``' addresses sorted (IPv4 as numbers, IPv6 as ``S16``), each one's index in
        ``hosts`` and its cookie key: made once per target list."""
        import numpy as np

        cached = self._known_cache
        if cached is not None and cached[0] is hosts:
            return cached[1]
        numbered = sorted((self._host(h).addr, i) for i, h in enumerate(hosts))
        if self.v6:
            known = np.array([a for a, _ in numbered], dtype="S16")
        else:
            known = np.array([int.from_bytes(a, "big") for a, _ in numbered], dtype=np.uint64)
        to_target = np.array([i for _, i in numbered], dtype=np.int64)
        keys = np.array([self._host(hosts[i]).key for _, i in numbered], dtype=np.uint64)
        self._known_cache = (hosts, (known, to_target, keys))
        return known, to_target, keys

    def match_tcp6(
        self, rows: Any, lengths: Any, senders: Any, hlims: Any, hosts: Sequence[str]
    ) -> list[Any]:
        """``match_tcp6_arrays`` as ``match_tcp``'s tuples."""
        return _as_tuples(self.match_tcp6_arrays(rows, lengths, senders, hlims, hosts), hosts)

    def _matched_arrays(
        self, v: Any, idx: Any, host_pos: Any, ttl: Any, keys: Any
    ) -> tuple[Any, ...]:
        """The cookie check of ``match_tcp_arrays``/``match_tcp6_arrays`` over the candidate
        replies ``idx`` of ``v`` (``_fields_view`` rows with the TCP fields), each from host
        position ``host_pos`` (None: all from position 0, one target) with ``ttl``: (host_pos,
        port, tryno, flags, window, ttl) of the kept ones; ``keys``: the cookie key of each
        host position. The replies are checked a kind of flags at a time (``_of_kind``): one
        kind for a -p- scan's RSTs."""
        import numpy as np

        if len(idx) < len(v):  # (usually every row is a candidate: no copy of the rows)
            v, ttl = v[idx], ttl[idx]
            if host_pos is not None:
                host_pos = host_pos[idx]

        u32 = np.uint32  # (sequence arithmetic wraps as TCP's does)
        port = v["sport"]
        seq, ack = v["seq"].astype(u32), v["ack"].astype(u32)
        flags = v["flags"]
        key = np.asarray(keys)[0] if host_pos is None else np.asarray(keys)[host_pos]
        ck = _mix_cookies(key, port, self.sport)
        from_seq = seq - ck
        from_ack = ack - ck - u32(0 if self._with_ack else self.consumed)
        first = int(flags[0])
        if (flags == first).all():  # (as a rule: a -p- scan's RSTs)
            valid, tryno = self._of_kind(first, from_seq, from_ack)
        else:
            valid = np.empty(len(flags), dtype=bool)
            tryno = np.empty(len(flags), dtype=np.int64)
            for kind in sorted(set(flags.tolist())):
                rows = flags == kind
                valid[rows], tryno[rows] = self._of_kind(kind, from_seq[rows], from_ack[rows])
        keep = np.nonzero(valid)[0]
        tryno = tryno[keep]
        return (
            np.zeros(len(keep), dtype=np.int64) if host_pos is None else host_pos[keep],
            port[keep].astype(np.int64),
            tryno,
            flags[keep].astype(np.int64),
            v["win"][keep].astype(np.int64),
            np.asarray(ttl)[keep].astype(np.int64),
        )

    def _of_kind(self, flags: int, from_seq: Any, from_ack: Any) -> tuple[Any, Any]:
        """For replies that all carry ``flags`` (their sequence and acknowledgement numbers
        less the cookie): which answer a probe of ours, and the try each answers -- ``try_of``'s
        rules, each flag test made once for the lot."""
        import numpy as np

        n = len(from_seq)
        if _bare_syn(flags):  # a split handshake's SYN: no cookie to check
            valid, tryno = np.ones(n, dtype=bool), np.full(n, -1, dtype=np.int64)
        else:
            tryno = (from_ack if flags & rules.ACK else from_seq).astype(np.int64)
            if flags & (rules.ACK | rules.RST):
                valid = tryno < MAX_TRIES
            else:
                valid = np.zeros(n, dtype=bool)
        if flags == self.flags:  # our own probe looped back, not a reply
            valid &= ~(from_seq < MAX_TRIES)
        return valid, tryno

    # -- matching

    def try_of(self, parsed: Parsed) -> int | None:
        """The try number ``parsed`` answers, -1 when it carries no cookie (UDP data, a bare
        SYN), or ``None`` when it is not an answer to this scan's probes."""
        if parsed.sport != self.sport or parsed.proto != self.proto:
            return None
        reply = parsed.reply
        ck = mix_cookie(self._host(parsed.host).key, parsed.port, self.sport)
        if isinstance(reply, UdpReply):
            return -1
        if isinstance(reply, IcmpReply):
            if self.proto == IPPROTO_UDP:
                d = (parsed.seq - ck) & 0xFFFF
            else:
                d = (parsed.seq - ck) & 0xFFFFFFFF
            return d if d < MAX_TRIES else None
        # A TCP segment. Our own probe looped back (lo, dport == sport) is not a reply.
        if reply.flags == self.flags and (parsed.seq - ck) & 0xFFFFFFFF < MAX_TRIES:
            return None
        if reply.flags & rules.ACK:
            d = (parsed.ack - ck - (0 if self._with_ack else self.consumed)) & 0xFFFFFFFF
            # RFC 793: a RST answering an ACK-bearing probe has no ACK; Linux may still set it.
            return d if d < MAX_TRIES else None
        if reply.flags & rules.RST:
            d = (parsed.seq - ck) & 0xFFFFFFFF
            return d if d < MAX_TRIES else None
        if reply.flags & rules.SYN:
            return -1  # split handshake: the peer's own ISN, nothing to check
        return None


def _bare_syn(flags: int) -> bool:
    """SYN without ACK or RST: the peer's own ISN (a split handshake), no cookie in it."""
    return not flags & (rules.ACK | rules.RST) and bool(flags & rules.SYN)


def _as_tuples(cols: tuple[Any, ...], hosts: Sequence[str]) -> list[Any]:
    """Matched reply arrays as tuples, the host index replaced by its address."""
    names = [hosts[i] for i in cols[0].tolist()]
    return list(zip(names, *(c.tolist() for c in cols[1:]), strict=True))


def _no_match() -> tuple[Any, ...]:
    import numpy as np

    return tuple(np.zeros(0, dtype=np.int64) for _ in range(6))


def _mix_cookies(key: Any, dport: Any, sport: int) -> Any:
    """``mix_cookie`` over numpy arrays (keys below 2**32), as ``uint32``: the arithmetic
    wraps modulo 2**32 by itself, no masking step after each operation."""
    import numpy as np

    u32 = np.uint32
    h = np.asarray(key).astype(u32) ^ ((np.asarray(dport).astype(u32) << u32(16)) | u32(sport))
    h ^= h >> u32(16)
    h *= u32(0x85EBCA6B)
    h ^= h >> u32(13)
    h *= u32(0xC2B2AE35)
    h ^= h >> u32(16)
    return h


def _fold(total: Any) -> Any:
    """``fold`` over a numpy ``uint64`` array of sums below 2**32."""
    import numpy as np

    u64 = np.uint64
    for _ in range(2):
        total = (total & u64(0xFFFF)) + (total >> u64(16))
    return ~total & u64(0xFFFF)


#: What the reply matchers read: (name, header field, the header's offset in a row).
_TCP_REPLY = tuple(
    (name, TCP[name], IPV4_LEN) for name in ("sport", "dport", "seq", "ack", "flags", "win")
)
_V4_REPLY = (
    *((name, IPV4[name], 0) for name in ("ver_ihl", "frag", "ttl", "proto", "src")),
    *_TCP_REPLY,
)
_V6_REPLY = tuple((name, field, 0) for name, field, _ in _TCP_REPLY)  # no IPv6 header
#: What ``tcp_rows`` writes into its copies of the template (the destination aside).
_V6_PROBE = tuple((name, TCP[name], IPV6_LEN) for name in ("dport", "seq", "ack", "sum"))
_V4_PROBE = (
    ("ip_id", IPV4["id"], 0),
    ("ip_sum", IPV4["sum"], 0),
    *((name, TCP[name], IPV4_LEN) for name in ("dport", "seq", "ack", "sum")),
)


def _fields_view(rows: Any, fields: tuple[tuple[str, wire.Field, int], ...]) -> Any:
    """``rows`` (``uint8``, one datagram per row) as a structured array of ``fields``, each
    in network byte order, without copying: one numpy operation per field, not per byte."""
    import numpy as np

    rows = np.ascontiguousarray(rows)
    width = rows.shape[1]
    # (looked up by the layout's identity: hashing its frozen Fields took ~5 us a batch)
    hit = _DTYPES.get((width, id(fields)))
    if hit is None or hit[0] is not fields:
        hit = _DTYPES[width, id(fields)] = (fields, _row_dtype(width, fields))
    return rows.view(hit[1]).reshape(len(rows))


#: ``(layout, _row_dtype(width, layout))`` by (row width, ``id`` of the layout); the entry
#: holds the layout, so its ``id`` cannot be reused by another while the entry is there.
_DTYPES: dict[tuple[int, int], tuple[Any, Any]] = {}


def _row_dtype(width: int, fields: tuple[tuple[str, wire.Field, int], ...]) -> Any:
    import numpy as np

    kinds = {"B": "u1", "H": ">u2", "I": ">u4", "4s": ">u4"}  # (an IPv4 address as a number)
    return np.dtype(
        {
            "names": [name for name, _, _ in fields],
            "formats": [kinds.get(f.fmt) or ("u1", (f.size,)) for _, f, _ in fields],
            "offsets": [base + f.offset for _, f, base in fields],
            "itemsize": width,
        }
    )


# Per-probe field writers (bound ``Struct.pack_into``: the probe-by-probe path is hot).
_pack_ip_id = IPV4.struct_of("id").pack_into
_pack_ip_sum = IPV4.struct_of("sum").pack_into
_pack_tcp_dport_seq_ack = TCP.struct_of("dport", "seq", "ack").pack_into
_pack_tcp_sum = TCP.struct_of("sum").pack_into
_pack_udp_dport = UDP.struct_of("dport").pack_into
_pack_udp_sum = UDP.struct_of("sum").pack_into
_IP_DST_END: Final = IPV4["dst"].end
_pack_vtf = IPV6.struct_of("vtf").pack_into
_pack_flow16 = struct.Struct("!H").pack_into
_IP6_DST: Final = wire.IP6_DST
_TCP6_DPORT: Final = wire.TCP6_DPORT
_TCP6_SUM: Final = wire.TCP6_SUM
_UDP6_DPORT: Final = wire.UDP6_DPORT
_UDP6_SUM: Final = wire.UDP6_SUM


# --- replies -------------------------------------------------------------------------------


class Parsed(NamedTuple):
    """A reply to one of our probes, as far as the bytes tell."""

    host: str  # the probed address
    port: int  # the probed port
    sport: int  # our source port, as the reply echoes it
    proto: int  # the probe's protocol (6 or 17)
    reply: TcpReply | IcmpReply | UdpReply
    seq: int  # TCP: the reply's seq; ICMP: the quoted seq (TCP) or IP ID (UDP)
    ack: int  # TCP: the reply's ack; else 0
    ttl: int
    sender: str  # who sent the reply (a router for some ICMP errors)


def parse_reply(data: bytes) -> Parsed:
    """Parse one IPv4 datagram (a raw socket read) into a ``Parsed`` or raise ``MalformedReply``."""
    try:
        return _parse(data)
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, MalformedReply):
            raise
        raise MalformedReply(str(exc)) from None


def _parse(data: bytes) -> Parsed:
    if len(data) < IPV4_LEN:
        raise MalformedReply("shorter than an IPv4 header")
    vihl, _tos, _total, _id, frag, ttl, proto, _csum, src, _dst = _unpack_ip(data)
    if vihl >> 4 != 4:
        raise MalformedReply("not IPv4")
    ihl = (vihl & 0x0F) * 4
    if ihl < IPV4_LEN or len(data) < ihl:
        raise MalformedReply("bad IPv4 header length")
    if frag & FRAG_OFFSET_MASK:
        raise MalformedReply("a non-first fragment")
    sender = ntoa(src)
    if proto == IPPROTO_TCP:
        if len(data) < ihl + TCP_LEN:
            raise MalformedReply("truncated TCP header")
        sp, dp, seq, ack, _off, flags, window, _sum, _urp = _unpack_tcp(data, ihl)
        return Parsed(sender, sp, dp, IPPROTO_TCP, TcpReply(flags, window), seq, ack, ttl, sender)
    if proto == IPPROTO_UDP:
        if len(data) < ihl + UDP_LEN:
            raise MalformedReply("truncated UDP header")
        sp, dp = _unpack_ports(data, ihl)
        return Parsed(sender, sp, dp, IPPROTO_UDP, UdpReply(), 0, 0, ttl, sender)
    if proto == IPPROTO_ICMP:
        return _parse_icmp(data, ihl, ttl, sender)
    raise MalformedReply(f"IP protocol {proto}")


_unpack_ip = IPV4.struct.unpack_from
_unpack_tcp = TCP.struct.unpack_from
_unpack_ports = PORTS.unpack_from
_unpack_ip_id = IPV4.struct_of("id").unpack_from
_unpack_tcp_seq = TCP.struct_of("seq").unpack_from
#: The quoted datagram's first bytes an ICMP error must carry: both ports, the TCP sequence
#: number or the whole UDP header (RFC 792 quotes 64 bits).
_QUOTED_L4: Final = UDP_LEN


def _parse_icmp(data: bytes, ihl: int, ttl: int, sender: str) -> Parsed:
    if len(data) < ihl + ICMP_LEN + IPV4_LEN + _QUOTED_L4:
        raise MalformedReply("ICMP error too short to quote a probe")
    icmp_type, code = data[ihl + ICMP.offset("type")], data[ihl + ICMP.offset("code")]
    if icmp_type not in (ICMP_UNREACH, ICMP_TIMXCEED):
        raise MalformedReply(f"ICMP type {icmp_type} is not an error about a probe")
    q = ihl + ICMP_LEN
    qvihl = data[q + IP_VER_IHL]
    if qvihl >> 4 != 4:
        raise MalformedReply("quoted packet is not IPv4")
    qihl = (qvihl & 0x0F) * 4
    if qihl < IPV4_LEN or len(data) < q + qihl + _QUOTED_L4:
        raise MalformedReply("bad quoted IPv4 header")
    (qid,) = _unpack_ip_id(data, q + IP_ID)
    qproto = data[q + IP_PROTO]
    probed = ntoa(data[q + IP_DST : q + _IP_DST_END])
    sp, dp = _unpack_ports(data, q + qihl)
    if qproto == IPPROTO_TCP:
        (qseq,) = _unpack_tcp_seq(data, q + qihl + TCP.offset("seq"))
    elif qproto == IPPROTO_UDP:
        qseq = qid
    else:
        raise MalformedReply(f"quoted IP protocol {qproto}")
    reply = IcmpReply(icmp_type, code, from_target=sender == probed)
    return Parsed(probed, dp, sp, qproto, reply, qseq, 0, ttl, sender)


# --- IPv6 replies ----------------------------------------------------------------------------


def parse_reply6(data: bytes, sender: str, proto: int, hlim: int = 0) -> Parsed:
    """Parse what an ``AF_INET6`` raw socket of protocol ``proto`` (TCP, UDP or ICMPv6) read:
    the transport header or ICMPv6 message (no IPv6 header), from ``sender`` (``recvmsg``'s
    address, canonical text), received with hop limit ``hlim``. ``MalformedReply`` otherwise."""
    try:
        return _parse6(data, sender, proto, hlim)
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, MalformedReply):
            raise
        raise MalformedReply(str(exc)) from None


def _parse6(data: bytes, sender: str, proto: int, hlim: int) -> Parsed:
    if proto == IPPROTO_TCP:
        if len(data) < TCP_LEN:
            raise MalformedReply("truncated TCP header")
        sp, dp, seq, ack, _off, flags, window, _sum, _urp = _unpack_tcp(data, 0)
        return Parsed(sender, sp, dp, IPPROTO_TCP, TcpReply(flags, window), seq, ack, hlim, sender)
    if proto == IPPROTO_UDP:
        if len(data) < UDP_LEN:
            raise MalformedReply("truncated UDP header")
        sp, dp = _unpack_ports(data, 0)
        return Parsed(sender, sp, dp, IPPROTO_UDP, UdpReply(), 0, 0, hlim, sender)
    if proto != wire.IPPROTO_ICMPV6:
        raise MalformedReply(f"IP protocol {proto}")
    if len(data) < wire.ICMP6_LEN + IPV6_LEN + _QUOTED_L4:
        raise MalformedReply("ICMPv6 message too short to quote a probe")
    icmp_type, code = data[0], data[1]
    if icmp_type not in wire.ICMP6_ERRORS:
        raise MalformedReply(f"ICMPv6 type {icmp_type} is not an error about a probe")
    q = wire.ICMP6_LEN
    if data[q] >> 4 != 6:
        raise MalformedReply("quoted packet is not IPv6")
    (vtf,) = _unpack_vtf(data, q)
    qproto = data[q + wire.IP6_NH]
    probed = ntoa6(data[q + wire.IP6_DST : q + wire.IP6_DST + 16])
    l4 = q + IPV6_LEN
    sp, dp = _unpack_ports(data, l4)
    if qproto == IPPROTO_TCP:
        (qseq,) = _unpack_tcp_seq(data, l4 + TCP.offset("seq"))
    elif qproto == IPPROTO_UDP:
        qseq = vtf & 0xFFFF
    else:
        raise MalformedReply(f"quoted next header {qproto}")  # extension headers: not ours
    reply = IcmpReply(icmp_type, code, from_target=sender == probed, v6=True)
    return Parsed(probed, dp, sp, qproto, reply, qseq, 0, hlim, sender)


_unpack_vtf = IPV6.struct_of("vtf").unpack_from
