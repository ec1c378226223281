"""The sans-IO half of the TCP connect scan: which probe starts when, when a try has timed out,
retries, and nmap's RTT estimate and congestion window (nmap ``timing.cc``).

Nothing here opens a socket or reads a clock: the engine passes ``now`` (seconds, monotonic) into
every call and reports what each ``connect()`` did. The verdict of a finished probe comes from
``rules.interpret(Technique.CONNECT, ConnectOutcome(errno))`` so the errno table lives in one place.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from twinscan.core import rules
from twinscan.core.timing import INITIAL_CWND, INITIAL_SSTHRESH, Timing
from twinscan.core.vocab import Technique

#: (address, port): one port of one target.
ProbeKey = tuple[str, int]

#: nmap caps the congestion window at 300 probes for raw scans. A connect probe costs a file
#: descriptor instead of a packet buffer, and on a fast path (loopback, a LAN) the window is what
#: bounds speed, so the connect plan lets it grow to this many sockets (still bounded by the
#: descriptors the process may open, and by ``--max-parallelism``-style template limits).
CONNECT_MAX_CWND = 1024

#: nmap timing.cc: rttvar starts at the first RTT, kept within [5 ms, 2 s].
_MIN_RTTVAR_S = 0.005
_MAX_RTTVAR_S = 2.0


@dataclasses.dataclass(slots=True)
class RttEstimator:
    """Jacobson/Karels smoothed RTT as nmap keeps it (timing.cc ``adjust_timeouts2``)."""

    min_timeout_s: float
    max_timeout_s: float
    timeout_s: float
    srtt_s: float | None = None
    rttvar_s: float = 0.0

    @classmethod
    def for_timing(cls, timing: Timing) -> RttEstimator:
        return cls(
            min_timeout_s=timing.min_rtt_timeout_ms / 1000,
            max_timeout_s=timing.max_rtt_timeout_ms / 1000,
            timeout_s=timing.initial_rtt_timeout_ms / 1000,
        )

    def update(self, rtt_s: float) -> None:
        rtt_s = max(rtt_s, 0.0)
        if self.srtt_s is None:
            self.srtt_s = rtt_s
            self.rttvar_s = min(max(rtt_s, _MIN_RTTVAR_S), _MAX_RTTVAR_S)
        else:
            delta = rtt_s - self.srtt_s
            self.srtt_s += delta / 8
            self.rttvar_s += (abs(delta) - self.rttvar_s) / 4
            self.rttvar_s = min(max(self.rttvar_s, _MIN_RTTVAR_S), _MAX_RTTVAR_S)
        timeout = self.srtt_s + 4 * self.rttvar_s
        self.timeout_s = min(max(timeout, self.min_timeout_s), self.max_timeout_s)


@dataclasses.dataclass(slots=True)
class CongestionWindow:
    """nmap's ultra_timing_vals: slow start to ``ssthresh``, then +ca_incr/cwnd per reply; a drop
    (an answer to a retransmitted probe) sets ssthresh to in-flight/divisor and the window back
    to 1 — at most once per timeout interval, so one burst of losses counts once."""

    ceiling: float
    ca_incr: float
    ssthresh_divisor: float
    cwnd: float = float(INITIAL_CWND)
    ssthresh: float = float(INITIAL_SSTHRESH)
    last_drop: float | None = None

    def __post_init__(self) -> None:
        self.cwnd = min(self.cwnd, self.ceiling)

    def on_reply(self) -> None:
        if self.cwnd < self.ssthresh:
            self.cwnd += 1
        else:
            self.cwnd += self.ca_incr / self.cwnd
        self.cwnd = min(self.cwnd, self.ceiling)

    def on_drop(self, in_flight: int, now: float, interval_s: float) -> None:
        if self.last_drop is not None and now - self.last_drop < interval_s:
            return
        self.last_drop = now
        self.ssthresh = max(in_flight / self.ssthresh_divisor, 2.0)
        self.cwnd = 1.0

    def shrink_ceiling(self, to: int) -> None:
        self.ceiling = float(max(to, 1))
        self.cwnd = min(self.cwnd, self.ceiling)


class Outcome(NamedTuple):
    """The final verdict of one port, with the RTT of the try that decided it."""

    verdict: rules.Verdict
    rtt_ms: float | None
    tries: int


class _InFlight(NamedTuple):
    sent: float
    tryno: int


class ConnectPlan:
    """Schedule connect probes for ``keys`` under ``timing`` (sans-IO, clock passed in).

    The engine loop is: ``launches(now)`` -> start those connects; report each end with
    ``completed``; call ``expired(now)`` and close the sockets it names; sleep at most until
    ``next_wakeup(now)``; stop when ``done``.
    """

    def __init__(
        self,
        keys: Iterable[ProbeKey],
        timing: Timing,
        *,
        start: float,
        max_sockets: int,
    ) -> None:
        self.timing = timing
        self.start = start
        self.queue: deque[tuple[ProbeKey, int]] = deque((k, 0) for k in keys)
        self.total = len(self.queue)
        self.in_flight: dict[ProbeKey, _InFlight] = {}
        self.outcomes: dict[ProbeKey, Outcome] = {}
        self.rtt = RttEstimator.for_timing(timing)
        ceiling = min(max_sockets, CONNECT_MAX_CWND)
        if timing.max_parallelism is not None:
            ceiling = min(ceiling, timing.max_parallelism)
        if timing.scan_delay_ms > 0:
            ceiling = 1  # nmap: a scan delay serialises probes
        self.window = CongestionWindow(
            ceiling=float(max(ceiling, 1)),
            ca_incr=timing.ca_incr,
            ssthresh_divisor=timing.ssthresh_divisor,
        )
        self.sent = 0
        self.last_launch: float | None = None
        #: host -> the highest try number that ever got an answer (nmap max_successful_tryno).
        self.max_successful_tryno: dict[str, int] = {}
        #: errno -> verdict, memoised from ``rules.interpret`` (the table stays the authority).
        self._verdicts: dict[int, rules.Verdict] = {}

    # --- queries ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return not self.queue and not self.in_flight

    def tries_allowed(self, host: str) -> int:
        """nmap's ``allowedTryno`` + 1: retransmit only as far as retransmissions have ever paid
        off on this host (at least one retry), capped by ``--max-retries``. A host that never
        answers a retransmission costs two tries per port, not eleven."""
        earned = max(1, self.max_successful_tryno.get(host, -1) + 1)
        return min(self.timing.max_retries, earned) + 1

    def next_wakeup(self, now: float) -> float | None:
        """When the engine must look again even if no socket reports (None: nothing pending)."""
        times: list[float] = []
        if self.in_flight:
            oldest = next(iter(self.in_flight.values()))
            times.append(oldest.sent + self.rtt.timeout_s)
        if self.queue and len(self.in_flight) < self._room_limit(now):
            times.append(self._next_launch_time(now))
        return min(times) if times else None

    # --- decisions -------------------------------------------------------------------------

    def launches(self, now: float) -> list[ProbeKey]:
        """Probes to start now; each is recorded as in flight from ``now``."""
        room = self._room_limit(now) - len(self.in_flight)
        if room <= 0 or not self.queue:
            return []
        if now < self._next_launch_time(now):
            return []
        if self.timing.scan_delay_ms > 0:
            room = 1
        if self.timing.max_rate is not None:
            allowed = int(self.timing.max_rate * (now - self.start) + 1e-9) + 1 - self.sent
            room = min(room, max(allowed, 0))
        out: list[ProbeKey] = []
        while room > 0 and self.queue:
            key, tryno = self.queue.popleft()
            self.in_flight[key] = _InFlight(now, tryno)
            out.append(key)
            room -= 1
        self.sent += len(out)
        if out:
            self.last_launch = now
        return out

    def completed(self, key: ProbeKey, errno: int, now: float) -> Outcome:
        """``connect()`` on ``key`` ended with ``errno`` (0: connected). Raises
        ``rules.UnexpectedConnectError`` for an errno nmap treats as fatal."""
        flight = self.in_flight.pop(key)
        verdict = self._verdicts.get(errno)
        if verdict is None:
            verdict = rules.interpret(Technique.CONNECT, rules.ConnectOutcome(errno))
            assert verdict is not None
            self._verdicts[errno] = verdict
        rtt_s = now - flight.sent
        if flight.tryno == 0:  # Karn: only unambiguous samples
            self.rtt.update(rtt_s)
        else:
            # An answer to a retransmission proves the earlier try was lost: nmap's congestion
            # signal (silence alone is not one: a filtered port is silent forever).
            host = key[0]
            self.max_successful_tryno[host] = max(
                self.max_successful_tryno.get(host, -1), flight.tryno
            )
            self.window.on_drop(len(self.in_flight) + 1, now, self.rtt.timeout_s)
        self.window.on_reply()
        outcome = Outcome(verdict, round(rtt_s * 1000, 3), flight.tryno + 1)
        self.outcomes[key] = outcome
        return outcome

    def retry(self, key: ProbeKey) -> None:
        """The try proved nothing (nmap: a self-connect on loopback): try again, if tries remain."""
        flight = self.in_flight.pop(key)
        self._requeue(key, flight.tryno + 1)

    def postpone(self, key: ProbeKey, *, sockets_in_use: int) -> None:
        """The probe could not start for a local reason (out of descriptors or source ports):
        put it back untried and keep the window below what the machine managed."""
        flight = self.in_flight.pop(key)
        self.sent -= 1
        self.queue.appendleft((key, flight.tryno))
        self.window.shrink_ceiling(max(sockets_in_use - 1, 1))

    def expired(self, now: float) -> list[ProbeKey]:
        """Probes whose try has timed out: requeued for another try or, out of tries, given
        nmap's no-response verdict. The engine closes their sockets."""
        limit = self.rtt.timeout_s
        out: list[ProbeKey] = []
        for key, flight in self.in_flight.items():
            if flight.sent + limit > now:  # the same sum next_wakeup() reports
                break  # insertion order is send order
            out.append(key)
        for key in out:
            flight = self.in_flight.pop(key)
            self._requeue(key, flight.tryno + 1)
        return out

    # --- internals ---------------------------------------------------------------------------

    def _requeue(self, key: ProbeKey, tryno: int) -> None:
        if tryno < self.tries_allowed(key[0]):
            self.queue.append((key, tryno))
        else:
            verdict = rules.no_response(Technique.CONNECT)
            self.outcomes[key] = Outcome(verdict, None, tryno)

    def _room_limit(self, now: float) -> int:
        limit = int(self.window.cwnd)
        if self.timing.min_rate is not None and self.timing.scan_delay_ms <= 0:
            behind = int(self.timing.min_rate * (now - self.start)) + 1 - self.sent
            limit = max(limit, min(len(self.in_flight) + behind, int(self.window.ceiling)))
        return max(limit, 1)

    def _next_launch_time(self, now: float) -> float:
        t = now
        if self.last_launch is not None and self.timing.scan_delay_ms > 0:
            t = max(t, self.last_launch + self.timing.scan_delay_ms / 1000)
        if self.timing.max_rate is not None and self.timing.max_rate > 0:
            t = max(t, self.start + self.sent / self.timing.max_rate)
        return t
