"""A model of one host's ICMP error rate limit, for UDP scans (sans-IO, time passed in).

Linux sends ICMP errors (port-unreachable: a closed UDP port) from a token bucket per
destination (``net.ipv4.icmp_ratelimit``, ``XRLIM_BURST_FACTOR``): a burst of 6, then one per
second. A scanner that probes faster sees closed ports go silent and calls them open|filtered.
nmap notices the silence and slows down (``boostScanDelay``, up to 1 s between probes, and
``RLD_TIME_MS``); twinscan models the bucket instead and sends a closed-candidate port exactly
when the model says the host has a token, so every probe can be answered.

``IcmpBucket`` is that model for one host:

* evidence: a port-unreachable resets it (``on_unreachable``); a silent probe *sent after the
  latest answered one* adds to it (``on_silence``). ``LIMIT_EVIDENCE`` such silences in a row,
  with port-unreachables seen before, mean the bucket ran dry: the host is ``limited`` from
  then on (silence of probes sent before an answered one is loss -- e.g. while the neighbour
  entry was resolved -- not a limit; random loss rarely strikes that often in a row);
* pacing: while ``limited``, a probe may go only when it can ``take`` a token; a probe that
  stays silent for ``hold`` seconds did not make the host spend one, so it is given back
  (``give_back``); a token arrives every ``interval``, the bucket holds ``burst``;
* canaries: silence alone cannot show a bucket that was already empty when the scan began (a
  scan before drained it); the session re-probes a few silent ports once the host has been
  quiet for a full interval (``canary_time``) and calls ``limit`` when one of them answers.

The session (``raw_session``) owns the probes and decides which port goes when; this module
holds only the host's bucket state and the arithmetic.
"""

from __future__ import annotations

import dataclasses

#: Linux's ICMP error rate limit per destination (net.ipv4.icmp_ratelimit, XRLIM_BURST_FACTOR).
ICMP_INTERVAL_S = 1.0
ICMP_BURST = 6
#: Send a rate-limited probe this long after the modelled token arrives (timer/jiffy slack).
ICMP_MARGIN_S = 0.02
#: How long a rate-limited probe holds its modelled token before a silence gives it back.
ICMP_HOLD_MIN_S = 0.02
#: Consecutive silences of probes sent after the latest answered one that mean a dry bucket.
LIMIT_EVIDENCE = 8


@dataclasses.dataclass(slots=True)
class IcmpBucket:
    """One host's ICMP error bucket, as far as the scan can tell."""

    seen: int = 0  # port-unreachables from the host so far
    limited: bool = False
    tokens: float = 0.0
    tokens_at: float = 0.0
    interval: float = ICMP_INTERVAL_S
    burst: int = ICMP_BURST
    #: the send order of the latest probe a port-unreachable answered, and how many probes
    #: sent after it have gone silent since
    answered_seq: int = -1
    evidence: int = 0

    # -- evidence

    def on_unreachable(self, seq: int) -> None:
        """A port-unreachable answered the probe sent ``seq``-th."""
        self.seen += 1
        if seq > self.answered_seq:
            self.answered_seq = seq
        self.evidence = 0

    def on_silence(self, seq: int, now: float) -> bool:
        """The probe sent ``seq``-th timed out; True when that makes the host limited."""
        if self.limited or self.seen == 0 or seq <= self.answered_seq:
            return False
        self.evidence += 1
        if self.evidence < LIMIT_EVIDENCE:
            return False
        self.limit(now, burst=max(1, min(ICMP_BURST, self.seen)))
        return True

    def limit(self, now: float, *, burst: int = ICMP_BURST) -> None:
        """From ``now`` on, pace to the bucket: it is empty now (it just ran dry)."""
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

    def give_back(self) -> None:
        """A probe that held a token went silent: the host did not spend it."""
        self.tokens = min(float(self.burst), self.tokens + 1)

    def ready_at(self, now: float) -> float:
        """When a token will be there (``now`` if one is)."""
        self.refill(now)
        return now if self.tokens >= 1 else now + (1 - self.tokens) * self.interval

    def canary_time(self, last_send: float) -> float:
        """When a re-probe finds at least one token, even in a bucket that was empty."""
        return last_send + self.interval + ICMP_MARGIN_S


def hold(srtt: float | None, rttvar: float) -> float:
    """How long a probe holds its reserved token before its silence gives it back."""
    return max(ICMP_HOLD_MIN_S, 3 * (srtt or 0.0) + 4 * rttvar)
