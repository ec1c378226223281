"""A model of one host's ICMP error rate limit, for UDP scans (sans-IO, time passed in).

Linux sends ICMP errors (port-unreachable: a closed UDP port) from a token bucket per
destination (``net.ipv4.icmp_ratelimit``, ``XRLIM_BURST_FACTOR``): by default a burst of 6,
then one per second -- but the interval is a sysctl (the lab runs 100 ms to 3 s), other kernels
and routers differ, and so may the burst. A scanner that probes faster than the bucket sees
closed ports go silent and calls them open|filtered; one that assumes a slower bucket wastes
time. nmap notices the silence and slows down (``boostScanDelay``, up to 1 s between probes);
twinscan *measures* the bucket and sends a closed-candidate port when the host has a token.

``IcmpBucket`` is that model for one host. Nothing in it is tuned to a particular host: the
burst and the refill interval are estimated from what the scan observes.

* detection: a port-unreachable resets the evidence (``on_unreachable``); a silent probe *sent
  after the latest answered one* adds to it (``on_silence``). ``LIMIT_EVIDENCE`` such silences
  in a row, with port-unreachables seen before, mean the bucket ran dry: the host is
  ``limited`` from then on (silence of probes sent before an answered one is loss, not a limit);
* the burst: the port-unreachables that answered probes sent before the first silence (the
  scan starts with a flood, so that run is the bucket's content, capped at ``BURST_MAX``);
* the interval, bracketed by evidence and bisected (``bisect``):

  - a lower bound ``lo`` (``on_confirmed_silence``): a probe sent ``gap`` seconds after the
    latest answered one met a dry bucket -- shown by a later try of its port drawing a
    port-unreachable, or at once by the session's *witness*, a port already known closed sent
    last in the same token batch, drawing nothing. After the answered probe the bucket held
    >= 0 tokens, ``gap / interval`` more had come by then, and that was < 1: the interval is
    longer than ``gap``;
  - an upper bound ``hi``: counting from the moment the bucket was last proven dry
    (``dry_at``, < 1 token), ``n`` answers by time ``t`` need ``n - 1`` refilled tokens, so the
    interval is below ``(t - dry_at) / (n - 1)``;
  - with both bounds, the pace is their geometric mean (the upper bound once they are within
    the margin); with no upper bound yet, each answered paced probe shortens the pace
    (halving until the first too-early silence, then ``SPEEDUP``) so a faster bucket is found
    out, and each too-early one lengthens it to ``BACKOFF`` times the lower bound (an
    exponential search for a slower one); the pace never goes below ``lo`` plus a margin;
  - before the host is limited, the answers that came between the first silence and the
    limit (tokens that refilled meanwhile) give the first estimate; with none, Linux's
    default (``ICMP_INTERVAL_S``) is the starting guess. Nothing else is assumed;
* pacing: while ``limited``, a token batch may go only when the model can ``take`` a token; a
  token arrives every ``interval``, the bucket holds ``burst``. Without a witness, a probe
  that stays silent for ``hold`` seconds is given its token back (``give_back``: the port
  looks open|filtered, the host did not spend it) only when it went at least as long after
  the latest answered probe as each of the ``SETTLED`` latest answered paced probes did (a
  closed port would have been answered), and once per answer unless twice that long -- a
  silence sooner may be the bucket's, and handing the token back would flood a dry bucket;
* canaries: silence alone cannot show a bucket that was already empty when the scan began (a
  scan before drained it); the session re-probes a few silent ports once the host has been
  quiet for a full interval (``canary_time``) and calls ``limit`` when one of them answers.
  The interval waited is the estimate, or, for a host that answered far more probes than a
  slow bucket could (``answer_bound``), the bound those answers prove.

The session (``raw_session``) owns the probes and decides which port goes when; this module
holds only the host's bucket state and the arithmetic.
"""

from __future__ import annotations

import bisect
import dataclasses
import math

#: Linux's default ICMP error rate limit per destination (net.ipv4.icmp_ratelimit = 1000 ms,
#: XRLIM_BURST_FACTOR): the starting guess, until the scan has measured the host.
ICMP_INTERVAL_S = 1.0
ICMP_BURST = 6
#: The largest burst believed from the opening run (a bigger one only costs a little speed).
BURST_MAX = 64
#: Send a rate-limited probe this long after the modelled token arrives (timer/jiffy slack).
ICMP_MARGIN_S = 0.02
#: The pace keeps this relative margin (and ICMP_MARGIN_S / 4) above the proven lower bound.
LO_MARGIN = 0.05
#: Pace change per answered paced probe: while searching (no too-early silence confirmed yet)
#: and after; and the factor over the lower bound after a confirmed too-early silence.
SEARCH_SPEEDUP = 0.5
SPEEDUP = 0.85
BACKOFF = 2.0
#: Answered paced probes whose timing a silence must match before it gives its token back.
SETTLED = 2
#: The shortest and longest interval the estimate may take.
INTERVAL_MIN_S = 0.002
INTERVAL_MAX_S = 30.0
#: How long a rate-limited probe holds its modelled token before a silence gives it back.
ICMP_HOLD_MIN_S = 0.02
#: Consecutive silences of probes sent after the latest answered one that mean a dry bucket.
LIMIT_EVIDENCE = 8
#: Answered send times remembered (to find the latest answered one before a silent probe).
_ANSWERS_KEPT = 256


@dataclasses.dataclass(slots=True)
class IcmpBucket:
    """One host's ICMP error bucket, as far as the scan can tell."""

    seen: int = 0  # port-unreachables from the host so far
    limited: bool = False
    tokens: float = 0.0
    tokens_at: float = 0.0
    #: the pace: the current estimate of the host's refill interval
    interval: float = ICMP_INTERVAL_S
    burst: int = ICMP_BURST
    #: the send order of the latest probe a port-unreachable answered, and how many probes
    #: sent after it have gone silent since
    answered_seq: int = -1
    evidence: int = 0
    #: how long after the answered probe before it each of the latest SETTLED answered paced
    #: probes went; may a silence give its token back (once per answer)
    answered_gaps: list[float] = dataclasses.field(default_factory=list)
    may_give_back: bool = True
    #: proven lower bound on the interval (a confirmed too-early silence), 0: none yet
    lo: float = 0.0
    #: too-early silences confirmed so far (0: still searching downwards)
    confirmed: int = 0
    #: proven upper bound on the interval (answers counted since the bucket was last proven
    #: dry, at ``dry_at``), inf: none yet
    hi: float = math.inf
    dry_at: float | None = None
    #: seq of the first silent probe (after an answer) and when it was sent
    first_silent_seq: int = -1
    first_silent_at: float = math.nan
    #: send seqs and times of answered probes (sorted, bounded)
    answered_seqs: list[int] = dataclasses.field(default_factory=list)
    answered_at: list[float] = dataclasses.field(default_factory=list)
    #: how many answered probes had a known send time, and the first and last of those times
    timed_answers: int = 0
    first_answered_at: float = math.inf
    last_answered_at: float = -math.inf

    # -- evidence

    def on_unreachable(self, seq: int, sent_at: float = math.nan, *, paced: bool = False) -> None:
        """A port-unreachable answered the probe sent ``seq``-th at ``sent_at``; ``paced``: it
        was sent against a modelled token (the host was limited)."""
        self.seen += 1
        if seq > self.answered_seq:
            self.answered_seq = seq
        self.evidence = 0
        if len(self.answered_seqs) < BURST_MAX + 1:
            self.answered_seqs.append(seq)
        own_gap = None if math.isnan(sent_at) else self.gap(sent_at)
        if not math.isnan(sent_at):
            self.timed_answers += 1
            self.first_answered_at = min(self.first_answered_at, sent_at)
            self.last_answered_at = max(self.last_answered_at, sent_at)
            bisect.insort(self.answered_at, sent_at)
            if len(self.answered_at) > _ANSWERS_KEPT:
                del self.answered_at[0]
        if paced and self.limited:
            self.may_give_back = True
            if own_gap is not None:
                self.answered_gaps = [*self.answered_gaps[-(SETTLED - 1) :], own_gap]
            if self.dry_at is not None and not math.isnan(sent_at):
                # n answers to probes sent since the bucket was proven dry (< 1 token) at
                # dry_at: n - 1 tokens refilled by sent_at, so interval < span / (n - 1)
                i = bisect.bisect_right(self.answered_at, self.dry_at)
                n = len(self.answered_at) - i
                if n >= 2:
                    self.hi = min(self.hi, (self.answered_at[-1] - self.dry_at) / (n - 1))
                    if self.hi <= self.lo:  # contradicting evidence (loss?): start over
                        self.hi = math.inf
            if self.hi < math.inf:
                self.interval = self.bisect()
                return
            if own_gap is not None and own_gap > 1.5 * self.interval:
                return  # answered only after silent probes: no evidence for a faster pace
            speedup = SPEEDUP if self.confirmed else SEARCH_SPEEDUP
            self.interval = max(self.floor(), self.interval * speedup)

    def bisect(self) -> float:
        """The pace between the proven bounds: their geometric mean, or the upper bound once
        they are within the margin of each other."""
        floor = self.floor()
        if self.hi <= floor * (1 + LO_MARGIN):
            return max(floor, self.hi)
        return min(INTERVAL_MAX_S, max(floor, math.sqrt(max(self.lo, INTERVAL_MIN_S) * self.hi)))

    def on_silence(self, seq: int, now: float, sent_at: float = math.nan) -> bool:
        """The probe sent ``seq``-th timed out; True when that makes the host limited."""
        if self.seen and self.first_silent_seq < 0 and seq > self.answered_seq:
            self.first_silent_seq = seq
            self.first_silent_at = sent_at
        if self.limited or self.seen == 0 or seq <= self.answered_seq:
            return False
        self.evidence += 1
        if self.evidence < LIMIT_EVIDENCE:
            return False
        run = sum(1 for s in self.answered_seqs if s < self.first_silent_seq)
        self.limit(now, burst=max(1, min(BURST_MAX, run)))
        return True

    def refill_estimate(self) -> float | None:
        """The interval the answers since the first silence suggest (tokens that refilled
        after the bucket first ran dry, one per interval), or None without such answers."""
        later = [t for t in self.answered_at if t > self.first_silent_at]
        if not later:
            return None
        span = later[-1] - self.first_silent_at
        return min(INTERVAL_MAX_S, max(self.floor(), span / len(later)))

    def gap(self, sent_at: float) -> float | None:
        """How long after the latest answered probe sent before it ``sent_at`` was sent."""
        i = bisect.bisect_left(self.answered_at, sent_at)
        return sent_at - self.answered_at[i - 1] if i else None

    def on_confirmed_silence(self, gap: float, sent_at: float = math.nan) -> None:
        """A probe sent (at ``sent_at``) ``gap`` after the latest answered one drew nothing,
        and a later try of its port (or a known-closed witness sent with it) drew a
        port-unreachable: the bucket was dry, so the interval exceeds ``gap``."""
        if not self.limited:
            return
        if not math.isnan(sent_at) and (self.dry_at is None or sent_at > self.dry_at):
            self.dry_at = sent_at
        self.tokens = min(self.tokens, 0.0)  # the model ran ahead of the host
        if gap <= self.lo:
            return
        self.lo = min(gap, INTERVAL_MAX_S)
        self.confirmed += 1
        if self.hi <= self.lo:
            self.hi = math.inf
        if self.hi < math.inf:
            self.interval = self.bisect()
        else:
            self.interval = min(INTERVAL_MAX_S, max(self.interval, self.lo * BACKOFF, self.floor()))

    def floor(self) -> float:
        """The shortest pace the evidence allows."""
        return max(INTERVAL_MIN_S, self.lo * (1 + LO_MARGIN) + ICMP_MARGIN_S / 4)

    def limit(self, now: float, *, burst: int = ICMP_BURST) -> None:
        """From ``now`` on, pace to the bucket: it is empty now (it just ran dry). The first
        pace: the refills seen so far (``refill_estimate``), else the current guess."""
        if not self.limited:
            self.interval = self.refill_estimate() or self.interval
        self.limited = True
        self.burst = burst
        self.tokens = -ICMP_MARGIN_S / self.interval
        self.tokens_at = now

    # -- tokens

    def refill(self, now: float) -> None:
        if now > self.tokens_at:
            tokens = self.tokens + (now - self.tokens_at) / self.interval
            self.tokens = tokens if tokens < self.burst else float(self.burst)
            self.tokens_at = now

    def take(self, now: float) -> bool:
        """Reserve the token the next probe's port-unreachable will cost, if there is one."""
        self.refill(now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def give_back(self, gap: float | None = None) -> bool:
        """A probe that held a token went silent ``gap`` after the latest answered probe: the
        host did not spend the token -- when the latest SETTLED answered paced probes went no
        later than that (had the port been closed, it would have been answered; otherwise the
        silence may be the bucket's). At most once per answer. True if given back."""
        gaps = self.answered_gaps
        if gap is None or len(gaps) < SETTLED:
            return False
        # answers come sparse among many open|filtered ports: their gaps overstate the
        # interval, so once the pace is bracketed, twice the pace will do
        enough = min(max(gaps), 2 * self.interval) if self.confirmed else max(gaps)
        if gap < enough or (not self.may_give_back and gap < 2 * enough):
            return False  # (twice that long: a token is there by any measure)
        self.may_give_back = False
        self.tokens = min(float(self.burst), self.tokens + 1)
        return True

    def ready_at(self, now: float) -> float:
        """When a token will be there (``now`` if one is)."""
        self.refill(now)
        return now if self.tokens >= 1 else now + (1 - self.tokens) * self.interval

    def canary_time(self, last_send: float, intervals: float = 1.0) -> float:
        """When a re-probe finds at least one token, even in a bucket that was empty (if its
        interval is at most ``intervals`` times the estimate). A host not known to be limited
        that answered too many probes for a slow bucket (``answer_bound``) waits that bound,
        not the default guess."""
        if self.limited:
            interval = self.interval
        else:
            interval = self.refill_estimate() or self.interval
            bound = self.answer_bound()
            if bound is not None and bound < interval:
                interval = bound
        return last_send + intervals * interval + ICMP_MARGIN_S

    def answer_bound(self) -> float | None:
        """An upper bound on the refill interval from how many probes the host answered and
        over what span they were sent, or None when the answers are too few to say.

        ``n`` answers to probes sent within ``span`` seconds took ``n`` tokens: at most
        ``burst + 1`` were there at the start, the rest refilled meanwhile, so the interval is
        at most ``span / (n - burst - 1)``. The burst is not known: the bound assumes the
        largest one believed (``BURST_MAX``), asks for at least as many answers again beyond
        it, and doubles the result for the spread of arrival times. (A host whose bucket was
        drained before the scan answers too few probes for a bound and keeps the full wait.)
        """
        beyond = self.timed_answers - 2 * (BURST_MAX + 1)
        if beyond <= 0:
            return None
        span = self.last_answered_at - self.first_answered_at
        return 2 * span / (self.timed_answers - BURST_MAX - 1)


def hold(srtt: float | None, rttvar: float) -> float:
    """How long a probe holds its reserved token before its silence gives it back."""
    return max(ICMP_HOLD_MIN_S, 3 * (srtt or 0.0) + 4 * rttvar)
