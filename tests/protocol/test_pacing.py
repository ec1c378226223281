"""The shared pacing units against nmap's timing.cc semantics, by example and by property."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from twinscan.core.timing import CC_SCALE_MAX, INITIAL_CWND, INITIAL_SSTHRESH, MAX_CWND, resolve
from twinscan.protocol.pacing import (
    CongestionWindow,
    RateLimiter,
    RttEstimator,
    loss_estimate,
    retry_budget,
    sample_all,
)

T3 = resolve(3)
T4 = resolve(4)

rtts = st.floats(min_value=-0.04, max_value=20.0, allow_nan=False)


# -- RttEstimator (adjust_timeouts2)


def test_rtt_first_sample_then_jacobson() -> None:
    est = RttEstimator.for_timing(T4)
    assert est.timeout == 0.5 and est.srtt is None  # the initial RTT timeout
    assert est.sample(0.010)
    assert est.srtt == 0.010 and est.rttvar == 0.010
    assert est.timeout == 0.1  # 10 ms + 4 * 10 ms, boxed up to min_rtt_timeout
    assert est.sample(0.050)
    assert est.srtt == pytest.approx(0.010 + 0.040 / 8)
    assert est.rttvar == pytest.approx(0.010 + (0.040 - 0.010) / 4)


def test_rtt_first_rttvar_is_boxed_to_5ms_2s() -> None:
    est = RttEstimator(1.0, 0.0, 100.0)
    est.sample(0.001)
    assert est.rttvar == 0.005
    est = RttEstimator(1.0, 0.0, 100.0)
    est.sample(3.0)
    assert est.rttvar == 2.0


def test_rtt_outliers_are_ignored_like_nmap() -> None:
    est = RttEstimator.for_timing(T3)
    est.sample(0.010)
    before = (est.srtt, est.rttvar, est.timeout)
    assert not est.sample(2.0)  # jump 1.99 s > 1.5 s and > 3 srtt + 2 rttvar: "bogus delta"
    assert not est.sample(8.0)  # >= 8 s
    assert not est.sample(-1.0)  # negative
    assert (est.srtt, est.rttvar, est.timeout) == before
    assert est.sample(1.4)  # a jump under 1.5 s counts
    assert est.sample(-0.01)  # a small negative delta (clock skew) counts as 10 ms


def test_rtt_scan_delay_is_a_timeout_floor() -> None:
    est = RttEstimator.for_timing(resolve(4, scan_delay_ms=400))
    est.sample(0.001)
    assert est.timeout == 0.4


@settings(max_examples=300)
@given(samples=st.lists(rtts, max_size=60), level=st.integers(0, 5))
def test_rtt_timeout_always_within_bounds(samples: list[float], level: int) -> None:
    timing = resolve(level)
    est = RttEstimator.for_timing(timing)
    lo, hi = timing.min_rtt_timeout_ms / 1000, timing.max_rtt_timeout_ms / 1000
    for delta in samples:
        est.sample(delta)
        if est.srtt is not None:
            assert lo <= est.timeout <= max(hi, est.floor)
            assert 0 <= est.rttvar <= 2.3
            assert est.srtt >= 0


@given(samples=st.lists(st.floats(0.0005, 1.0), min_size=1, max_size=40))
def test_rtt_steady_samples_converge(samples: list[float]) -> None:
    est = RttEstimator(1.0, 0.0, 100.0)
    for delta in samples:
        assert est.sample(delta)  # none of these is an outlier
    assert min(samples) <= est.srtt <= max(samples)  # type: ignore[operator]


# -- CongestionWindow (ultra_timing_vals)


def test_window_starts_like_nmap() -> None:
    w = CongestionWindow.for_timing(T3)
    assert (w.cwnd, w.ssthresh, w.ceiling) == (INITIAL_CWND, INITIAL_SSTHRESH, MAX_CWND)
    assert CongestionWindow.for_timing(resolve(2)).cwnd == 1  # max_parallelism 1
    assert CongestionWindow.for_timing(T4, ceiling=1024).ceiling == 1024  # the connect ceiling


def test_ack_slow_start_caps_at_ssthresh_then_avoidance() -> None:
    w = CongestionWindow(ca_incr=2, ssthresh=12)
    w.expect(2)
    w.ack()  # cc_scale 2/1 = 2
    assert w.cwnd == 12  # 10 + 2, capped at ssthresh
    w.expect()
    w.ack()  # cc_scale 3/2
    assert w.cwnd == pytest.approx(12 + 2 / 12 * 1.5)


def test_cc_scale_is_capped() -> None:
    w = CongestionWindow(ssthresh=1000, ceiling=1000)
    w.expect(500)
    w.ack()
    assert w.cwnd == INITIAL_CWND + CC_SCALE_MAX
    w.ack(max_cc_scale=1.0)
    assert w.cwnd == INITIAL_CWND + CC_SCALE_MAX + 1


def test_drop_and_drop_group() -> None:
    w = CongestionWindow(ssthresh_divisor=4 / 3)
    w.cwnd = 40
    assert w.drop_group(in_flight=40, sent=1.0, now=2.0)
    assert w.cwnd == 20 and w.ssthresh == 30
    assert not w.drop_group(in_flight=40, sent=1.5, now=2.1)  # sent before the cut
    assert w.drop(in_flight=8, sent=2.5, now=3.0)
    assert w.cwnd == 1 and w.ssthresh == 6
    assert w.drops == 2


events = st.lists(
    st.tuples(
        st.sampled_from(["ack", "ack_icmp", "expect", "drop", "drop_group", "shrink"]),
        st.integers(0, 400),
        st.floats(0, 5),
    ),
    max_size=200,
)


@settings(max_examples=300)
@given(events=events, ceiling=st.integers(1, 2000), floor=st.integers(1, 3))
def test_window_stays_within_floor_and_ceiling(
    events: list[tuple[str, int, float]], ceiling: int, floor: int
) -> None:
    w = CongestionWindow(ceiling=ceiling, floor=floor)
    now = 0.0
    cuts = 0
    for kind, n, dt in events:
        now += dt
        before = w.last_drop
        if kind == "ack":
            w.ack()
        elif kind == "ack_icmp":
            w.ack(max_cc_scale=1.0)
        elif kind == "expect":
            w.expect(n)
        elif kind in ("drop", "drop_group"):
            sent = now - dt * (n % 3)  # sometimes sent before the last cut
            cut = getattr(w, kind)(n, sent, now)
            assert cut == (sent > before)  # at most one cut per burst
            cuts += cut
            if cut:
                assert w.ssthresh >= 2
        else:
            w.shrink_ceiling(n)
        assert w.floor <= w.cwnd <= w.ceiling
    assert w.drops == cuts


@given(n=st.integers(1, 5000))
def test_window_grows_monotonically_without_drops(n: int) -> None:
    w = CongestionWindow()
    last = w.cwnd
    for _ in range(min(n, 500)):
        w.expect()
        w.ack()
        assert w.cwnd >= last
        last = w.cwnd
    assert w.cwnd <= MAX_CWND


# -- RateLimiter (GroupScanStats::sendOK / probeSent)


def drive_limiter(limiter: RateLimiter, steps: list[tuple[float, int]]) -> list[float]:
    """Ask for ``want`` packets at each time (advancing by ``dt``); return each send time."""
    now = 0.0
    sent: list[float] = []
    for dt, want in steps:
        now += dt
        n = limiter.budget(want, now)
        assert n >= 0
        limiter.spend(n, now)
        sent += [now] * n
    return sent


steps = st.lists(st.tuples(st.floats(0, 0.2), st.integers(0, 50)), max_size=150)


@settings(max_examples=300)
@given(steps=steps, rate=st.floats(0.5, 5000))
def test_max_rate_never_exceeded_over_any_window(
    steps: list[tuple[float, int]], rate: float
) -> None:
    limiter = RateLimiter(max_rate=rate)
    sent = drive_limiter(limiter, steps)
    burst = limiter.burst
    # every window [sent[i], sent[j]] holds at most rate * width + burst packets
    for i in range(len(sent)):
        for j in range(i, min(len(sent), i + 400)):
            assert j - i + 1 <= rate * (sent[j] - sent[i]) + burst + 1e-6
    # and from the start: one packet, then the rate
    if sent:
        assert len(sent) <= 1 + rate * sent[-1] + 1e-6


@settings(max_examples=200)
@given(steps=steps, gap=st.floats(0.001, 1.0))
def test_scan_delay_spaces_every_send(steps: list[tuple[float, int]], gap: float) -> None:
    sent = drive_limiter(RateLimiter(min_gap_s=gap), steps)
    assert all(b - a >= gap - 1e-9 for a, b in zip(sent, sent[1:], strict=False))


@settings(max_examples=200)
@given(rate=st.floats(1, 2000), dt=st.floats(0.001, 0.1), n=st.integers(1, 200))
def test_min_rate_keeps_up_even_with_a_closed_window(rate: float, dt: float, n: int) -> None:
    """With no congestion room at all, min-rate alone sends about rate * elapsed packets."""
    limiter = RateLimiter(min_rate=rate)
    sent = drive_limiter(limiter, [(dt, 0)] * n)
    elapsed = dt * n
    assert len(sent) >= math.floor(rate * elapsed) - 1
    assert len(sent) <= rate * elapsed + 2


def test_max_rate_wins_over_min_rate() -> None:
    limiter = RateLimiter(max_rate=100, min_rate=10_000)
    sent = drive_limiter(limiter, [(0.01, 1000)] * 100)
    assert len(sent) <= 1 + 100 * 1.0 + 1e-6


def test_min_rate_earns_no_credit_for_being_ahead() -> None:
    limiter = RateLimiter(min_rate=10)
    limiter.spend(100, 0.0)  # far ahead of 10/s
    assert limiter.owed(0.5) == 0
    assert limiter.owed(10.5) >= 1  # owed again once the 100 are paid off


@given(rate=st.floats(0.1, 1000), now=st.floats(0, 100))
def test_next_time_is_when_allowance_opens(rate: float, now: float) -> None:
    limiter = RateLimiter(max_rate=rate)
    limiter.spend(limiter.allowance(now), now)
    t = limiter.next_time(now)
    assert t >= now
    assert limiter.allowance(t + 1e-9 * max(1.0, t)) >= 1


@settings(max_examples=200, deadline=None)
@given(
    first=st.none() | st.floats(0.0, 3.0),
    deltas=st.lists(
        st.floats(-0.1, 10.0) | st.sampled_from([0.0, -0.01, 8.0, 2.5, 0.0001]), max_size=60
    )
    | st.lists(  # runs of one delta, as a batch's replies give them
        st.tuples(
            st.floats(-0.1, 10.0) | st.sampled_from([0.0, 1.5, 2.3, 2.31, 4.6, 0.0001]),
            st.integers(1, 30),
        ),
        max_size=8,
    ).map(lambda runs: [d for d, k in runs for _ in range(k)]),
    level=st.sampled_from([3, 4, 5]),
)
def test_sample_all_equals_sample_one_by_one(
    first: float | None, deltas: list[float], level: int
) -> None:
    """The columnar session's batch of RTT samples ends where ``sample`` per value ends."""
    one, many = (RttEstimator.for_timing(resolve(level)) for _ in range(2))
    if first is not None:
        one.sample(first)
        many.sample(first)
    for d in deltas:
        one.sample(d)
    sample_all(many, deltas)
    assert (many.srtt, many.rttvar, many.timeout) == (one.srtt, one.rttvar, one.timeout)


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(0, 400),
    expected=st.integers(0, 500),
    received=st.integers(0, 500),
    cwnd=st.floats(1.0, 400.0),
    ssthresh=st.floats(2.0, 300.0),
    ceiling=st.floats(10.0, 400.0) | st.just(300.0),
    icmp=st.booleans(),
    even=st.booleans(),
)
@example(
    n=0, expected=5, received=5, cwnd=350.0, ssthresh=100.0, ceiling=300.0, icmp=False, even=False
)
@example(
    n=3, expected=9, received=9, cwnd=299.5, ssthresh=50.0, ceiling=300.0, icmp=False, even=False
)
@example(
    n=1, expected=0, received=0, cwnd=300.0, ssthresh=300.0, ceiling=300.0, icmp=True, even=False
)
@example(
    n=400, expected=0, received=7, cwnd=10.0, ssthresh=75.0, ceiling=300.0, icmp=False, even=True
)
@example(n=50, expected=0, received=0, cwnd=3.3, ssthresh=75.0, ceiling=20.5, icmp=False, even=True)
def test_ack_many_equals_expect_and_ack_per_reply(
    n: int,
    expected: int,
    received: int,
    cwnd: float,
    ssthresh: float,
    ceiling: float,
    icmp: bool,
    even: bool,
) -> None:
    """Including a window at or above its ceiling (``ack_many``'s shortcut) and one no try of
    which has timed out (``even``: expected == received, the shortcut of a cc of 1)."""
    if even:
        expected = received
    one, many = CongestionWindow(), CongestionWindow()
    for w in (one, many):
        w.expected, w.received, w.cwnd, w.ssthresh = expected, received, cwnd, ssthresh
        w.ceiling = ceiling
    cap = 1.0 if icmp else CC_SCALE_MAX
    for _ in range(n):
        one.expected += 1
        one.ack(max_cc_scale=cap)
    many.ack_many(n, max_cc_scale=cap)
    assert (many.cwnd, many.expected, many.received) == (one.cwnd, one.expected, one.received)


@pytest.mark.parametrize(
    ("lost", "answered", "host_ports", "settled", "expected"),
    [
        (0, 0, 10, True, 0.0),  # nothing answered: no evidence either way
        (0, 1, 40, True, 0.0),  # a mostly silent host: the raw ratio
        (3, 10, 1000, True, 3 / 13),  # (so far, 10 of 1000 answered)
        (0, 10, 10, True, 0.5 / 11),  # every port answered first time: Jeffreys' mean
        (0, 10, 10, False, 0.0),  # ... but not before the scan settles
        (0, 5, 10, True, 0.5 / 6),  # half answered counts as mostly answering
        (1, 999, 1001, True, 1.5 / 1001),
    ],
)
def test_loss_estimate_table(
    lost: int, answered: int, host_ports: int, settled: bool, expected: float
) -> None:
    assert loss_estimate(lost, answered, host_ports, settled=settled) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("answered", "host_ports", "tries"),
    [(10, 10, 4), (3, 4, 6), (1, 40, 2), (1000, 1000, 3), (10_000, 10_000, 2), (65535, 65535, 2)],
)
def test_retry_budget_with_no_loss_seen(answered: int, host_ports: int, tries: int) -> None:
    """No port needed a retransmission: how many tries a silent port gets at -T4 (cap 7) once
    the scan has settled."""
    ratio = loss_estimate(0, answered, host_ports, settled=True)
    assert retry_budget(-1, ratio, host_ports, max_retries=6) == tries
