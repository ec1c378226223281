"""The sans-IO half of the TCP connect scan: which probe starts when, when a try has timed out,
and retries. The pacing is ``pacing``'s, shared with the raw and bounce scans: nmap's RTT
estimate (``RttEstimator``), congestion window (``CongestionWindow``, with a larger ceiling:
``CONNECT_MAX_CWND``) and rate limits (``RateLimiter``, with ``--scan-delay`` as a global gap).
The congestion signal is nmap's (``ultrascan_adjust_timing``): an answer to a retransmission
proves an earlier try was lost, and cuts the window once per burst (``drop_group``: this one
window spans every target, like nmap's group window). Retries follow ``pacing.retry_budget``, as
the raw session's do: nmap's ``allowedTryno``, raised to what the host's measured loss needs,
and a port out of tries gets its no-response verdict only once nothing else is pending, so a
budget raised later (by another port's late answer) still retries it.

Nothing here opens a socket or reads a clock: the engine passes ``now`` (seconds, monotonic) into
every call and reports what each ``connect()`` did. The verdict of a finished probe comes from
``rules.interpret(Technique.CONNECT, ConnectOutcome(errno))`` so the errno table lives in one place.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import NamedTuple

from twinscan.core import rules
from twinscan.core.timing import Timing
from twinscan.core.vocab import Technique

from .pacing import CongestionWindow, RateLimiter, RttEstimator, loss_estimate, retry_budget

#: (address, port): one port of one target.
ProbeKey = tuple[str, int]

#: nmap caps the congestion window at 300 probes for raw scans. A connect probe costs a file
#: descriptor instead of a packet buffer, and on a fast path (loopback, a LAN) the window is what
#: bounds speed, so the connect plan lets it grow to this many sockets (still bounded by the
#: descriptors the process may open, and by ``--max-parallelism``-style template limits).
CONNECT_MAX_CWND = 1024


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
        #: host -> how many of its ports the scan probes (``pacing.loss_estimate``)
        self._host_ports = Counter(key[0] for key, _ in self.queue)
        self.in_flight: dict[ProbeKey, _InFlight] = {}
        self.outcomes: dict[ProbeKey, Outcome] = {}
        self.rtt = RttEstimator.for_timing(timing)
        ceiling = min(max_sockets, CONNECT_MAX_CWND)
        if timing.scan_delay_ms > 0:
            ceiling = 1  # nmap: a scan delay serialises probes
        self.window = CongestionWindow.for_timing(timing, ceiling=max(ceiling, 1))
        self.rate = RateLimiter.for_timing(timing, start=start, per_host_delay=False)
        self.sent = 0
        #: host -> the highest try number that ever got an answer (nmap max_successful_tryno).
        self.max_successful_tryno: dict[str, int] = {}
        #: host -> [ports that answered, tries those ports lost first]: the loss ratio.
        self._loss: dict[str, list[int]] = {}
        #: probes out of tries, waiting for the end (or for a larger budget): key -> tries spent.
        self._exhausted: dict[ProbeKey, int] = {}
        #: errno -> verdict, memoised from ``rules.interpret`` (the table stays the authority).
        self._verdicts: dict[int, rules.Verdict] = {}

    # --- queries ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return not self.queue and not self.in_flight

    def tries_allowed(self, host: str, *, settled: bool = False) -> int:
        """``pacing.retry_budget`` for ``host``: nmap's ``allowedTryno`` + 1 (a host that never
        answers a retransmission costs two tries per port, not eleven), raised on a lossy path
        to what its measured loss ratio needs."""
        answered, lost = self._loss.get(host, (0, 0))
        return retry_budget(
            self.max_successful_tryno.get(host, -1),
            loss_estimate(lost, answered, self._host_ports[host], settled=settled),
            self.total,
            self.timing.max_retries,
        )

    def next_wakeup(self, now: float) -> float | None:
        """When the engine must look again even if no socket reports (None: nothing pending)."""
        times: list[float] = []
        if self.in_flight:
            oldest = next(iter(self.in_flight.values()))
            times.append(oldest.sent + self.rtt.timeout)
        if self.queue and self._room(now) > 0:
            times.append(self.rate.next_time(now))
        return min(times) if times else None

    # --- decisions -------------------------------------------------------------------------

    def launches(self, now: float) -> list[ProbeKey]:
        """Probes to start now; each is recorded as in flight from ``now``."""
        room = self._room(now)
        if room <= 0 or not self.queue:
            return []
        if self.rate.limited:
            room = min(room, self.rate.allowance(now))
        out: list[ProbeKey] = []
        while room > 0 and self.queue:
            key, tryno = self.queue.popleft()
            self.in_flight[key] = _InFlight(now, tryno)
            out.append(key)
            room -= 1
        self.sent += len(out)
        self.rate.spend(len(out), now)
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
        window = self.window
        if flight.tryno == 0:  # Karn: only unambiguous samples
            self.rtt.sample(rtt_s)
        else:
            # An answer to a retransmission proves the earlier try was lost: nmap's congestion
            # signal (silence alone is not one: a filtered port is silent forever).
            host = key[0]
            self.max_successful_tryno[host] = max(
                self.max_successful_tryno.get(host, -1), flight.tryno
            )
            window.drop_group(len(self.in_flight) + 1, flight.sent, now)
        loss = self._loss.setdefault(key[0], [0, 0])
        loss[0] += 1
        loss[1] += flight.tryno
        window.expected += 1
        window.ack()
        outcome = Outcome(verdict, round(rtt_s * 1000, 3), flight.tryno + 1)
        self.outcomes[key] = outcome
        if flight.tryno and self._exhausted:
            self._revive(key[0])  # the budget may have grown
        self._settle_if_idle()
        return outcome

    def retry(self, key: ProbeKey) -> None:
        """The try proved nothing (nmap: a self-connect on loopback): try again, if tries remain."""
        flight = self.in_flight.pop(key)
        self._requeue(key, flight.tryno + 1)
        self._settle_if_idle()

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
        limit = self.rtt.timeout
        out: list[ProbeKey] = []
        for key, flight in self.in_flight.items():
            if flight.sent + limit > now:  # the same sum next_wakeup() reports
                break  # insertion order is send order
            out.append(key)
        for key in out:
            flight = self.in_flight.pop(key)
            self._requeue(key, flight.tryno + 1)
        self.window.expected += len(out)  # nmap: a try that timed out was expected to answer
        self._settle_if_idle()
        return out

    # --- internals ---------------------------------------------------------------------------

    def _requeue(self, key: ProbeKey, tryno: int) -> None:
        if tryno < self.tries_allowed(key[0]):
            self.queue.append((key, tryno))
        else:
            self._exhausted[key] = tryno

    def _revive(self, host: str, *, settled: bool = False) -> None:
        """Exhausted probes of ``host`` that the current budget allows go back in the queue."""
        allowed = self.tries_allowed(host, settled=settled)
        for key, tries in list(self._exhausted.items()):
            if key[0] == host and tries < allowed:
                del self._exhausted[key]
                self.queue.append((key, tries))

    def _settle_if_idle(self) -> None:
        """Nothing queued or in flight: the exhausted probes get one last look at their budget
        (measured over the whole scan by now), then nmap's no-response verdict."""
        if self.queue or self.in_flight or not self._exhausted:
            return
        for host in {key[0] for key in self._exhausted}:
            self._revive(host, settled=True)
        if self.queue:
            return
        verdict = rules.no_response(Technique.CONNECT)
        for key, tries in self._exhausted.items():
            self.outcomes[key] = Outcome(verdict, None, tries)
        self._exhausted.clear()

    def _room(self, now: float) -> int:
        """How many more may start by the window; min-rate may exceed it, not its ceiling."""
        in_flight = len(self.in_flight)
        room = int(self.window.cwnd) - in_flight
        owed = self.rate.owed(now)
        if owed > room:
            room = min(owed, int(self.window.ceiling) - in_flight)
        return room
