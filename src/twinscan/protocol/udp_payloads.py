"""UDP probe payloads per destination port, as nmap 7.93 sends them (pure apart from the file read).

nmap <= 7.93 reads them from its ``nmap-payloads`` file: ``udp PORTS "string" ["string"...]
[source N]`` entries, C-style escapes, ``#`` comments; a port may have several payloads and
nmap sends one datagram per payload on every try. twinscan reads the installed file at run
time (it is not vendored: nmap's data files are under the NPSL) and falls back to a small
hand-written set for the services the lab runs when nmap is not installed.
``$TWINSCAN_NMAP_PAYLOADS`` names another file to read instead. A file that does not parse is
one ``PayloadFileError`` (an ``InputFileError``: one line, exit 2) naming the file and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Final

from twinscan.core.errors import MalformedData, PayloadFileError

NMAP_PAYLOADS_PATHS: Final = (
    "/usr/share/nmap/nmap-payloads",
    "/usr/local/share/nmap/nmap-payloads",
)
#: Environment variable naming the nmap-payloads file to read instead of the installed one.
PAYLOADS_ENV: Final = "TWINSCAN_NMAP_PAYLOADS"

#: Hand-written probes (written from the protocol RFCs, not copied from nmap).
FALLBACK: Final[Mapping[int, tuple[bytes, ...]]] = {
    # DNS (RFC 1035): id 0, standard query, no questions -- any DNS server answers it.
    53: (b"\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00",),
    # NTP (RFC 5905): version 4 client request (mode 3), otherwise zero.
    123: (b"\x23" + b"\x00" * 47,),
    # NetBIOS-NS (RFC 1002): NBSTAT query for the wildcard name "*".
    137: (
        b"\x80\xf0\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x20CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00\x00\x21\x00\x01",
    ),
    # SNMP (RFC 1157): v1 GetRequest, community "public", for sysDescr.0.
    161: (
        b"\x30\x26\x02\x01\x00\x04\x06public\xa0\x19\x02\x01\x01\x02\x01\x00\x02\x01\x00"
        b"\x30\x0e\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x01\x00\x05\x00",
    ),
}


class PayloadSyntaxError(MalformedData):
    """An nmap-payloads file twinscan cannot read (reported with its line number)."""


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\\n]|\\.)*")|([^\s"#]+))', re.S)
_SIMPLE_ESCAPES: Final = {
    "n": 10, "r": 13, "t": 9, "0": 0, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, '"': 34, "'": 39,
}  # fmt: skip


def unescape(text: str) -> bytes:
    """Decode nmap's C-style string body (``\\xHH``, ``\\0``, ``\\r`` ...) to bytes."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.extend(ch.encode("latin-1"))
            i += 1
            continue
        if i + 1 >= len(text):
            raise PayloadSyntaxError("dangling backslash")
        nxt = text[i + 1]
        if nxt == "x":
            digits = text[i + 2 : i + 4]
            if len(digits) != 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise PayloadSyntaxError(f"bad \\x escape {text[i : i + 4]!r}")
            out.append(int(digits, 16))
            i += 4
        elif nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
        else:
            raise PayloadSyntaxError(f"unknown escape \\{nxt}")
    return bytes(out)


def _ports(spec: str, line: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for part in spec.split(","):
        lo_s, dash, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if dash else lo
        except ValueError:
            raise PayloadSyntaxError(f"line {line}: bad port list {spec!r}") from None
        if not 0 <= lo <= hi <= 65535:
            raise PayloadSyntaxError(f"line {line}: port out of range in {spec!r}")
        out.append((lo, hi))
    return out


class PayloadTable:
    """Payloads per UDP port: exact ports in a dict, ranges (``32768-65535``) in a list."""

    def __init__(self) -> None:
        self.exact: dict[int, list[bytes]] = {}
        self.ranges: list[tuple[int, int, bytes]] = []

    def add(self, ranges: list[tuple[int, int]], payload: bytes) -> None:
        for lo, hi in ranges:
            if hi - lo < 64:
                for port in range(lo, hi + 1):
                    self.exact.setdefault(port, []).append(payload)
            else:
                self.ranges.append((lo, hi, payload))

    def __call__(self, port: int) -> tuple[bytes, ...]:
        """Payloads for ``port`` in file order; ``(b"",)`` (an empty datagram) when none."""
        found = list(self.exact.get(port, ()))
        found.extend(p for lo, hi, p in self.ranges if lo <= port <= hi)
        return tuple(found) if found else (b"",)

    def __len__(self) -> int:
        return len(self.exact) + len(self.ranges)


def parse_payloads(text: str) -> PayloadTable:
    """Parse nmap-payloads text. Raises ``PayloadSyntaxError`` naming the line."""
    table = PayloadTable()
    tokens: list[tuple[str, int, bool]] = []  # (token, line, is_string)
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                line = text.count("\n", 0, pos) + 1
                raise PayloadSyntaxError(f"line {line}: cannot read {text[pos : pos + 20]!r}")
            break
        line = text.count("\n", 0, m.start(m.lastindex or 0)) + 1
        pos = m.end()
        if m.group(2) is not None:
            tokens.append((m.group(2)[1:-1], line, True))
        elif m.group(3) is not None:
            tokens.append((m.group(3), line, False))
    i = 0
    while i < len(tokens):
        word, line, is_str = tokens[i]
        if is_str or word != "udp":
            raise PayloadSyntaxError(f"line {line}: expected 'udp', found {word!r}")
        if i + 1 >= len(tokens) or tokens[i + 1][2]:
            raise PayloadSyntaxError(f"line {line}: 'udp' needs a port list")
        ranges = _ports(tokens[i + 1][0], line)
        i += 2
        payload = bytearray()
        strings = 0
        while i < len(tokens) and tokens[i][2]:
            try:
                payload.extend(unescape(tokens[i][0]))
            except PayloadSyntaxError as exc:
                raise PayloadSyntaxError(f"line {tokens[i][1]}: {exc}") from None
            strings += 1
            i += 1
        if strings == 0:
            raise PayloadSyntaxError(f"line {line}: 'udp {tokens[i - 1][0]}' has no payload")
        if i < len(tokens) and not tokens[i][2] and tokens[i][0] == "source":
            i += 2  # "source PORT": nmap binds that source port; twinscan keeps its own
        table.add(ranges, bytes(payload))
    return table


def load_payloads(path: str | None = None) -> PayloadTable:
    """The nmap-payloads table: ``path``, else ``$TWINSCAN_NMAP_PAYLOADS``, else the installed
    file, else the hand-written fallback when nmap is absent.

    ``PayloadFileError`` (one line, exit 2) for a file that does not parse, or a ``path`` or
    ``$TWINSCAN_NMAP_PAYLOADS`` that names no readable file."""
    if path is None and (env := os.environ.get(PAYLOADS_ENV)):
        if not Path(env).is_file():
            raise PayloadFileError(env, f"no such file (named by ${PAYLOADS_ENV})")
        path = env
    return _load(path)


@lru_cache(maxsize=4)
def _load(path: str | None) -> PayloadTable:
    candidates = [path] if path else list(NMAP_PAYLOADS_PATHS)
    for candidate in candidates:
        p = Path(candidate)
        if p.is_file():
            try:
                return parse_payloads(p.read_text(encoding="latin-1"))
            except PayloadSyntaxError as exc:
                raise PayloadFileError(candidate, f"nmap-payloads file: {exc}") from None
            except OSError as exc:
                raise PayloadFileError(candidate, f"cannot read: {exc.strerror}") from None
    table = PayloadTable()
    for port, payloads in FALLBACK.items():
        for payload in payloads:
            table.add([(port, port)], payload)
    return table
