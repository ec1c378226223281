"""Counting a run's state and reason codes at C speed, for the writers and the report.

A ``-p-`` host is 65535 rows of which all but a few share one state and one reason. Counting
them as ``Counter(zip(states, reasons))`` makes a tuple per row (~8 ms); here the codes become
``bytes`` (one C pass each), the rows of the common state are found by what they are not (the
few others, by ``bytes.find`` on a translated copy), and the common state's reasons are
counted with ``bytes.count``. Codes that do not fit in a byte, or runs without one common
state, take the plain ``Counter`` (``tests/formats/test_code_counts.py`` holds the two equal,
order included).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["as_bytes", "count_pairs", "others"]

#: at most this many rows outside the common state take the fast path
FEW = 64


def as_bytes(codes: Sequence[int], lo: int = 0, hi: int | None = None) -> bytes | None:
    """``codes[lo:hi]`` as bytes, or None when a code does not fit in one."""
    hi = len(codes) if hi is None else hi
    part = codes if lo == 0 and hi == len(codes) else codes[lo:hi]
    try:
        return bytes(part)
    except (TypeError, ValueError):
        return None


def others(codes: bytes, common: int, limit: int = FEW) -> list[int] | None:
    """The positions in ``codes`` whose code is not ``common``, in order; None when there are
    more than ``limit``."""
    if len(codes) - codes.count(common) > limit:
        return None
    marked = codes.translate(bytes(0 if b == common else 1 for b in range(256)))
    out: list[int] = []
    at = marked.find(1)
    while at >= 0:
        out.append(at)
        at = marked.find(1, at + 1)
    return out


def count_pairs(
    states: Sequence[int], reasons: Sequence[int], lo: int = 0, hi: int | None = None
) -> Counter[tuple[int, int]]:
    """``Counter(zip(states[lo:hi], reasons[lo:hi]))``: the same counts, in the order of each
    pair's first row."""
    hi = len(states) if hi is None else hi
    sb, rb = as_bytes(states, lo, hi), as_bytes(reasons, lo, hi)
    common = max(set(sb), key=sb.count) if sb and rb is not None else -1
    rest = others(sb, common) if sb and common >= 0 else None
    if rest is None or rb is None:  # (codes beyond a byte, no rows, or no common state)
        return Counter(zip(states[lo:hi], reasons[lo:hi], strict=True))
    assert sb is not None
    counts: dict[tuple[int, int], int] = {}
    first: dict[tuple[int, int], int] = {}
    if rest:  # the common state's reasons: every reason but the other rows'
        kept = bytearray(rb)
        for i in reversed(rest):
            del kept[i]
        common_reasons = bytes(kept)
    else:
        common_reasons = rb
    for reason in set(common_reasons):
        pair = (common, reason)
        counts[pair] = common_reasons.count(reason)
        at = common_reasons.index(reason)
        for i in rest:  # back to a row number: past each other row before it
            if i > at:
                break
            at += 1
        first[pair] = at
    for i in rest:
        pair = (sb[i], rb[i])
        counts[pair] = counts.get(pair, 0) + 1
        first.setdefault(pair, i)
    return Counter({pair: counts[pair] for pair in sorted(counts, key=first.__getitem__)})
