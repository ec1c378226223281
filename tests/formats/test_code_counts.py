"""``formats.code_counts`` against the plain Counter it replaces: same counts, same order."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from twinscan.formats.code_counts import FEW, as_bytes, count_pairs, others

codes = st.integers(0, 5)


@st.composite
def columns(draw: st.DrawFn) -> tuple[list[int], list[int], int, int]:
    """State and reason columns, mostly one common state as a -p- host's (or not at all), and
    a slice of them."""
    n = draw(st.integers(0, 300))
    common = draw(codes)
    spread = draw(st.sampled_from([0, 2, FEW - 1, FEW + 1, n]))
    states = [common] * n
    for i in draw(st.lists(st.integers(0, max(0, n - 1)), max_size=spread)) if n else []:
        states[i] = draw(codes)
    reasons = [draw(st.sampled_from([7, 7, 7, 3, 200])) for _ in range(n)]
    lo = draw(st.integers(0, n))
    hi = draw(st.integers(lo, n))
    return states, reasons, lo, hi


@given(columns())
def test_count_pairs_is_the_counter(cols: tuple[list[int], list[int], int, int]) -> None:
    states, reasons, lo, hi = cols
    expected = Counter(zip(states[lo:hi], reasons[lo:hi], strict=True))
    got = count_pairs(states, reasons, lo, hi)
    assert list(got.items()) == list(expected.items())


@given(st.lists(st.integers(-3, 300), max_size=50))
def test_codes_outside_a_byte_take_the_counter(values: list[int]) -> None:
    reasons = [1] * len(values)
    expected = Counter(zip(values, reasons, strict=True))
    assert list(count_pairs(values, reasons).items()) == list(expected.items())
    fits = all(0 <= v < 256 for v in values)
    assert (as_bytes(values) is not None) == fits


@given(st.lists(codes, max_size=200), codes, st.integers(0, 80))
def test_others_are_the_positions_not_common(values: list[int], common: int, limit: int) -> None:
    expected = [i for i, v in enumerate(values) if v != common]
    got = others(bytes(values), common, limit)
    assert got == (expected if len(expected) <= limit else None)
