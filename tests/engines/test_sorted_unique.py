"""``checkpoint.sorted_unique`` (a streamed block's batches merged) against its rule, row by
row: sorted by (host address, port), the first verdict of each (host, port) kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twinscan.core.schema import ResultColumns, host_sort_key
from twinscan.core.vocab import Engine, Technique
from twinscan.engines.checkpoint import sorted_unique

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.10", "::1"]


@st.composite
def batch(draw: st.DrawFn) -> ResultColumns:
    n = draw(st.integers(0, 30))
    rows = draw(
        st.lists(st.tuples(st.sampled_from(HOSTS), st.integers(0, 40)), min_size=n, max_size=n)
    )
    if draw(st.booleans()):  # as an engine emits a batch: in order
        rows.sort(key=lambda r: (host_sort_key(r[0]), r[1]))
    ttl = draw(st.none() | st.just([draw(st.integers(1, 255)) for _ in rows]))
    return ResultColumns(
        Engine.NATIVE,
        Technique.SYN,
        Technique.SYN.proto,
        host=[h for h, _ in rows],
        port=[p for _, p in rows],
        state=[draw(st.integers(0, 5)) for _ in rows],
        reason=[draw(st.integers(0, 9)) for _ in rows],
        reason_ttl=ttl,
        rtt_ms=[draw(st.none() | st.floats(0, 10)) for _ in rows],
    )


def _rows(cols: ResultColumns) -> list[tuple[object, ...]]:
    n = len(cols)
    ttl = cols.reason_ttl if cols.reason_ttl is not None else [None] * n
    rtt = cols.rtt_ms if cols.rtt_ms is not None else [None] * n
    return list(zip(cols.host, cols.port, cols.state, cols.reason, ttl, rtt, strict=True))


@given(st.lists(batch(), max_size=4))
def test_merged_batches_follow_the_rule(parts: list[ResultColumns]) -> None:
    rows = [row for p in parts for row in _rows(p)]
    expected: dict[tuple[object, object], tuple[object, ...]] = {}
    for row in rows:
        expected.setdefault((row[0], row[1]), row)
    want = sorted(expected.values(), key=lambda r: (host_sort_key(str(r[0])), r[1]))
    got = sorted_unique(parts)
    if not want:
        assert got is None
        return
    assert got is not None and _rows(got) == want
    assert (got.reason_ttl is None) == all(p.reason_ttl is None for p in parts if len(p))
