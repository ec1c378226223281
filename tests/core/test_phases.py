"""``core.phases``: marks rendered for ``--debug-timing`` and read back by the benchmark."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinscan.core import phases


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    saved = phases.marks()
    phases.reset()
    yield
    phases.reset()
    for name, at in saved:
        phases.mark(name, clock=lambda at=at: at)


def test_marks_keep_their_order_and_clock() -> None:
    ticks = iter([1.0, 1.25, 1.5])
    for name in ("a", "b", "c"):
        phases.mark(name, clock=lambda: next(ticks))
    assert phases.marks() == [("a", 1.0), ("b", 1.25), ("c", 1.5)]
    assert not phases.shown()
    phases.show()
    assert phases.shown()
    phases.reset()
    assert phases.marks() == [] and not phases.shown()


def test_render_gives_time_since_origin_and_since_the_mark_before() -> None:
    lines = phases.render([("imported", 10.05), ("probing done", 10.2)], 10.0, "process start")
    assert lines[0] == "debug timing: 0 ms = process start (CLOCK_MONOTONIC 10.000000 s)"
    assert lines[1] == "     50.0 ms     +50.0 ms  imported"
    assert lines[2] == "    200.0 ms    +150.0 ms  probing done"


names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=30
).filter(lambda s: s.strip() == s)


@given(
    origin=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    steps=st.lists(
        st.tuples(names, st.floats(min_value=0, max_value=100, allow_nan=False)), max_size=12
    ),
    before=st.lists(st.text(max_size=40), max_size=3),
    after=st.lists(st.text(max_size=40), max_size=3),
)
def test_parse_reads_render_back_among_other_lines(
    origin: float, steps: list[tuple[str, float]], before: list[str], after: list[str]
) -> None:
    taken, at = [], origin
    for name, step in steps:
        at += step
        taken.append((name, at))
    lines = phases.render(taken, origin, "start")
    before, after = (
        [x for x in part if not x.startswith("debug timing: ")] for part in (before, after)
    )
    parsed = phases.parse([*before, *lines, *after])  # a report before, anything after
    assert parsed is not None
    got_origin, got = parsed
    assert got_origin == pytest.approx(origin, abs=1e-6)
    assert [n for n, _ in got[: len(taken)]] == [n for n, _ in taken]
    for (_, want), (_, have) in zip(taken, got, strict=False):
        assert have == pytest.approx(want, abs=1e-4)  # rendered to 0.1 ms


def test_parse_without_a_header_is_none() -> None:
    assert phases.parse(["     50.0 ms     +50.0 ms  imported"]) is None
    assert phases.parse([]) is None
