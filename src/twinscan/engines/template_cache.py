"""Scapy-built probe templates, cached on disk so a common scan does not import scapy.

``build_template`` is where scapy builds a technique's probe (``twinscan.protocol`` imports no
scapy; its ``ProbeBuilder`` takes the template function as a parameter). Importing scapy costs about a third of a second, more than a whole loopback scan of one port.
Scapy still builds every template: once per (scapy version, technique, payload), with source
address 0.0.0.0 and source port 0, stored under ``$XDG_CACHE_HOME/twinscan/templates``
(``~/.cache`` by default). A scan reads those bytes and patches its own source address and
port in, recomputing both checksums -- the result is byte for byte what
``build_template`` gives for that source (``tests/engines/test_template_cache.py``).

IPv6 probes (a source address with a colon) are the same transport bytes behind an IPv6
header: ``with_source6`` takes the cached IPv4 template's TCP or UDP part and puts a 40-byte
IPv6 header (hop limit 64, flow label 0, destination ::) in front, with the IPv6 pseudo-header
checksum -- byte for byte what scapy's ``IPv6()/TCP()`` gives (``build_template(..., "::1")``).

A missing, unreadable or malformed cache entry is rebuilt by scapy; a cache directory that
cannot be written is simply not used.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

try:  # the built-in BLAKE2 hashlib wraps: hashlib itself loads OpenSSL (~3.4 MiB resident)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2b

from twinscan.core.vocab import Technique
from twinscan.protocol.packets import DEFAULT_TTL, PROBE_FLAGS, WINDOW, fold, ones_sum
from twinscan.protocol.wire import (
    IP_LEN,
    IP_PROTO,
    IP_SRC,
    IP_SUM,
    IP_VER_IHL,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4,
    IPV4_LEN,
    IPV4_PLAIN,
    IPV6,
    L4_SPORT,
    PSEUDO6_TAIL,
    PSEUDO_TAIL,
    TCP,
    TCP_SUM,
    UDP,
    UDP_LEN,
    UDP_SUM,
    aton,
    aton6,
)


def build_template(technique: Technique, src: str, sport: int, payload: bytes = b"") -> bytes:
    """The technique's probe built by scapy once, with dst 0.0.0.0, dport 0, seq/ack/id 0.

    SYN probes carry an MSS option of 1460, as nmap's do; the others carry no options.
    """
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    ip: object
    if ":" in src:
        ip = IPv6(src=src, dst="::", hlim=DEFAULT_TTL, fl=0, tc=0)
    else:
        ip = IP(src=src, dst="0.0.0.0", id=0, ttl=DEFAULT_TTL, flags=0)
    if technique is Technique.UDP:
        pkt = ip / UDP(sport=sport, dport=0) / payload
    else:
        options = [("MSS", 1460)] if technique is Technique.SYN else []
        pkt = ip / TCP(
            sport=sport,
            dport=0,
            seq=0,
            ack=0,
            flags=PROBE_FLAGS[technique],
            window=WINDOW,
            options=options,
        )
    return bytes(pkt)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "twinscan" / "templates"


def scapy_version() -> str:
    """Scapy's version without importing it (its ``VERSION`` file, else the layer file's stat)."""
    spec = importlib.util.find_spec("scapy")
    if spec is None or spec.origin is None:
        return "none"
    pkg = Path(spec.origin).parent
    try:
        return (pkg / "VERSION").read_text().strip()
    except OSError:
        st = (pkg / "layers" / "inet.py").stat()
        return f"stat-{st.st_mtime_ns}-{st.st_size}"


def _entry(directory: Path, technique: Technique, payload: bytes) -> Path:
    digest = blake2b(payload, digest_size=10).hexdigest()
    return directory / f"scapy-{scapy_version()}" / f"{technique.value}-{digest}.bin"


def generic_template(
    technique: Technique, payload: bytes = b"", *, directory: Path | None = None
) -> bytes:
    """The technique's template with source 0.0.0.0:0, from the cache or built by scapy."""
    path = _entry(directory or cache_dir(), technique, payload)
    try:
        data = path.read_bytes()
        if _plausible(data, technique, payload):
            return data
    except OSError:
        pass
    data = build_template(technique, "0.0.0.0", 0, payload)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: build with scapy every time
    return data


def _plausible(data: bytes, technique: Technique, payload: bytes) -> bool:
    """A cache entry that is a whole IPv4 datagram of the right protocol ending in ``payload``."""
    if len(data) < IPV4_LEN + UDP_LEN or data[IP_VER_IHL] != IPV4_PLAIN:
        return False
    (total,) = IPV4.struct_of("len").unpack_from(data, IP_LEN)
    proto = IPPROTO_UDP if technique is Technique.UDP else IPPROTO_TCP
    return total == len(data) and data[IP_PROTO] == proto and data.endswith(payload)


def with_source(generic: bytes, src: str, sport: int) -> bytes:
    """``generic`` with source address and port patched in and both checksums recomputed."""
    buf = bytearray(generic)
    buf[IP_SRC : IPV4["src"].end] = aton(src)
    TCP.struct_of("sport").pack_into(buf, L4_SPORT, sport)
    ip_sum = IPV4.struct_of("sum")
    ip_sum.pack_into(buf, IP_SUM, 0)
    ip_sum.pack_into(buf, IP_SUM, fold(ones_sum(bytes(buf[:IPV4_LEN]))))
    proto = buf[IP_PROTO]
    l4_sum, at = (TCP, TCP_SUM) if proto == IPPROTO_TCP else (UDP, UDP_SUM)
    pack_l4_sum = l4_sum.struct_of("sum").pack_into
    pack_l4_sum(buf, at, 0)
    l4 = bytes(buf[IPV4_LEN:])
    pseudo = bytes(buf[IP_SRC : IPV4["dst"].end]) + PSEUDO_TAIL.struct.pack(0, proto, len(l4))
    csum = fold(ones_sum(pseudo) + ones_sum(l4))
    if proto != IPPROTO_TCP and csum == 0:
        csum = 0xFFFF  # UDP: a computed 0 is sent as all ones (RFC 768)
    pack_l4_sum(buf, at, csum)
    return bytes(buf)


def with_source6(generic: bytes, src: str, sport: int) -> bytes:
    """The IPv6 probe from ``src``:``sport`` with ``generic``'s (IPv4) transport bytes."""
    proto = generic[IP_PROTO]
    l4 = bytearray(generic[IPV4_LEN:])
    TCP.struct_of("sport").pack_into(l4, TCP.offset("sport"), sport)
    l4_sum, at = (TCP, TCP.offset("sum")) if proto == IPPROTO_TCP else (UDP, UDP.offset("sum"))
    pack_l4_sum = l4_sum.struct_of("sum").pack_into
    pack_l4_sum(l4, at, 0)
    src_b, dst_b = aton6(src), bytes(16)
    pseudo = src_b + dst_b + PSEUDO6_TAIL.struct.pack(len(l4), b"", proto)
    csum = fold(ones_sum(pseudo) + ones_sum(bytes(l4)))
    if proto != IPPROTO_TCP and csum == 0:
        csum = 0xFFFF
    pack_l4_sum(l4, at, csum)
    header = IPV6.struct.pack(6 << 28, len(l4), proto, DEFAULT_TTL, src_b, dst_b)
    return header + bytes(l4)


def cached_template(technique: Technique, src: str, sport: int, payload: bytes = b"") -> bytes:
    """Drop-in for ``packets.build_template`` that reads scapy's output from the cache."""
    if ":" in src:
        return with_source6(generic_template(technique, payload), src, sport)
    return with_source(generic_template(technique, payload), src, sport)
