"""Scapy-built probe templates, cached on disk so a common scan does not import scapy.

Importing scapy costs about a third of a second, more than a whole loopback scan of one port.
Scapy still builds every template: once per (scapy version, technique, payload), with source
address 0.0.0.0 and source port 0, stored under ``$XDG_CACHE_HOME/twinscan/templates``
(``~/.cache`` by default). A scan reads those bytes and patches its own source address and
port in, recomputing both checksums -- the result is byte for byte what
``packets.build_template`` gives for that source (``tests/test_template_cache.py``).

A missing, unreadable or malformed cache entry is rebuilt by scapy; a cache directory that
cannot be written is simply not used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import struct
from pathlib import Path

from twinscan.core.vocab import Technique
from twinscan.protocol.packets import IPPROTO_TCP, build_template, fold, ones_sum

_IP_HEADER = 20


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
    digest = hashlib.sha256(payload).hexdigest()[:20]
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
    if len(data) < _IP_HEADER + 8 or data[0] != 0x45:
        return False
    (total,) = struct.unpack_from("!H", data, 2)
    proto = 17 if technique is Technique.UDP else IPPROTO_TCP
    return total == len(data) and data[9] == proto and data.endswith(payload)


def with_source(generic: bytes, src: str, sport: int) -> bytes:
    """``generic`` with source address and port patched in and both checksums recomputed."""
    buf = bytearray(generic)
    buf[12:16] = socket.inet_aton(src)
    struct.pack_into("!H", buf, 20, sport)
    buf[10:12] = b"\0\0"
    struct.pack_into("!H", buf, 10, fold(ones_sum(bytes(buf[:_IP_HEADER]))))
    proto = buf[9]
    at = 36 if proto == IPPROTO_TCP else 26
    buf[at : at + 2] = b"\0\0"
    l4 = bytes(buf[_IP_HEADER:])
    pseudo = bytes(buf[12:20]) + struct.pack("!BBH", 0, proto, len(l4))
    csum = fold(ones_sum(pseudo) + ones_sum(l4))
    if proto != IPPROTO_TCP and csum == 0:
        csum = 0xFFFF  # UDP: a computed 0 is sent as all ones (RFC 768)
    struct.pack_into("!H", buf, at, csum)
    return bytes(buf)


def cached_template(technique: Technique, src: str, sport: int, payload: bytes = b"") -> bytes:
    """Drop-in for ``packets.build_template`` that reads scapy's output from the cache."""
    return with_source(generic_template(technique, payload), src, sport)
