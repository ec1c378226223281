"""Pacing, written once: nmap's RTT estimator, congestion window and send-rate limits.

The raw session (``raw_session``), the connect plan (``connect_plan``) and the FTP bounce
dialogue (``ftp_bounce``) all pace with these three units. Each follows the nmap function named
in its docstring (nmap ``timing.cc`` and ``scan_engine.cc``); where an engine legitimately
differs, the difference is a constructor parameter, not a second copy:

* the window's ceiling: nmap's 300 for raw probes, more for connect (a probe there costs a
  descriptor, not a packet buffer -- ``connect_plan.CONNECT_MAX_CWND``);
* how many tries a port gets (``retry_budget``): nmap's ``allowedTryno``, raised to what the
  host's measured loss needs;
* *when* a drop is signalled is the caller's policy (connect: an answer to a retransmission, as
  nmap's ``ultrascan_adjust_timing``; raw: loss that looks like congestion, see
  ``raw_session``); what a drop *does* to the window is ``CongestionWindow.drop_group``.

All three are sans-IO: the caller passes ``now`` (seconds, one monotonic clock).
"""

from __future__ import annotations

import math

from twinscan.core.timing import CC_SCALE_MAX, INITIAL_CWND, INITIAL_SSTHRESH, MAX_CWND, Timing

#: The chance we accept that a responsive port is called silent because every try was lost.
FALSE_SILENCE = 1e-4


def loss_estimate(lost_tries: int, answered: int, host_ports: int, *, settled: bool) -> float:
    """A host's loss ratio as ``retry_budget`` takes it: the tries lost by ports that answered
    later, over all those ports' tries (``answered`` ports, ``lost_tries`` lost tries).

    Ten ports that all answered on their first try do not show a loss-free path: at 10% loss
    that happens one time in three, and the raw ratio (0) then left two tries to a port that
    lost both (a closed port called open|filtered). So when the scan has ``settled`` (nothing
    left to send or wait for, the last look at the ports that ran out of tries), a host whose
    ports mostly answer -- ``answered`` at least half its ``host_ports``: a silent port there
    is as likely lost as filtered, and more tries cost little -- gets the posterior mean of the
    loss under Jeffreys' prior, ``(lost + 1/2) / (tries + 1)``. That gives ten clean answers
    four or five tries in all; ten thousand keep nmap's two. Before the scan settles, and on a
    host whose ports mostly stay silent (every extra try paid by each filtered port), the raw
    ratio stands: mid-scan counts are partial, and a smoothed ratio there gave a 10k-port
    scan's silent ports a third try, a whole timeout round more (lab-2x10k-syn: 0.52 -> 0.66 s).
    """
    tries = answered + lost_tries
    if settled and answered and 2 * answered >= host_ports:
        return (lost_tries + 0.5) / (tries + 1)
    return lost_tries / tries if tries else 0.0


def retry_budget(
    max_successful_try: int, loss_ratio: float, ports: int, max_retries: int, bonus: int = 0
) -> int:
    """How many times a port of one host may be sent (1 + retransmissions).

    nmap's ``allowedTryno``: as far as retransmissions have ever paid off on the host
    (``max_successful_try``, -1 for none), at least one retry, capped by ``--max-retries``. On
    a lossy path that is not enough: with 10% loss, three tries still lose some port of a few
    hundred, and nmap then reports a closed port as filtered. So the budget also covers the
    host's measured ``loss_ratio`` (the share of tries lost by ports that answered later): the
    fewest tries after which any of the scan's ``ports`` would be silent by bad luck with chance
    below ``FALSE_SILENCE`` (a union bound over the whole scan: counting only the ports still
    pending let the last few through on three tries at 5% loss), within the same cap. ``bonus`` tries (the raw
    session's, for tries spent against an ICMP limit found late) are added to both.
    """
    tries = max(2, max_successful_try + 2) + bonus
    if loss_ratio > 0:
        need = math.ceil(math.log(FALSE_SILENCE / max(1, ports)) / math.log(min(loss_ratio, 0.9)))
        tries = max(tries, need)
    return min(tries, max_retries + 1 + bonus)


#: timing.cc adjust_timeouts2: rttvar starts at the first RTT kept within [5 ms, 2 s]; a later
#: rttvar above 2.3 s is reset to 2 s.
MIN_INITIAL_RTTVAR_S = 0.005
MAX_INITIAL_RTTVAR_S = 2.0
RTTVAR_RESET_ABOVE_S = 2.3
RTTVAR_RESET_TO_S = 2.0
#: adjust_timeouts2 ignores samples of 8 s or more (after the first) ...
MAX_SAMPLE_S = 8.0
#: ... and jumps above srtt by more than 1.5 s that also exceed 3 srtt + 2 rttvar.
OUTLIER_JUMP_S = 1.5
#: adjust_timeouts2: a small negative RTT (pcap vs gettimeofday clocks) counts as 10 ms.
SMALL_NEGATIVE_S = -0.05
SMALL_NEGATIVE_AS_S = 0.01
#: timing.cc scan_performance_vars::init: group_drop_cwnd_divisor.
GROUP_DROP_CWND_DIVISOR = 2.0
#: --max-rate: how far the send schedule may slip into the past (see ``RateLimiter``).
RATE_BURST_S = 0.02


class RttEstimator:
    """One smoothed RTT and the timeout it gives: nmap ``timing.cc`` ``adjust_timeouts2``.

    * first sample: ``srtt = delta``, ``rttvar = box(5 ms, 2 s, delta)``;
    * later samples: ignored when ``delta >= 8 s`` or negative, or when the jump
      ``delta - srtt`` is over 1.5 s *and* over ``3 srtt + 2 rttvar`` (nmap's "bogus delta");
      else ``srtt += (delta - srtt)/8``, ``rttvar += (|delta - srtt| - rttvar)/4``;
    * ``rttvar`` above 2.3 s is reset to 2 s;
    * ``timeout = srtt + 4 rttvar`` boxed into [min, max] RTT timeout, then raised to the scan
      delay when there is one (nmap: ``if (o.scan_delay) timeout = MAX(timeout, scan_delay)``).

    Before any sample ``timeout`` is the template's initial RTT timeout.
    """

    __slots__ = ("srtt", "rttvar", "timeout", "min_timeout", "max_timeout", "floor")

    def __init__(
        self, initial_s: float, min_s: float, max_s: float, *, scan_delay_s: float = 0.0
    ) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.timeout = initial_s
        self.min_timeout = min_s
        self.max_timeout = max_s
        self.floor = scan_delay_s

    @classmethod
    def for_timing(cls, timing: Timing) -> RttEstimator:
        return cls(
            timing.initial_rtt_timeout_ms / 1000,
            timing.min_rtt_timeout_ms / 1000,
            timing.max_rtt_timeout_ms / 1000,
            scan_delay_s=timing.scan_delay_ms / 1000,
        )

    def sample(self, delta: float) -> bool:
        """Account one RTT sample (seconds); False when adjust_timeouts2 would ignore it."""
        if SMALL_NEGATIVE_S < delta < 0:
            delta = SMALL_NEGATIVE_AS_S
        srtt = self.srtt
        if srtt is None:
            if delta < 0:
                return False
            srtt = self.srtt = delta
            rttvar = (
                MAX_INITIAL_RTTVAR_S
                if delta > MAX_INITIAL_RTTVAR_S
                else MIN_INITIAL_RTTVAR_S
                if delta < MIN_INITIAL_RTTVAR_S
                else delta
            )
        else:
            if delta >= MAX_SAMPLE_S or delta < 0:
                return False
            err = delta - srtt
            rttvar = self.rttvar
            if err > OUTLIER_JUMP_S and err > 3 * srtt + 2 * rttvar:
                return False
            srtt = self.srtt = srtt + err / 8
            rttvar += ((err if err >= 0 else -err) - rttvar) / 4
        if rttvar > RTTVAR_RESET_ABOVE_S:
            rttvar = RTTVAR_RESET_TO_S
        self.rttvar = rttvar
        timeout = srtt + 4 * rttvar
        lo, hi = self.min_timeout, self.max_timeout
        timeout = hi if timeout > hi else lo if timeout < lo else timeout
        self.timeout = timeout if timeout > self.floor else self.floor
        return True


def sample_all(est: RttEstimator, deltas: list[float]) -> None:
    """``est.sample(d)`` for each of ``deltas`` in order, the common case inlined: a later
    sample in [0, 8 s) that is no outlier (anything else takes ``sample`` itself)."""
    sample = est.sample
    srtt, rttvar = est.srtt, est.rttvar
    lo, hi, floor = est.min_timeout, est.max_timeout, est.floor
    for delta in deltas:
        if srtt is None or not 0 <= delta < MAX_SAMPLE_S:
            est.srtt, est.rttvar = srtt, rttvar
            sample(delta)
            srtt, rttvar = est.srtt, est.rttvar
            continue
        err = delta - srtt
        if err > OUTLIER_JUMP_S and err > 3 * srtt + 2 * rttvar:
            continue
        srtt += err / 8
        rttvar += ((err if err >= 0 else -err) - rttvar) / 4
        if rttvar > RTTVAR_RESET_ABOVE_S:
            rttvar = RTTVAR_RESET_TO_S
    if deltas and srtt is not None:
        est.srtt, est.rttvar = srtt, rttvar
        timeout = srtt + 4 * rttvar
        timeout = hi if timeout > hi else lo if timeout < lo else timeout
        est.timeout = timeout if timeout > floor else floor


class CongestionWindow:
    """nmap's ``struct ultra_timing_vals`` (timing.h, "Based on TCP congestion control
    techniques from RFC2581") with the values of ``scan_performance_vars::init``.

    * ``ack(scale)`` -- ``ultra_timing_vals::ack``: counts a reply; in slow start
      (``cwnd < ssthresh``) ``cwnd += scale * cc_scale``, capped at ``ssthresh``; in congestion
      avoidance ``cwnd += ca_incr / cwnd * scale * cc_scale``; never above ``ceiling``.
      ``cc_scale`` (``ultra_timing_vals::cc_scale``) is ``expected / received`` capped at 50:
      replies count for more when many probes go unanswered, as a scan's usually do.
      ``expect()`` counts ``num_replies_expected`` -- one per try that ended, answered or not
      (nmap counts it in ``ultrascan_adjust_timing``).
    * ``drop(in_flight, sent, now)`` -- ``ultra_timing_vals::drop``: ``cwnd = floor``,
      ``ssthresh = max(in_flight / divisor, 2)``.
    * ``drop_group(...)`` -- ``ultra_timing_vals::drop_group``: the same ssthresh, but the window
      only halves (``group_drop_cwnd_divisor``): what the shared windows of raw and connect use.
    * Either drop counts once per burst: only for a probe ``sent`` after the previous drop
      (``scan_engine.cc``: "Drops often come in big batches, but we only want one decrease per
      batch" -- ``TIMEVAL_AFTER(probe->sent, last_drop)``). Both return whether they cut.
    * ``shrink_ceiling`` (not nmap's): the connect engine found the machine out of descriptors.
    """

    __slots__ = (
        "cwnd",
        "ssthresh",
        "floor",
        "ceiling",
        "ca_incr",
        "ssthresh_divisor",
        "expected",
        "received",
        "last_drop",
        "drops",
    )

    def __init__(
        self,
        *,
        ceiling: float = MAX_CWND,
        ca_incr: float = 1,
        ssthresh_divisor: float = 1.5,
        floor: float = 1.0,
        initial: float = INITIAL_CWND,
        ssthresh: float = INITIAL_SSTHRESH,
    ) -> None:
        self.ceiling = float(max(ceiling, floor))
        self.floor = float(floor)
        self.cwnd = float(min(max(initial, floor), self.ceiling))
        self.ssthresh = float(ssthresh)
        self.ca_incr = ca_incr
        self.ssthresh_divisor = ssthresh_divisor
        self.expected = 0
        self.received = 0
        self.last_drop = -math.inf
        self.drops = 0

    @classmethod
    def for_timing(cls, timing: Timing, *, ceiling: float | None = None) -> CongestionWindow:
        """nmap's window for ``timing``: ``max_cwnd`` is ``--max-parallelism`` or 300 (or the
        engine's own ``ceiling``), the initial window ``box(1, max_cwnd, 10)``."""
        top = ceiling if ceiling is not None else MAX_CWND
        if timing.max_parallelism is not None:
            top = min(top, timing.max_parallelism)
        return cls(ceiling=top, ca_incr=timing.ca_incr, ssthresh_divisor=timing.ssthresh_divisor)

    def expect(self, n: int = 1) -> None:
        self.expected += n

    def ack(self, scale: float = 1.0, *, max_cc_scale: float = CC_SCALE_MAX) -> None:
        """A reply arrived (``ultra_timing_vals::ack``). ``max_cc_scale`` below 50 limits how
        much one reply may count (the raw session: ICMP errors may speed up only modestly)."""
        received = self.received = self.received + 1
        cc = self.expected / received
        if cc > max_cc_scale:
            cc = max_cc_scale
        cwnd = self.cwnd
        if cwnd < self.ssthresh:
            cwnd += scale * cc
            if cwnd > self.ssthresh:
                cwnd = self.ssthresh
        else:
            cwnd += self.ca_incr / cwnd * scale * cc
        self.cwnd = cwnd if cwnd < self.ceiling else self.ceiling

    def ack_many(self, n: int, *, max_cc_scale: float = CC_SCALE_MAX) -> None:
        """``n`` tries that ended in a reply, one after the other: ``expected += 1`` then
        ``ack()`` each time (what a session does per answered port), with the loop's state in
        locals (the columnar session acks a whole batch of replies at once)."""
        expected, received, cwnd = self.expected, self.received, self.cwnd
        ssthresh, ceiling, incr = self.ssthresh, self.ceiling, self.ca_incr
        if n > 0 and cwnd >= ceiling:
            # Every ack raises cwnd or keeps it (cc > 0), and the cap takes it back to the
            # ceiling: a window at its ceiling stays there (a large scan's steady state).
            self.expected, self.received, self.cwnd = expected + n, received + n, ceiling
            return
        if expected == received and max_cc_scale >= 1:
            # No try has timed out: cc is (E + i) / (R + i) = 1.0 at every step, and the loop
            # below computes ``cwnd + incr / cwnd * 1.0``; without the counters and the ratio
            # a step costs a third (a -p- scan's climb from 75 to 300: 22,000 steps)
            self.expected, self.received = expected + n, received + n
            k = 0
            while k < n and cwnd < ssthresh:  # slow start: one per reply, up to ssthresh
                cwnd += 1.0
                if cwnd > ssthresh:
                    cwnd = ssthresh
                if cwnd > ceiling:
                    cwnd = ceiling
                k += 1
            if cwnd < ceiling:  # then avoidance: past the ceiling, the window stays on it
                for _ in range(n - k):
                    cwnd += incr / cwnd
                    if cwnd >= ceiling:
                        cwnd = ceiling
                        break
            self.cwnd = cwnd
            return
        for _ in range(n):
            expected += 1
            received += 1
            cc = expected / received
            if cc > max_cc_scale:
                cc = max_cc_scale
            if cwnd < ssthresh:
                cwnd += cc
                if cwnd > ssthresh:
                    cwnd = ssthresh
            else:
                cwnd += incr / cwnd * cc
            if cwnd > ceiling:
                cwnd = ceiling
        self.expected, self.received, self.cwnd = expected, received, cwnd

    def drop(self, in_flight: int, sent: float, now: float) -> bool:
        """``ultra_timing_vals::drop``: back to the floor (a host's own window in nmap)."""
        if sent <= self.last_drop:
            return False
        self._cut(in_flight, now)
        self.cwnd = self.floor
        return True

    def drop_group(self, in_flight: int, sent: float, now: float) -> bool:
        """``ultra_timing_vals::drop_group``: halve, not below the floor."""
        if sent <= self.last_drop:
            return False
        self._cut(in_flight, now)
        self.cwnd = max(self.floor, self.cwnd / GROUP_DROP_CWND_DIVISOR)
        return True

    def _cut(self, in_flight: int, now: float) -> None:
        self.ssthresh = max(in_flight / self.ssthresh_divisor, 2.0)
        self.last_drop = now
        self.drops += 1

    def shrink_ceiling(self, to: float) -> None:
        self.ceiling = float(max(to, self.floor))
        if self.cwnd > self.ceiling:
            self.cwnd = self.ceiling


class RateLimiter:
    """``--max-rate``, ``--min-rate`` and ``--scan-delay`` for the whole scan (global, as nmap).

    nmap (``GroupScanStats::probeSent`` / ``sendOK``, scan_engine.cc):

    * max-rate: each send moves ``send_no_earlier_than`` on by ``1/max_rate``; the schedule may
      "slip into the past" so a slow stretch can be caught up. nmap lets it slip without bound;
      here it slips at most ``RATE_BURST_S`` (20 ms worth, at least one packet), so over *any*
      window of ``T`` seconds at most ``max_rate * T + burst`` packets go out -- a token bucket.
    * min-rate: each send moves ``send_no_later_than`` on by ``1/min_rate``, first pulled back to
      now when it lies in the future (being ahead earns no credit); once it has passed, probes
      go out whatever the congestion window says (``owed``). max-rate wins over min-rate.
    * scan delay (``min_gap_s``): at least this long between two sends. nmap enforces
      ``--scan-delay`` per host; the raw session does that itself (it knows the hosts) and
      passes 0 here; the connect plan and the bounce dialogue pass the delay.
    """

    __slots__ = (
        "max_rate",
        "min_rate",
        "min_gap",
        "burst",
        "tokens",
        "tokens_at",
        "due_by",
        "last_send",
        "sent",
    )

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        min_rate: float | None = None,
        min_gap_s: float = 0.0,
        start: float = 0.0,
    ) -> None:
        self.max_rate = max_rate
        self.min_rate = min_rate
        self.min_gap = min_gap_s
        self.burst = max(1.0, max_rate * RATE_BURST_S) if max_rate else 1.0
        self.tokens = 1.0
        self.tokens_at = start
        self.due_by = start
        self.last_send = -math.inf
        self.sent = 0

    @classmethod
    def for_timing(cls, timing: Timing, *, start: float, per_host_delay: bool) -> RateLimiter:
        gap = 0.0 if per_host_delay else timing.scan_delay_ms / 1000
        return cls(max_rate=timing.max_rate, min_rate=timing.min_rate, min_gap_s=gap, start=start)

    @property
    def limited(self) -> bool:
        return self.max_rate is not None or self.min_gap > 0

    def allowance(self, now: float) -> int:
        """How many packets max-rate and the scan delay let go now (a large number: no limit)."""
        if self.min_gap > 0:
            if now - self.last_send < self.min_gap:
                return 0
            allowed = 1
        else:
            allowed = 1 << 30
        rate = self.max_rate
        if rate is not None:
            if now > self.tokens_at:
                tokens = self.tokens + (now - self.tokens_at) * rate
                self.tokens = tokens if tokens < self.burst else self.burst
                self.tokens_at = now
            tokens_now = int(self.tokens + 1e-9)
            if tokens_now < allowed:
                allowed = tokens_now
        return allowed

    def owed(self, now: float) -> int:
        """How many packets min-rate wants out now beyond what the window allows."""
        if self.min_rate is None or self.due_by > now:
            return 0
        return int((now - self.due_by) * self.min_rate) + 1

    def budget(self, room: int, now: float) -> int:
        """Packets that may go now when the congestion window has ``room``: min-rate raises
        it, max-rate and the scan delay cap it."""
        if self.min_rate is not None:
            owed = self.owed(now)
            if owed > room:
                room = owed
        if self.max_rate is not None or self.min_gap > 0:
            allowed = self.allowance(now)
            if allowed < room:
                room = allowed
        return room

    def spend(self, n: int, now: float) -> None:
        """``n`` packets went out at ``now``."""
        if n <= 0:
            return
        self.sent += n
        self.last_send = now
        if self.max_rate is not None:
            self.tokens -= n
        if self.min_rate is not None:
            if self.due_by > now:
                self.due_by = now
            self.due_by += n / self.min_rate

    def next_time(self, now: float) -> float:
        """The earliest time at which ``allowance`` is not zero."""
        t = now
        if self.min_gap > 0:
            t = max(t, self.last_send + self.min_gap)
        if self.max_rate is not None:
            self.allowance(now)
            if self.tokens < 1:
                t = max(t, now + (1 - self.tokens) / self.max_rate)
        return t
