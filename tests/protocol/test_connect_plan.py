"""The connect scan's sans-IO scheduler: timers, retries, windows and rates, no sockets."""

from __future__ import annotations

import dataclasses
import errno
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core import rules
from twinscan.core.timing import INITIAL_CWND, resolve
from twinscan.core.vocab import PortState, Reason, Technique
from twinscan.protocol.connect_plan import CONNECT_MAX_CWND, ConnectPlan
from twinscan.protocol.pacing import CongestionWindow, RttEstimator

T3 = resolve(3)
T4 = resolve(4)


def keys(n: int, host: str = "127.0.0.1") -> list[tuple[str, int]]:
    return [(host, p) for p in range(1, n + 1)]


def test_first_launch_is_nmaps_initial_window() -> None:
    plan = ConnectPlan(keys(100), T4, start=0.0, max_sockets=10_000)
    assert len(plan.launches(0.0)) == INITIAL_CWND
    assert plan.launches(0.0) == []  # window full until something finishes


def test_window_is_capped_by_descriptors_and_template_parallelism() -> None:
    assert ConnectPlan(keys(5), T4, start=0, max_sockets=3).window.ceiling == 3
    t2 = resolve(2)
    assert t2.max_parallelism == 1
    plan = ConnectPlan(keys(5), t2, start=0, max_sockets=10_000)
    assert len(plan.launches(0.0)) == 1
    big = ConnectPlan(keys(5), T4, start=0, max_sockets=1 << 20)
    assert big.window.ceiling == CONNECT_MAX_CWND


def test_completed_uses_the_rules_table() -> None:
    plan = ConnectPlan(keys(3), T4, start=0.0, max_sockets=100)
    plan.launches(0.0)
    plan.completed(("127.0.0.1", 1), 0, 0.002)
    plan.completed(("127.0.0.1", 2), errno.ECONNREFUSED, 0.001)
    plan.completed(("127.0.0.1", 3), errno.EHOSTUNREACH, 0.004)
    got = {k[1]: o.verdict for k, o in plan.outcomes.items()}
    assert got == {
        1: rules.interpret(Technique.CONNECT, rules.ConnectOutcome(0)),
        2: rules.Verdict(PortState.CLOSED, Reason.CONN_REFUSED),
        3: rules.Verdict(PortState.FILTERED, Reason.HOST_UNREACH),
    }
    assert plan.outcomes[("127.0.0.1", 1)].rtt_ms == 2.0
    assert plan.done


def test_unknown_errno_is_fatal_like_nmap() -> None:
    plan = ConnectPlan(keys(1), T4, start=0.0, max_sockets=100)
    plan.launches(0.0)
    try:
        plan.completed(("127.0.0.1", 1), errno.ENETDOWN, 0.1)
    except rules.UnexpectedConnectError as exc:
        assert "ENETDOWN" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("ENETDOWN must not become a verdict")


def run_silent(plan: ConnectPlan, now: float = 0.0) -> tuple[int, float]:
    """Let every probe time out; return (tries launched, the clock at the end)."""
    tries = 0
    for _ in range(1000):
        if plan.done:
            break
        tries += len(plan.launches(now))
        wake = plan.next_wakeup(now)
        assert wake is not None and wake > now
        now = wake
        plan.expired(now)
    return tries, now


def test_silence_gets_one_retry_then_filtered() -> None:
    # nmap allowedTryno: a host that never answered a retransmission gets tryno 0 and 1 only.
    plan = ConnectPlan(keys(1), dataclasses.replace(T4, max_retries=6), start=0.0, max_sockets=99)
    tries, now = run_silent(plan)
    assert tries == 2
    outcome = plan.outcomes[("127.0.0.1", 1)]
    assert outcome.verdict == rules.Verdict(PortState.FILTERED, Reason.NO_RESPONSE)
    assert outcome.tries == 2 and outcome.rtt_ms is None
    assert now >= 2 * T4.initial_rtt_timeout_ms / 1000 - 1e-9  # the template's initial timeout
    assert plan.window.cwnd == INITIAL_CWND  # silence alone is no congestion signal


def test_retries_grow_once_a_retransmission_has_paid_off() -> None:
    timing = dataclasses.replace(T4, max_retries=3)
    plan = ConnectPlan(keys(2), timing, start=0.0, max_sockets=9)
    plan.launches(0.0)
    plan.expired(1.0)
    plan.launches(1.0)
    plan.completed(("127.0.0.1", 1), errno.ECONNREFUSED, 1.01)  # answered on tryno 1
    assert plan.max_successful_tryno == {"127.0.0.1": 1}
    assert plan.window.cwnd < INITIAL_CWND  # a drop: the window collapsed
    # one answer, after one lost try: a 50% loss ratio raises the budget to the cap
    assert plan.tries_allowed("127.0.0.1") == 4
    assert plan.tries_allowed("127.0.0.2") == 2
    tries, _ = run_silent(plan, 1.01)
    assert plan.outcomes[("127.0.0.1", 2)].tries == 4
    zero = ConnectPlan(keys(1), dataclasses.replace(T4, max_retries=0), start=0, max_sockets=9)
    assert run_silent(zero)[0] == 1  # --max-retries 0 still caps


def test_an_answer_on_a_retry_counts() -> None:
    plan = ConnectPlan(keys(1), T4, start=0.0, max_sockets=100)
    plan.launches(0.0)
    assert plan.expired(0.6) == [("127.0.0.1", 1)]
    assert plan.launches(0.6) == [("127.0.0.1", 1)]
    plan.completed(("127.0.0.1", 1), errno.ECONNREFUSED, 0.61)
    assert plan.outcomes[("127.0.0.1", 1)].tries == 2
    assert plan.rtt.srtt is None  # Karn: a retransmitted probe's RTT is ambiguous


def test_self_connect_retry_spends_a_try() -> None:
    plan = ConnectPlan(keys(1), dataclasses.replace(T4, max_retries=0), start=0, max_sockets=9)
    plan.launches(0.0)
    plan.retry(("127.0.0.1", 1))
    assert plan.done
    assert plan.outcomes[("127.0.0.1", 1)].verdict.state is PortState.FILTERED


def test_postpone_returns_the_probe_untried_and_lowers_the_ceiling() -> None:
    plan = ConnectPlan(keys(20), T4, start=0.0, max_sockets=1000)
    launched = plan.launches(0.0)
    plan.postpone(launched[-1], sockets_in_use=len(launched) - 1)
    assert plan.window.ceiling == len(launched) - 2
    assert plan.queue[0] == (launched[-1], 0)
    assert plan.sent == len(launched) - 1


def test_plan_uses_the_shared_pacing_units() -> None:
    """The estimator, window and rate limits are ``pacing``'s (tested in test_pacing.py)."""
    plan = ConnectPlan(keys(3), T4, start=0.0, max_sockets=1 << 20)
    assert isinstance(plan.rtt, RttEstimator) and isinstance(plan.window, CongestionWindow)
    assert plan.rtt.timeout == 0.5  # T4's initial RTT timeout
    plan.launches(0.0)
    plan.completed(("127.0.0.1", 1), errno.ECONNREFUSED, 0.010)
    assert plan.rtt.srtt == 0.010
    assert plan.rtt.timeout == 0.1  # 10 ms + 4 * 10 ms < min_rtt_timeout 100 ms
    assert plan.window.cwnd == INITIAL_CWND + 1  # slow start: one reply, cc_scale 1


def test_an_answered_retransmission_halves_the_window_once_per_burst() -> None:
    """nmap's drop signal (an answer to a retry), nmap's group cut (``drop_group``): the
    window halves once for a burst of such answers, not once per answer."""
    plan = ConnectPlan(keys(INITIAL_CWND), T4, start=0.0, max_sockets=1000)
    first = plan.launches(0.0)
    assert plan.expired(0.6) == first
    assert plan.launches(0.6) == first  # every port on its second try
    plan.completed(first[0], errno.ECONNREFUSED, 0.61)
    cut = plan.window.cwnd
    assert plan.window.drops == 1 and cut < INITIAL_CWND
    plan.completed(first[1], errno.ECONNREFUSED, 0.62)  # sent before the cut: same burst
    assert plan.window.drops == 1


def test_scan_delay_serialises_and_spaces_probes() -> None:
    timing = resolve(4, scan_delay_ms=250)
    plan = ConnectPlan(keys(3), timing, start=0.0, max_sockets=100)
    starts = []
    now = 0.0
    for _ in range(100):
        if plan.done:
            break
        for key in plan.launches(now):
            starts.append(now)
            plan.completed(key, errno.ECONNREFUSED, now + 0.001)
        wake = plan.next_wakeup(now)
        now = wake if wake is not None else now
    assert starts == [0.0, 0.25, 0.5]


def test_max_rate_spaces_launches() -> None:
    timing = resolve(4, max_rate=100)
    plan = ConnectPlan(keys(50), timing, start=0.0, max_sockets=1000)
    now, sent = 0.0, 0
    for _ in range(1000):
        if plan.done:
            break
        for key in plan.launches(now):
            sent += 1
            assert sent <= 100 * now + 1 + 1e-6
            plan.completed(key, errno.ECONNREFUSED, now)
        wake = plan.next_wakeup(now)
        assert wake is not None or plan.done
        now = wake if wake is not None else now
    assert plan.done and 0.48 <= now <= 0.5


def test_min_rate_exceeds_the_congestion_window() -> None:
    timing = resolve(4, min_rate=1000)
    plan = ConnectPlan(keys(500), timing, start=0.0, max_sockets=10_000)
    plan.launches(0.0)  # initial window
    assert len(plan.launches(0.1)) >= 100 - INITIAL_CWND  # behind by ~100 at t=0.1 s


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 40),
    retries=st.integers(0, 3),
    script=st.lists(
        st.sampled_from(["open", "refused", "unreach", "silent", "self"]), min_size=1, max_size=60
    ),
)
def test_every_probe_ends_with_exactly_one_legal_verdict(
    n: int, retries: int, script: list[str]
) -> None:
    timing = dataclasses.replace(T4, max_retries=retries)
    plan = ConnectPlan(keys(n), timing, start=0.0, max_sockets=64)
    errnos = {"open": 0, "refused": errno.ECONNREFUSED, "unreach": errno.EHOSTUNREACH}
    launched: dict[tuple[str, int], int] = {}
    now, step = 0.0, 0
    for _ in range(10_000):
        if plan.done:
            break
        for key in plan.launches(now):
            launched[key] = launched.get(key, 0) + 1
            action = script[step % len(script)]
            step += 1
            if action in errnos:
                plan.completed(key, errnos[action], now + 0.001)
            elif action == "self":
                plan.retry(key)
        wake = plan.next_wakeup(now)
        if wake is not None:
            now = max(wake, now)
        plan.expired(now)
    assert plan.done
    assert set(plan.outcomes) == set(keys(n))
    legal = rules.LEGAL_STATES[Technique.CONNECT]
    for key, outcome in plan.outcomes.items():
        assert outcome.verdict.state in legal
        assert 1 <= launched[key] <= retries + 1
        assert outcome.tries == launched[key]


def test_a_paid_off_retransmission_on_a_clean_path_earns_nmaps_one_more_try() -> None:
    # 999 ports answer their first try, one its second: loss 0.1%, nmap's rule decides (3 tries)
    plan = ConnectPlan(keys(1001), dataclasses.replace(T4, max_retries=6), start=0, max_sockets=999)
    now = 0.0
    launched = plan.launches(now)
    while len(launched) < 1001:
        for key in launched[-10:]:
            if key[1] <= 999:
                plan.completed(key, errno.ECONNREFUSED, now)
        launched += plan.launches(now)
    for key in launched:
        if key[1] <= 999 and key not in plan.outcomes:
            plan.completed(key, errno.ECONNREFUSED, now)
    now = 1.0
    plan.expired(now)  # ports 1000 and 1001 time out
    plan.launches(now)
    plan.completed(("127.0.0.1", 1000), errno.ECONNREFUSED, now + 0.01)
    assert plan.tries_allowed("127.0.0.1") == 3
    run_silent(plan, now + 0.01)
    assert plan.outcomes[("127.0.0.1", 1001)].tries == 3


def test_a_small_scan_whose_ports_all_answered_first_time_still_insures_its_silent_port() -> None:
    # 9 of 10 ports answered their first try: no loss seen, but ten samples cannot show a
    # clean path -- once the scan settles, the silent port gets more than nmap's two tries
    plan = ConnectPlan(keys(10), dataclasses.replace(T4, max_retries=6), start=0, max_sockets=99)
    for key in plan.launches(0.0):
        if key[1] <= 9:
            plan.completed(key, errno.ECONNREFUSED, 0.001)
    assert plan.tries_allowed("127.0.0.1") == 2  # mid-scan: nmap's budget
    assert plan.tries_allowed("127.0.0.1", settled=True) == 4  # the last look: Jeffreys' mean
    run_silent(plan, 0.01)
    assert plan.outcomes[("127.0.0.1", 10)].tries == 4


def _lossy_run(plan: ConnectPlan, loss: float, seed: int) -> None:
    """Every port refuses, but each try is lost with chance ``loss`` (a fixed RTT of 1 ms)."""
    rng = random.Random(seed)
    now = 0.0
    for _ in range(100_000):
        if plan.done:
            return
        for key in plan.launches(now):
            if rng.random() >= loss:
                plan.completed(key, errno.ECONNREFUSED, now + 0.001)
        wake = plan.next_wakeup(now)
        now = wake if wake is not None else now + 0.001
        plan.expired(now)
    raise AssertionError("the plan did not finish")  # pragma: no cover


@pytest.mark.parametrize("loss", [0.05, 0.1, 0.2])  # within -T4's 7 tries
def test_a_lossy_path_does_not_turn_closed_ports_into_filtered(loss: float) -> None:
    """nmap's rule alone (two or three tries) loses a port of a few hundred at 10% loss; the
    budget measured from the loss ratio keeps false silences below one in many scans."""
    false_silent = 0
    for seed in range(20):
        plan = ConnectPlan(keys(300), T4, start=0.0, max_sockets=1000)
        _lossy_run(plan, loss, seed)
        assert len(plan.outcomes) == 300
        false_silent += sum(o.verdict.state is PortState.FILTERED for o in plan.outcomes.values())
    assert false_silent == 0


def test_silent_ports_on_a_lossy_host_pay_for_the_loss_only_up_to_the_cap() -> None:
    """Filtered ports next to lossy closed ones get more tries, never more than --max-retries."""
    timing = dataclasses.replace(T4, max_retries=4)
    plan = ConnectPlan(keys(200), timing, start=0.0, max_sockets=1000)
    rng = random.Random(7)
    now = 0.0
    for _ in range(100_000):
        if plan.done:
            break
        for key in plan.launches(now):
            if key[1] <= 100 and rng.random() >= 0.2:  # ports 101-200 are filtered
                plan.completed(key, errno.ECONNREFUSED, now + 0.001)
        wake = plan.next_wakeup(now)
        now = wake if wake is not None else now + 0.001
        plan.expired(now)
    silent = [o for k, o in plan.outcomes.items() if k[1] > 100]
    assert len(silent) == 100 and {o.tries for o in silent} == {5}
