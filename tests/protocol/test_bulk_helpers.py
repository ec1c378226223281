"""The bulk session's helpers: its replacements for ``np.unique`` (which imports numpy.ma
when first called) give what ``np.unique`` gives; its result lists share their float objects;
its last ``columns`` call equals the others and lets the per-probe arrays go; its closed-form
RTT averages are nmap's per-reply loop."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from twinscan.core.timing import resolve
from twinscan.core.vocab import Technique
from twinscan.protocol.bulk_session import (
    BulkTcpSession,
    _distinct,
    _first_of_each,
    _shared_floats,
    sample_many,
)
from twinscan.protocol.pacing import RttEstimator, sample_all

_values = st.lists(st.integers(-5, 40), max_size=60).map(lambda v: np.array(v, dtype=np.int64))


@given(_values)
def test_distinct_is_np_unique(values: np.ndarray) -> None:
    assert _distinct(values).tolist() == np.unique(values).tolist()


@given(_values)
def test_first_of_each_is_np_unique_return_index(values: np.ndarray) -> None:
    assert _first_of_each(values).tolist() == np.unique(values, return_index=True)[1].tolist()


def test_a_batch_of_replies_does_not_import_numpy_ma() -> None:
    """Every reply batch went through np.unique, and a -p- scan paid numpy.ma's import."""
    code = """
import sys
from twinscan.core.timing import resolve
from twinscan.core.vocab import Technique
from twinscan.protocol.bulk_session import BulkTcpSession
s = BulkTcpSession(Technique.SYN, ["h"], range(1, 5000), resolve(4), randomize=False)
host, port, tryno = s.due_arrays(0.0)
n = len(port)
s.receive_arrays(host, port, [-1] * n, [0x14] * n, [0] * n, [64] * n, now=0.001)
assert s.finished == n > 0, (s.finished, n)
print("numpy.ma" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


_rtts = st.lists(
    st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 0.125, 0.5]),
    max_size=60,
)


@given(_rtts)
def test_shared_floats_is_tolist_with_none_for_nan(values: list[float]) -> None:
    array = np.array(values, dtype=np.float64)
    out = _shared_floats(array)
    expected = [None if v != v else v for v in array.tolist()]
    assert len(out) == len(expected)
    for got, want in zip(out, expected, strict=True):
        if want is None:
            assert got is None
        else:  # the same value and the same bits (0.0 and -0.0 apart)
            assert got is not None and np.float64(got).tobytes() == np.float64(want).tobytes()
    shared: dict[bytes, float] = {}  # one object per distinct value (bit pattern)
    for v in out:
        if v is not None:
            assert shared.setdefault(np.float64(v).tobytes(), v) is v


def _answered_session() -> BulkTcpSession:
    session = BulkTcpSession(Technique.SYN, ["h2", "h1"], range(1, 3000), resolve(4), rng=None)
    for now in (0.0, 0.001, 0.002, 0.003):
        host, port, _ = session.due_arrays(now)
        n = len(port)
        rst = np.full(n, 0x14)
        rst[port % 7 == 0] = 0x12  # some open
        session.receive_arrays(
            host, port, np.full(n, -1), rst, np.zeros(n), np.full(n, 64), now=now + 0.0005
        )
    return session


def test_last_columns_equal_the_others_and_drop_the_probe_arrays() -> None:
    session = _answered_session()
    before = session.columns()
    assert len(before) > 0
    last = session.columns(last=True)
    assert last == before
    assert session._tries is None and session._verdict is None


def test_one_hosts_columns_are_in_port_order_with_their_own_verdicts() -> None:
    """A one-host scan of more ports than a chunk puts its rows in order with a table by port
    instead of an argsort: every row still carries its own port's verdict."""
    session = BulkTcpSession(Technique.SYN, ["h1"], range(1, 9001), resolve(4))
    for step in range(400):  # bounded: the window lets the whole plan out well before
        host, port, _ = session.due_arrays(step * 0.001)
        if not len(port):
            break
        n = len(port)
        flags = np.where(port % 7 == 0, 0x12, 0x14)  # some open, the rest closed
        session.receive_arrays(
            host, port, np.full(n, -1), flags, np.zeros(n), np.full(n, 64), now=step * 0.001
        )
    cols = session.columns()
    assert cols.port == list(range(1, 9001))
    open_code = cols.state[6]  # port 7
    assert [st == open_code for st in cols.state] == [p % 7 == 0 for p in cols.port]


def _estimator(srtt: float | None, rttvar: float) -> RttEstimator:
    est = RttEstimator(1.0, 0.1, 1.25, scan_delay_s=0.0)
    est.srtt, est.rttvar = srtt, rttvar
    return est


_deltas = st.lists(
    st.one_of(
        st.floats(0.0, 0.05),  # loopback and LAN
        st.floats(0.0, 3.0),  # a slow path, with jumps past 1.5 s (outliers)
        st.floats(-0.1, 9.0),  # negative and ignored samples
    ),
    max_size=2500,
)


@given(st.one_of(st.none(), st.floats(0.0, 3.0)), st.floats(0.0, 3.0), _deltas, st.integers(0, 2))
@example(0.0001, 0.005, [0.0001] * 300, 0)  # loopback: the closed form's usual case
@example(0.01, 0.0, [0.01 + i * 1e-6 for i in range(2100)], 0)  # more than one chunk
@example(0.5, 2.3, [2.0] * 40, 0)  # rttvar at the reset bound
@example(1.0, 0.2, [2.4] * 40, 0)  # jumps of 1.4 s: no outliers, rttvar grows
def test_sample_many_is_the_per_reply_loop(
    srtt: float | None, rttvar: float, deltas: list[float], timing: int
) -> None:
    loop, many = _estimator(srtt, rttvar), _estimator(srtt, rttvar)
    loop.floor = many.floor = (0.0, 0.2, 2.0)[timing]
    sample_all(loop, deltas)
    sample_many(many, np.array(deltas, dtype=np.float64))
    if loop.srtt is None:
        assert many.srtt is None
        return
    assert many.srtt == pytest.approx(loop.srtt, rel=1e-9, abs=1e-12)
    assert many.rttvar == pytest.approx(loop.rttvar, rel=1e-9, abs=1e-12)
    assert many.timeout == pytest.approx(loop.timeout, rel=1e-9, abs=1e-12)


@given(st.lists(st.booleans(), max_size=80), st.integers(0, 300))
def test_answered_first_is_answered_with_zero_tries(before: list[bool], n: int) -> None:
    from twinscan.core.timing import resolve
    from twinscan.protocol.raw_session import LossSignal

    one, many = LossSignal(resolve(4)), LossSignal(resolve(4))
    for signal in (one, many):
        signal.answered([int(b) for b in before])
    one.answered([0] * n)
    many.answered_first(n)
    assert (list(one.tries), list(one.retry_ok)) == (list(many.tries), list(many.retry_ok))
