"""The ICMP error bucket model (one host) by example and by property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.protocol.icmp_ratelimit import (
    ICMP_BURST,
    ICMP_HOLD_MIN_S,
    ICMP_MARGIN_S,
    LIMIT_EVIDENCE,
    IcmpBucket,
    hold,
)


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
