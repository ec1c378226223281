"""The ICMP error bucket model (one host) by example and by property."""

from __future__ import annotations

import heapq
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_icmp import KernelBucket
from twinscan.core.rules import IcmpReply
from twinscan.core.timing import resolve
from twinscan.core.vocab import PortState, Technique
from twinscan.protocol.icmp_ratelimit import (
    BURST_MAX,
    ICMP_BURST,
    ICMP_HOLD_MIN_S,
    ICMP_MARGIN_S,
    LIMIT_EVIDENCE,
    IcmpBucket,
    hold,
)
from twinscan.protocol.raw_session import ScanSession


def test_limit_needs_evidence_after_the_latest_answer() -> None:
    b = IcmpBucket()
    assert not b.on_silence(5, 0.0)  # no port-unreachable seen yet: no evidence
    b.on_unreachable(10)
    for seq in range(11, 11 + LIMIT_EVIDENCE - 1):
        assert not b.on_silence(seq, 0.0)
    assert not b.on_silence(3, 0.0)  # sent before the latest answered one: loss, not a limit
    assert b.on_silence(99, 1.0)
    assert b.limited and b.burst == 1  # one port-unreachable seen: a burst of one
    assert b.tokens == pytest.approx(-ICMP_MARGIN_S)  # empty, a margin past the next token


def test_an_answer_resets_the_evidence() -> None:
    b = IcmpBucket()
    b.on_unreachable(0)
    for seq in range(1, LIMIT_EVIDENCE):
        b.on_silence(seq, 0.0)
    b.on_unreachable(LIMIT_EVIDENCE)
    assert b.evidence == 0 and not b.limited


def test_tokens_refill_one_per_interval_up_to_the_burst() -> None:
    b = IcmpBucket()
    b.limit(0.0)
    assert not b.take(0.5)
    assert b.ready_at(0.5) == pytest.approx(1.0 + ICMP_MARGIN_S)
    assert b.take(1.0 + ICMP_MARGIN_S)
    b.refill(100.0)
    assert b.tokens == ICMP_BURST
    b.give_back()
    assert b.tokens == ICMP_BURST


def test_hold_and_canary_time() -> None:
    assert hold(None, 0.0) == ICMP_HOLD_MIN_S
    assert hold(0.1, 0.05) == pytest.approx(0.5)
    assert IcmpBucket().canary_time(3.0) == pytest.approx(4.0 + ICMP_MARGIN_S)


ops = st.lists(
    st.tuples(st.sampled_from(["take", "give", "unreach", "silence"]), st.floats(0, 0.7)),
    max_size=300,
)


@settings(max_examples=300)
@given(ops=ops, start_tokens=st.floats(0, ICMP_BURST))
def test_bucket_never_overfills_and_limits_the_answer_rate(
    ops: list[tuple[str, float]], start_tokens: float
) -> None:
    """Tokens never exceed the burst; once limited, the probes that took a token (and kept
    it) in any window number at most burst + window / interval + 1."""
    b = IcmpBucket(tokens=start_tokens)
    now = 0.0
    seq = 0
    taken: list[float] = []
    for op, dt in ops:
        now += dt
        seq += 1
        if op == "unreach":
            b.on_unreachable(seq)
        elif op == "silence":
            b.on_silence(seq, now)
        elif b.limited and op == "take":
            if b.take(now):
                taken.append(now)
        elif b.limited and op == "give" and taken:
            b.give_back()
            taken.pop()
        assert b.tokens <= b.burst
        assert b.evidence < LIMIT_EVIDENCE or b.limited
    for i in range(len(taken)):
        for j in range(i, len(taken)):
            width = taken[j] - taken[i]
            assert j - i + 1 <= b.burst + width / b.interval + 1 + 1e-6


@given(now=st.floats(0, 1000), tokens=st.floats(-1, ICMP_BURST))
def test_ready_at_is_when_take_succeeds(now: float, tokens: float) -> None:
    b = IcmpBucket(tokens=tokens, tokens_at=now, limited=True)
    t = b.ready_at(now)
    assert t >= now
    assert b.take(t + 1e-6)


# -- estimating the bucket (burst and interval come from the scan, not from constants)


def test_the_burst_is_the_opening_run() -> None:
    b = IcmpBucket()
    for seq in range(10):
        b.on_unreachable(seq, seq * 0.001)
    for seq in range(10, 10 + LIMIT_EVIDENCE):
        b.on_silence(seq, 0.1, seq * 0.001)
    assert b.limited and b.burst == 10


def test_refills_before_the_limit_give_the_first_interval() -> None:
    b = IcmpBucket()
    for seq in range(6):
        b.on_unreachable(seq, 0.0)
    b.on_silence(6, 0.05, 0.001)  # the bucket ran dry at 0.001
    b.on_unreachable(7, 0.251)  # one token refilled 0.25 s later
    b.on_unreachable(8, 0.501)
    for seq in range(9, 9 + LIMIT_EVIDENCE):
        b.on_silence(seq, 0.6, 0.55)
    assert b.limited and b.interval == pytest.approx(0.25)


def test_a_confirmed_silence_is_a_lower_bound_and_answers_speed_up() -> None:
    b = IcmpBucket()
    b.limit(0.0)
    b.interval = 1.0
    b.on_unreachable(1, 1.0, paced=True)
    assert b.interval == pytest.approx(0.5)  # searching: halve per answered paced probe
    assert b.gap(1.5) == pytest.approx(0.5)
    b.on_confirmed_silence(0.5)  # that probe's port answered a later try: the bucket was dry
    assert b.lo == 0.5 and b.interval >= 0.5 * 1.3
    for seq in range(2, 40):
        b.on_unreachable(seq, 1.0 + seq, paced=True)
    assert b.interval >= b.floor() > b.lo  # never below the proven bound


@settings(max_examples=200)
@given(
    gaps=st.lists(st.floats(0.001, 5.0), max_size=30),
    answers=st.integers(0, 60),
)
def test_the_pace_never_undercuts_a_proven_bound(gaps: list[float], answers: int) -> None:
    b = IcmpBucket()
    b.limit(0.0)
    for g in gaps:
        b.on_confirmed_silence(g)
    for seq in range(answers):
        b.on_unreachable(seq, float(seq), paced=True)
    assert b.interval >= b.lo
    if gaps:
        assert b.lo == pytest.approx(max(gaps))


def test_give_back_needs_a_silence_as_late_as_the_answers() -> None:
    """A silent paced probe gives its token back only when it went at least as long after the
    latest answer as the recent answered probes did (a closed port would have answered);
    once per answer, unless twice that long."""
    b = IcmpBucket()
    b.limit(0.0)
    b.interval = 1.0
    assert not b.give_back(5.0)  # no answered paced probes yet: the pace is a guess
    b.on_unreachable(0, 0.0)
    b.on_unreachable(1, 1.0, paced=True)
    b.on_unreachable(2, 2.0, paced=True)  # each answered 1.0 s after the one before
    assert not b.give_back(0.5)  # sooner than the answers: maybe the bucket's
    assert not b.give_back(None)
    assert b.give_back(1.0)
    assert not b.give_back(1.5)  # once per answer...
    assert b.give_back(2.0)  # ...unless twice as long
    assert b.tokens <= b.burst


# -- the lab: real kernels with several net.ipv4.icmp_ratelimit values


@pytest.mark.lab
@pytest.mark.slow
def test_exact_udp_verdicts_across_icmp_ratelimit_settings() -> None:
    """Hosts whose ICMP bucket refills every 100 ms and every 1.5 s (Linux's default is 1 s):
    every closed port comes out closed/port-unreach. (Times: benchmarks/bench_icmp_ratelimit.py.)"""
    import sys
    import tempfile
    from pathlib import Path

    from conftest import lab_unavailable

    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.bench_icmp_ratelimit import ratelimit_lab

    from twinscan.request.ports import parse_port_list

    limits = (100, 1500)
    spec = {100: "40000-40029", 1500: "40000-40011"}
    with ratelimit_lab(limits) as lab, tempfile.TemporaryDirectory() as tmp:
        for ms in limits:
            out = Path(tmp) / f"r{ms}.csv"
            lab.scan_udp(ms, spec[ms], out)
            ports = parse_port_list(spec[ms])
            assert lab.accuracy(ms, ports, out) == (len(ports), len(ports))


# -- the session against simulated buckets of every speed (fake clock, no wall time)


def simulate(
    host: KernelBucket, closed: list[int], silent: list[int], seed: int = 0
) -> tuple[ScanSession, float, list[tuple[float, int]]]:
    """Scan ``closed`` + ``silent`` UDP ports of one host; replies come back after 0.5 ms."""
    session = ScanSession(
        Technique.UDP, ["h"], [*closed, *silent], resolve(4), rng=random.Random(seed)
    )
    events: list[tuple[float, int, int]] = []
    sent: list[tuple[float, int]] = []
    now, n = 0.0, 0
    for _ in range(200_000):
        for _h, port, _tryno in session.due(now):
            sent.append((now, port))
            if port not in silent and host.allow(now):
                n += 1
                heapq.heappush(events, (now + 0.0005, n, port))
        while events and events[0][0] <= now:
            _, _, port = heapq.heappop(events)
            session.receive("h", port, -1, IcmpReply(3, 3), now, ttl=64, sender="h")
        session.expire(now)
        if session.done:
            return session, now, sent
        wake = session.wakeup(now)
        nxt = [t for t in (wake, events[0][0] if events else None) if t is not None]
        assert nxt, "stalled"
        now = max(now + 1e-6, min(nxt))
    raise AssertionError("too many steps")


def states(session: ScanSession) -> dict[int, PortState]:
    return {v.port: v.state for v in session.verdicts()}


@pytest.mark.parametrize("interval", [0.1, 0.25, 1.0, 3.0])
@pytest.mark.parametrize(("n_closed", "n_silent"), [(30, 0), (20, 10), (10, 60)])
def test_exact_verdicts_whatever_the_bucket(interval: float, n_closed: int, n_silent: int) -> None:
    """Buckets 10x faster and 3x slower than Linux's default, with and without open|filtered
    ports among the closed ones: every verdict is right, and the scan takes at most the same
    scan of an unlimited host plus the (closed - 6) x interval the bucket imposes plus a few
    intervals (simulated time: the search for the interval, the open|filtered ports' tries)."""
    closed = list(range(2000, 2000 + n_closed))
    silent = list(range(1000, 1000 + n_silent))
    session, elapsed, _ = simulate(KernelBucket(interval), closed, silent)
    got = states(session)
    assert all(got[p] is PortState.CLOSED for p in closed)
    assert all(got[p] is PortState.OPEN_FILTERED for p in silent)
    unlimited = simulate(KernelBucket(1e-6, burst=1e9, tokens=1e9), closed, silent)[1]
    floor = (n_closed - 6) * interval
    assert elapsed <= unlimited + 1.1 * floor + 16 * interval, (elapsed, unlimited, floor)


@pytest.mark.parametrize(("interval", "burst"), [(0.25, 2.0), (2.0, 10.0)])
def test_the_estimate_follows_the_bucket(interval: float, burst: float) -> None:
    closed = list(range(2000, 2040))
    session, _, _ = simulate(KernelBucket(interval, burst=burst, tokens=burst), closed, [])
    bucket = session.hosts[0].icmp
    assert bucket.limited and bucket.burst == burst
    assert bucket.lo < interval <= bucket.interval * (1 + 0.2)
    assert all(s is PortState.CLOSED for s in states(session).values())


def test_many_silent_ports_ride_with_the_witness() -> None:
    """100 open|filtered ports on a rate-limited host: they are tested many to a token, next
    to a port already known closed (the witness), not one token each."""
    closed = list(range(2000, 2010))
    silent = list(range(1000, 1100))
    session, elapsed, sent = simulate(KernelBucket(1.0), closed, silent)
    host = session.hosts[0]
    assert host.witness in closed and host.riders > 4
    assert sum(1 for _t, p in sent if p == host.witness) > 3  # re-sent although decided
    assert all(states(session)[p] is PortState.OPEN_FILTERED for p in silent)
    assert elapsed < 60  # one token per silent try would take > 200 s (simulated)


def test_upper_bound_counts_answers_since_the_bucket_was_dry() -> None:
    b = IcmpBucket()
    b.limit(0.0)
    b.on_confirmed_silence(0.3, sent_at=10.0)  # dry at 10.0
    assert b.dry_at == 10.0 and b.hi == float("inf")
    for i, t in enumerate((10.5, 11.0, 11.5)):
        b.on_unreachable(100 + i, t, paced=True)
    assert b.hi == pytest.approx((11.5 - 10.0) / 2)
    assert b.lo <= b.interval <= b.hi


def test_hosts_with_different_buckets_in_one_scan() -> None:
    """Four hosts scanned together: buckets of 0.1 s, 1 s and 3 s and no limit, each with its
    own mix of closed and open|filtered ports: every verdict is right."""
    ports = list(range(1000, 1040))
    hosts = {
        "a": (KernelBucket(0.1), set(ports[:30])),
        "b": (KernelBucket(1.0), set(ports[:20])),
        "c": (KernelBucket(3.0), set(ports[10:])),
        "d": (KernelBucket(1e-6, burst=1e9, tokens=1e9), set(ports[:25])),
    }
    session = ScanSession(Technique.UDP, list(hosts), ports, resolve(4), rng=random.Random(1))
    events: list[tuple[float, int, str, int]] = []
    now, n = 0.0, 0
    for _ in range(500_000):
        for addr, port, _tryno in session.due(now):
            bucket, closed = hosts[addr]
            if port in closed and bucket.allow(now):
                n += 1
                heapq.heappush(events, (now + 0.0005, n, addr, port))
        while events and events[0][0] <= now:
            _, _, addr, port = heapq.heappop(events)
            session.receive(addr, port, -1, IcmpReply(3, 3), now, ttl=64, sender=addr)
        session.expire(now)
        if session.done:
            break
        wake = session.wakeup(now)
        nxt = [t for t in (wake, events[0][0] if events else None) if t is not None]
        now = max(now + 1e-6, min(nxt))
    assert session.done
    for v in session.verdicts():
        want = PortState.CLOSED if v.port in hosts[v.host][1] else PortState.OPEN_FILTERED
        assert v.state is want, v


@settings(max_examples=100, deadline=None)
@given(
    interval=st.floats(1e-5, 2.0),
    burst=st.integers(1, BURST_MAX),
    n=st.integers(0, 2000),
    start_tokens=st.floats(0.0, 1.0),
)
def test_answer_bound_never_undercuts_a_bucket_that_gave_the_answers(
    interval: float, burst: int, n: int, start_tokens: float
) -> None:
    """Answers a bucket (burst up to BURST_MAX) gave to probes sent as fast as it refills:
    the bound they prove is never below its real interval, and is None while too few."""
    bucket = IcmpBucket()
    tokens, t, answered = burst * start_tokens, 0.0, 0
    for seq in range(n):
        t += interval / 3  # three probes per refill: most meet a dry bucket
        tokens = min(burst, tokens + interval / 3 / interval)
        if tokens >= 1:
            tokens -= 1
            answered += 1
            bucket.on_unreachable(seq, t)
    bound = bucket.answer_bound()
    if answered <= 2 * (BURST_MAX + 1):
        assert bound is None
    else:
        assert bound is not None and bound >= interval
        # (the wait is never shortened below the real interval by the bound)
        assert bucket.canary_time(t) >= t + min(interval, bucket.interval)
