"""Parsing and formatting port lists such as ``1-21,23,80-90`` (nmap's range syntax)."""

from __future__ import annotations

from collections.abc import Iterable


def parse_port_list(text: str) -> list[int]:
    """Parse a plain comma-separated list of ports and ranges into sorted unique ports.

    ``ValueError`` on anything else (names, protocol prefixes and open ranges are handled by the
    richer CLI parser, not here).
    """
    ports: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo_s, sep, hi_s = part.partition("-")
        lo = _port(lo_s)
        hi = _port(hi_s) if sep else lo
        if hi < lo:
            raise ValueError(f"port range {part!r} is backwards")
        ports.update(range(lo, hi + 1))
    return sorted(ports)


def _port(text: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"not a port number: {text!r}")
    value = int(text)
    if value > 65535:
        raise ValueError(f"port {value} out of range 0-65535")
    return value


def format_port_list(ports: Iterable[int]) -> str:
    """The shortest range list for ``ports`` (inverse of ``parse_port_list``)."""
    out: list[str] = []
    run_start: int | None = None
    prev = -2
    for port in sorted(set(ports)):
        if port != prev + 1:
            if run_start is not None:
                out.append(_run(run_start, prev))
            run_start = port
        prev = port
    if run_start is not None:
        out.append(_run(run_start, prev))
    return ",".join(out)


def _run(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"
