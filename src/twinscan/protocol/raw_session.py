"""The native engine's scan session: pure state, time passed in (sans-IO).

The I/O loop (``twinscan.engines.raw``) drives one ``ScanSession``::

    sends = session.due(now)            # (host, port, try) to put on the wire now
    session.receive(host, port, try, reply, now, ...)   # every matched reply
    session.expire(now)                 # time out what waited too long
    session.wakeup()                    # when something will next be due (absolute)
    session.done / session.verdicts()

What it does, after nmap's ultra_scan (scan_engine.cc); the pacing arithmetic lives in
``pacing`` (shared with the connect and bounce scans) and the ICMP bucket in ``icmp_ratelimit``:

* the probe plan: every (host, port), ports shuffled unless ``-r``, hosts interleaved;
* RTT per host and for the group (``pacing.RttEstimator``); a host with no sample yet waits
  the group's timeout, so a silent host does not wait the initial timeout forever;
* one congestion window (``pacing.CongestionWindow``), applied per host and, times the host
  count, to the scan. *When* to cut it is this session's policy: random loss (a lossy link) is
  told apart from congestion by the *loss ratio*, the share of recent tries that timed out. A
  ratio above the template's threshold (30%, 40% at -T4/-T5, nmap's boostScanDelay thresholds)
  while some ports answered only after a retransmission is congestion (``drop_group``); a
  lossy link's steady 10% costs retries, not speed. (nmap cuts on every answered
  retransmission, which would crawl on such a link);
* adaptive retransmission: a port may be tried ``max(2, max_successful_try + 2)`` times
  (nmap's ``allowedTryno``), capped by ``--max-retries``, and at least as often as the
  measured loss ratio needs to make a false "no response" unlikely. Ports that ran out of
  tries get their no-response verdict only at the end, so a later, higher
  ``max_successful_try`` still retries them;
* ``--min-rate``/``--max-rate`` (``pacing.RateLimiter``), ``--scan-delay`` (per host, as nmap);
* ICMP rate limiting (UDP): the host's bucket (``icmp_ratelimit.IcmpBucket``) is modelled once
  its port-unreachables stop -- its burst and refill interval measured from what the scan sees
  -- and ports are probed in *token batches* when the model has a token: silent ports first,
  unprobed ones next, and last a *witness*, a port already known closed. The first ICMP error
  of a batch shows where the token went: the silent ports before it were silent with a token
  there (open|filtered, their try counts), the ones after it are spared the try; a batch that
  draws nothing, not even from the witness, met a dry bucket (the pace was early). The riders
  per batch double while they prove silent (1 up to ``RIDERS_MAX``): a host with many
  open|filtered ports has them tested many to a token. Tries a port spent against a pace not
  yet proven don't count (``Probe.spared``), nor do tries on a limited host raise
  ``max_successful_try``.

A port's first answer takes one path, ``_answered``. (A TCP scan of 4096 probes or more, such
as a loopback ``-p-`` with its 65535 RSTs, runs on ``bulk_session.BulkTcpSession`` instead,
which takes replies in batches.)

Over 400 lines (about 780 with the UDP token batches of the ICMP estimate): RTT, window, rate,
the ICMP bucket model and the result columns have moved out; what is left (probe queues,
replies, retries, the congestion policy, the UDP canaries and token batches) shares the probe
queues and the in-flight bookkeeping, and splitting it would hand those around on the hot path.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Sequence

from twinscan.core import rules
from twinscan.core.rules import IcmpReply, Reply, Verdict
from twinscan.core.schema import PortVerdict, ResultColumns
from twinscan.core.timing import CC_SCALE_MAX, Timing
from twinscan.core.vocab import Technique

from .icmp_ratelimit import IcmpBucket, hold
from .pacing import CongestionWindow, RateLimiter, RttEstimator, loss_estimate, retry_budget
from .session_columns import column_rows, probe_columns

__all__ = ["CANARIES", "HostStats", "LossSignal", "Probe", "ScanSession"]

#: Ports re-probed together after a quiet interval: the one token the bucket has by then goes to
#: the first closed one among them (a single canary could pick a port that never answers).
CANARIES = 3
#: Canary rounds for a host that did send port-unreachables (then went quiet), each waiting
#: twice as long as the one before. One: more rounds would find a bucket that was dry when
#: the scan began *and* refills slower than the guess, but a lossy host's exhausted ports
#: would then look like a limit (tests/protocol/test_session.py, loss 20%).
CANARY_ROUNDS = 1
#: Silent tries per port that an unsettled ICMP pace may cost without counting against it.
SPARED_MAX = 4
#: A rate-limited host's token goes out with up to this many silent ports riding in front of
#: it: if the last one draws the ICMP error, the bucket had a token when the riders arrived,
#: so their silence is their own (open|filtered) -- many silent ports tested per token.
RIDERS_MAX = 16
#: Tries a rider may be spared for arriving after the batch's token was spent.
RIDER_SPARED_MAX = 64
#: How many recent tries and answers the congestion signal looks at.
_LOSS_WINDOW = 200


class LossSignal:
    """When a raw session's timeouts look like congestion (both sessions' policy, once).

    Congestion: many recent tries timed out (more than nmap's boostScanDelay share: 30%, 40%
    at -T4/-T5) *and* some ports answered only after a retransmission -- so responsive ports
    are losing probes, not just filtered ports staying silent. A lossy link's steady 10%
    costs retries, not speed. The session then cuts its window (nmap's ``drop_group``)."""

    __slots__ = ("tries", "retry_ok", "threshold")

    def __init__(self, timing: Timing) -> None:
        #: outcome of recently resolved tries (True: timed out), and of recent answers
        #: (True: it took a retransmission)
        self.tries: deque[bool] = deque(maxlen=_LOSS_WINDOW)
        self.retry_ok: deque[bool] = deque(maxlen=_LOSS_WINDOW)
        self.threshold = 0.4 if timing.level >= 4 else 0.3

    def answered(self, answered_tries: Sequence[int]) -> None:
        """Ports answered, in order, each on try ``answered_tries[i]`` (0: the first)."""
        recent = answered_tries[-_LOSS_WINDOW:]
        self.tries.extend([False] * len(recent))
        self.retry_ok.extend([k > 0 for k in recent])

    def answered_first(self, n: int) -> None:
        """``answered([0] * n)``: ``n`` ports answered their first try (a batch's usual case)."""
        first = [False] * min(n, _LOSS_WINDOW)
        self.tries.extend(first)
        self.retry_ok.extend(first)

    def timed_out(self) -> bool:
        """A try timed out: True when recent losses now look like congestion."""
        self.tries.append(True)
        tries = self.tries
        if len(tries) < 20 or not any(self.retry_ok):
            return False
        return sum(tries) / len(tries) > self.threshold


@dataclasses.dataclass(slots=True)
class Probe:
    """One (host, port) of the plan and where it stands."""

    host: int
    port: int
    tries: int = 0  # how many times sent
    sent_at: float = 0.0
    outstanding: bool = False
    verdict: Verdict | None = None
    final: bool = False
    ttl: int | None = None
    reason_ip: str | None = None
    rtt: float | None = None
    held_token: bool = False
    not_before: float = 0.0  # a canary waits for the host's ICMP bucket to refill
    seq: int = -1  # send order of the latest try (all hosts share the counter)
    #: UDP: the latest try went against a modelled ICMP token (the host was limited)
    paced: bool = False
    #: UDP: the longest time after the host's latest answered probe that a try of this port
    #: went silent, and the try count then (a later answer proves the bucket was dry)
    gap: float | None = None
    gap_try: int = 0
    #: UDP: silent tries sent against a pace still being measured (they may have met a dry
    #: bucket): they don't count against the port's tries, up to SPARED_MAX
    spared: int = 0
    #: UDP on a limited host: the token batch of the latest try and the place in it (-1: none)
    batch: int = -1
    rank: int = 0
    proven: int = 0  # silent tries of token batches that had a token for them


@dataclasses.dataclass(slots=True)
class HostStats:
    address: str
    rtt: RttEstimator
    max_successful_try: int = -1
    in_flight: int = 0
    last_send: float = -math.inf
    answered: int = 0  # ports that answered
    lost_tries: int = 0  # unanswered tries of ports that later answered
    icmp: IcmpBucket = dataclasses.field(default_factory=IcmpBucket)
    #: the ports re-probed after a quiet second, to find a bucket that silence alone can't show
    canary_ports: set[int] | None = None
    #: canary rounds so far (a host that sent port-unreachables gets CANARY_ROUNDS, each
    #: waiting twice as long: its bucket may refill more slowly than Linux's default)
    canary_rounds: int = 0
    #: tries every port already spent before the limit was found late; they don't count
    bonus_tries: int = 0
    #: silent ports that ride in front of each ICMP token (grows while riders prove silent)
    riders: int = 4
    #: a port known closed (one packet a probe): sent last in each token batch, its
    #: port-unreachable proves the bucket had the token; the pending batch and its send
    witness: int | None = None
    witness_batch: int = -1
    witness_sent: float = 0.0
    witness_seq: int = -1

    @property
    def srtt(self) -> float | None:
        return self.rtt.srtt

    @property
    def limited(self) -> bool:
        return self.icmp.limited

    def loss_ratio(self, host_ports: int, *, settled: bool = False) -> float:
        """``pacing.loss_estimate`` of this host, scanned on ``host_ports`` ports."""
        return loss_estimate(self.lost_tries, self.answered, host_ports, settled=settled)


class ScanSession:
    """Pure state of one technique's scan over ``targets`` x ``ports``."""

    def __init__(
        self,
        technique: Technique,
        targets: Sequence[str],
        ports: Sequence[int],
        timing: Timing,
        *,
        randomize: bool = True,
        rng: random.Random | None = None,
        packets_per_probe: dict[int, int] | None = None,  # UDP: payloads per port
        defeat_icmp_ratelimit: bool = False,
        start: float = 0.0,
    ) -> None:
        self.technique = technique
        self.timing = timing
        self.defeat_icmp_ratelimit = defeat_icmp_ratelimit
        self._udp = technique is Technique.UDP
        self._pp = packets_per_probe or {}
        rng = rng or random.Random()
        order = list(ports)
        if randomize:
            rng.shuffle(order)
        self.hosts = [HostStats(a, RttEstimator.for_timing(timing)) for a in targets]
        self._host_index = {a: i for i, a in enumerate(targets)}
        # Interleave hosts: port 1 of every host, then port 2 ...
        self.probes: list[Probe] = [Probe(h, p) for p in order for h in range(len(targets))]
        #: per host: port -> its probe
        self._index: list[dict[int, Probe]] = [
            dict(zip(order, self.probes[h :: len(targets)], strict=True))
            for h in range(len(targets))
        ]
        #: what each distinct reply means for this technique (replies repeat: few distinct ones)
        self._meaning: dict[Reply, Verdict | None] = {}
        self._fresh: deque[Probe] = deque(self.probes)
        self._retry: deque[Probe] = deque()
        self._inflight: deque[Probe] = deque()  # in send order; answered ones skipped lazily
        self._exhausted: list[Probe] = []
        self.in_flight = 0
        self.finished = 0
        #: group-wide RTT (nmap's group timing stats): the timeout of hosts with no sample yet;
        #: sampled only while there is such a host (``_unsampled``), as nothing else reads it
        self._group = RttEstimator.for_timing(timing)
        self._unsampled = len(self.hosts)
        self.window = CongestionWindow.for_timing(timing)
        self.rate = RateLimiter.for_timing(timing, start=start, per_host_delay=True)
        self._delay = timing.scan_delay_ms / 1000
        self._losses = LossSignal(timing)
        self._any_limited = False
        self.sent_packets = 0
        self._send_seq = 0
        #: token batches (UDP, limited hosts): the lowest rank that drew an ICMP error, and
        #: the batches whose token went back (their silences are the ports' own)
        self._batch_seq = 0
        self._batch_icmp: dict[int, int] = {}
        self._batch_given: set[int] = set()
        self._batch_holder: dict[int, int] = {}  # batch -> rank of its token holder
        self.retransmissions = 0

    # -- queries

    @property
    def done(self) -> bool:
        return self.finished == len(self.probes)

    @property
    def total(self) -> int:
        """How many (host, port) probes the scan has."""
        return len(self.probes)

    @property
    def cwnd(self) -> float:
        return self.window.cwnd

    def host_of(self, address: str) -> int | None:
        return self._host_index.get(address)

    def allowed_tries(self, host: HostStats, *, settled: bool = False) -> int:
        """How many times a port of ``host`` may be sent (``pacing.retry_budget``); ``settled``:
        asked when nothing is left to send or wait for (``pacing.loss_estimate``)."""
        return retry_budget(
            host.max_successful_try,
            host.loss_ratio(len(self.probes) // len(self.hosts), settled=settled),
            len(self.probes),
            self.timing.max_retries,
            host.bonus_tries,
        )

    def wakeup(self, now: float) -> float | None:
        """The next absolute time something is due, or None when only replies can move us."""
        times: list[float] = []
        for probe in self._inflight:
            if probe.outstanding:
                times.append(probe.sent_at + self._timeout(self.hosts[probe.host]))
                break
        if self._any_limited:
            for probe in self._inflight:
                if probe.held_token:
                    times.append(probe.sent_at + self._hold(self.hosts[probe.host]))
        if (self._fresh or self._retry) and self.in_flight < self._window():
            times.append(self._next_send_time(now))
        return min(times) if times else None

    # -- sending

    def due(self, now: float) -> list[tuple[str, int, int]]:
        """Probes to send now as (address, port, try): retries first, then new ports."""
        out: list[tuple[str, int, int]] = []
        budget = self.rate.budget(self._window() - self.in_flight, now)
        cwnd = int(self.window.cwnd)
        deferred: list[Probe] = []
        witnesses = 0
        while budget > 0 and (self._retry or self._fresh):
            probe = self._retry.popleft() if self._retry else self._fresh.popleft()
            if probe.final:
                continue
            host = self.hosts[probe.host]
            if host.in_flight >= cwnd or not self._host_ready(host, probe, now):
                deferred.append(probe)
                if len(deferred) > 64:
                    break
                continue
            if probe.held_token:
                room = min(host.riders, budget - 1, cwnd - host.in_flight - 1)
                batch = self._batch_seq
                self._batch_seq += 1
                witness = host.witness  # (none pending: _host_ready waits for it)
                if witness is None:
                    riders = self._riders(probe, room, now)
                    members = [*riders, probe]
                else:
                    # silent ports first, unprobed (likelier closed) ones last, then the witness
                    riders = self._riders(probe, room, now, fresh=True)
                    members = sorted([probe, *riders], key=lambda p: p.tries == 0)
                for rank, rider in enumerate(members):
                    rider.batch, rider.rank, rider.paced = batch, rank, True
                    self._send(rider, host, now, out)
                budget -= len(members)
                if witness is None:
                    self._batch_holder[batch] = len(riders)
                else:
                    # a known-closed port last: it draws the error iff the bucket still had
                    # the token when it arrived, so the batch always tells what happened
                    self._batch_holder[batch] = len(members)
                    host.witness_batch, host.witness_sent = batch, now
                    host.witness_seq = self._send_seq
                    self._send_seq += 1
                    out.append((host.address, witness, 0))
                    witnesses += 1
                continue
            probe.batch = -1
            self._send(probe, host, now, out)
            budget -= 1
        self._retry.extendleft(reversed(deferred))
        self.in_flight += len(out) - witnesses  # (a witness's port is decided: not waited for)
        self.sent_packets += len(out)
        self.rate.spend(len(out), now)
        return out

    def _witness_pending(self, host: HostStats, now: float) -> bool:
        """Is the host's latest witness still awaiting its reply (within twice the hold)?"""
        if host.witness_batch >= 0 and now - host.witness_sent >= 2 * self._hold(host):
            host.witness_batch = -1
        return host.witness_batch >= 0

    def _send(
        self, probe: Probe, host: HostStats, now: float, out: list[tuple[str, int, int]]
    ) -> None:
        out.append((host.address, probe.port, probe.tries))
        if probe.tries:
            self.retransmissions += 1
        probe.tries += 1
        probe.sent_at = now
        probe.seq = self._send_seq
        self._send_seq += 1
        probe.outstanding = True
        host.last_send = now
        self._inflight.append(probe)
        host.in_flight += 1

    def _riders(self, holder: Probe, room: int, now: float, *, fresh: bool = False) -> list[Probe]:
        """Up to ``room`` other ports of ``holder``'s host to ride in its token batch: silent
        ones from the front of the retry queue, then (``fresh``) unprobed ones."""
        riders: list[Probe] = []
        for queue in (self._retry, self._fresh) if fresh else (self._retry,):
            keep: list[Probe] = []
            scanned = 0
            while queue and len(riders) < room and scanned < 256:
                p = queue.popleft()
                scanned += 1
                if p.final:
                    continue
                if p.host == holder.host and not p.outstanding and now >= p.not_before:
                    riders.append(p)
                else:
                    keep.append(p)
            queue.extendleft(reversed(keep))
        if len(self._batch_icmp) > 8192:  # forget batches long settled
            old = self._batch_seq - 4096
            self._batch_icmp = {b: r for b, r in self._batch_icmp.items() if b >= old}
            self._batch_given = {b for b in self._batch_given if b >= old}
            self._batch_holder = {b: r for b, r in self._batch_holder.items() if b >= old}
        return riders

    def _host_ready(self, host: HostStats, probe: Probe, now: float) -> bool:
        if now < probe.not_before:
            return False
        if self._delay and now - host.last_send < self._delay:
            return False
        probe.paced = False
        if self._any_limited and host.icmp.limited:
            if host.witness is not None and self._witness_pending(host, now):
                return False  # one token batch at a time: wait for its witness to tell
            if not host.icmp.take(now):
                return False
            probe.held_token = probe.paced = True
        return True

    def _next_send_time(self, now: float) -> float:
        t = self.rate.next_time(now)
        head = [q[0] for q in (self._retry, self._fresh) if q]
        best = math.inf
        for probe in head:
            host = self.hosts[probe.host]
            ready = host.last_send + self._delay if self._delay else now
            ready = max(ready, probe.not_before)
            if host.icmp.limited:
                ready = max(ready, host.icmp.ready_at(now))
                if host.witness_batch >= 0:
                    ready = max(ready, host.witness_sent + 2 * self._hold(host))
            best = min(best, ready)
        return max(t, best if head else now)

    # -- receiving

    def receive(
        self,
        address: str,
        port: int,
        tryno: int,
        reply: Reply,
        now: float,
        *,
        ttl: int | None = None,
        sender: str | None = None,
    ) -> bool:
        """Account a matched reply. ``tryno`` -1: the reply does not say which try it answers.

        Returns True when the reply changed the port's verdict.
        """
        hi = self._host_index.get(address)
        if hi is None:
            return False
        probe = self._index[hi].get(port)
        if probe is None or probe.final or probe.tries == 0 or tryno >= probe.tries:
            if probe is not None and probe.final and isinstance(reply, IcmpReply):
                self._witnessed(hi, port, reply)
            return False
        try:
            verdict = self._meaning[reply]
        except KeyError:
            verdict = self._meaning[reply] = rules.interpret(self.technique, reply)
        host = self.hosts[hi]
        icmp = isinstance(reply, IcmpReply)
        if isinstance(reply, IcmpReply) and reply.from_target and probe.batch >= 0:
            self._batch_error(host, probe.batch, probe.rank)
        if isinstance(reply, IcmpReply) and reply.type == 3 and reply.code == 3:
            if host.witness is None and self._pp.get(port, 1) == 1:
                host.witness = port
            host.icmp.on_unreachable(probe.seq, probe.sent_at, paced=probe.paced)
            probe.held_token = False  # the kernel spent the token we reserved, if we did
            if probe.gap is not None and probe.tries > probe.gap_try:
                host.icmp.on_confirmed_silence(probe.gap)  # that silence was the bucket's
                probe.gap = None
            if host.canary_ports and probe.port in host.canary_ports and not host.icmp.limited:
                self._limited_late(hi, now)
        if verdict is None:
            return False
        if probe.verdict is not None:  # (a port is final once answered: defensive)
            merged = rules.merge(self.technique, probe.verdict, verdict)
            changed = merged != probe.verdict
            probe.verdict = merged
            self._finish(probe)
            return changed
        reason_ip = sender if sender and sender != address else None
        self._answered(probe, host, verdict, tryno, now, ttl, reason_ip, icmp)
        self._maybe_settle()
        return True

    def _answered(
        self,
        probe: Probe,
        host: HostStats,
        verdict: Verdict,
        tryno: int,
        now: float,
        ttl: int | None,
        reason_ip: str | None,
        icmp: bool,
    ) -> None:
        """A port's first answer: its verdict, an RTT sample (Karn: only when the reply
        answers the latest try), retries earned, the loss signal, and one ack for the window
        (an ICMP error may speed the scan up only modestly: its cc_scale is capped at 1)."""
        probe.verdict = verdict
        probe.ttl = ttl
        probe.reason_ip = reason_ip
        answered_try = tryno if tryno >= 0 else probe.tries - 1
        if answered_try == probe.tries - 1:
            rtt = now - probe.sent_at
            probe.rtt = rtt
            est = host.rtt
            if self._unsampled:
                self._group.sample(rtt)
                fresh = est.srtt is None
                est.sample(rtt)
                if fresh and est.srtt is not None:
                    self._unsampled -= 1
            else:
                est.sample(rtt)
        if answered_try > host.max_successful_try and not host.icmp.limited:
            # (on a rate-limited host, the tries a port needed say how the pace met the
            # bucket, not how lossy the path is)
            host.max_successful_try = answered_try
            self._revive(host)
        if not host.icmp.limited:
            # tries lost on a rate-limited host are the bucket's doing, not the link's
            host.answered += 1
            host.lost_tries += answered_try
            self._losses.answered((answered_try,))
        if probe.outstanding:
            probe.outstanding = False
            self.in_flight -= 1
            host.in_flight -= 1
        window = self.window
        window.expected += 1
        window.ack(max_cc_scale=1.0 if icmp else CC_SCALE_MAX)
        # nmap stops probing a port once it has an answer
        self._finish(probe)

    def _revive(self, host: HostStats) -> None:
        """A higher max_successful_try: exhausted ports of ``host`` get their extra tries."""
        keep: list[Probe] = []
        allowed = self.allowed_tries(host)
        for probe in self._exhausted:
            if self.hosts[probe.host] is host and self._more_tries(probe, host, allowed):
                self._retry.append(probe)
            else:
                keep.append(probe)
        self._exhausted = keep

    # -- timers

    def _window(self) -> int:
        """Probes allowed out at once: cwnd per host (nmap keeps one per host and group)."""
        return max(1, int(self.window.cwnd)) * len(self.hosts)

    def _timeout(self, host: HostStats) -> float:
        return host.rtt.timeout if host.rtt.srtt is not None else self._group.timeout

    def _hold(self, host: HostStats) -> float:
        return hold(host.rtt.srtt, host.rtt.rttvar)

    def expire(self, now: float) -> None:
        """Time out probes whose wait is over; queue retransmissions or give up."""
        inflight = self._inflight
        if self._any_limited:
            for probe in inflight:
                host = self.hosts[probe.host]
                if probe.held_token and now - probe.sent_at >= self._hold(host):
                    self._silent_token(host, probe)
        while inflight:
            probe = inflight[0]
            if not probe.outstanding:
                inflight.popleft()
                continue
            host = self.hosts[probe.host]
            if now - probe.sent_at < self._timeout(host):
                break
            inflight.popleft()
            probe.outstanding = False
            self.in_flight -= 1
            host.in_flight -= 1
            self.window.expected += 1
            if probe.held_token:  # silent: the host did not spend the token
                self._silent_token(host, probe)
            self._on_silence(host, probe, now)
        self._maybe_settle()

    def _batch_error(self, host: HostStats, batch: int, rank: int) -> None:
        """An ICMP error from the member ``rank`` of token batch ``batch``."""
        first = self._batch_icmp.get(batch)
        if first is None:
            # the batch's first ICMP error: from its token holder or witness (every rider was
            # silent with a token there: ride more); from a rider (a closed one, the token put
            # to use: the riders after it only cost a packet each) with a witness, keep them;
            # without one, fewer (their silences are not proven)
            if rank == self._batch_holder.get(batch, -1):
                host.riders = min(RIDERS_MAX, max(1, 2 * host.riders))
            elif host.witness is None:
                host.riders //= 2
        if first is None or rank < first:
            self._batch_icmp[batch] = rank

    def _witnessed(self, hi: int, port: int, reply: IcmpReply) -> None:
        """An ICMP error to a port already decided: the witness of a token batch, if any."""
        host = self.hosts[hi]
        batch = host.witness_batch
        if port != host.witness or batch < 0 or not reply.from_target:
            return
        host.witness_batch = -1
        self._batch_error(host, batch, self._batch_holder.get(batch, 0))
        host.icmp.on_unreachable(host.witness_seq, host.witness_sent, paced=True)

    def _silent_token(self, host: HostStats, probe: Probe) -> None:
        """A probe that held a modelled token went silent. If a rider of its batch drew an
        ICMP error, the host spent the token there; otherwise it goes back when the pace
        allows (``IcmpBucket.give_back``), and the batch's silences are the ports' own."""
        probe.held_token = False
        if probe.batch in self._batch_icmp:
            return
        if host.witness is not None and self._batch_holder.get(probe.batch, 0) > probe.rank:
            # a witness batch that drew nothing, not even from the known-closed port: the
            # bucket was dry, the pace early (no token to give back)
            gap = host.icmp.gap(probe.sent_at)
            if gap is not None:
                host.icmp.on_confirmed_silence(gap, probe.sent_at)
            return
        if host.icmp.give_back(host.icmp.gap(probe.sent_at)):
            self._batch_given.add(probe.batch)

    def _spare(self, probe: Probe) -> None:
        """A silent try of a token batch: it counts only if the bucket had a token for it --
        proven when a later member of its batch drew the ICMP error, or its token went back."""
        first = self._batch_icmp.get(probe.batch)
        if first is not None:
            if first < probe.rank:
                if probe.spared < RIDER_SPARED_MAX:
                    probe.spared += 1  # the token went to a closed port before it
            else:
                probe.proven += 1  # silent with a token there: the port's own silence
        elif probe.batch in self._batch_given:
            probe.proven += 1
        elif probe.spared < RIDER_SPARED_MAX:
            probe.spared += 1  # no proof the bucket had a token: maybe the pace was early

    def _on_silence(self, host: HostStats, probe: Probe, now: float) -> None:
        if self._udp and not self.defeat_icmp_ratelimit:
            # (a try that arrived after its batch's token was spent says nothing of the interval)
            first = self._batch_icmp.get(probe.batch, probe.rank)
            gap = host.icmp.gap(probe.sent_at) if probe.batch < 0 or first >= probe.rank else None
            if gap is not None and (probe.gap is None or gap > probe.gap):
                probe.gap, probe.gap_try = gap, probe.tries
            if host.icmp.on_silence(probe.seq, now, probe.sent_at):
                self._any_limited = True
                self._fresh_tries(probe.host)
        if not host.icmp.limited:
            self._loss(probe, now)
        elif probe.batch >= 0:
            self._spare(probe)
        allowed = max(self.allowed_tries(host), self._pp.get(probe.port, 1))
        if self._more_tries(probe, host, allowed):
            self._retry.append(probe)
        else:
            self._exhausted.append(probe)

    @staticmethod
    def _more_tries(probe: Probe, host: HostStats, allowed: int) -> bool:
        """May ``probe`` be tried again? Tries spared don't count; on a limited host,
        silences proven the port's own are enough (the tries it spent before the limit was
        known, ``bonus_tries``, need no making up once proven)."""
        if host.icmp.limited and probe.proven >= allowed - host.bonus_tries:
            return False
        return probe.tries - probe.spared < allowed

    def _loss(self, probe: Probe, now: float) -> None:
        """A timeout: cut the window only when losses look like congestion (``LossSignal``).
        The cut is nmap's ``drop_group``, once per burst of losses (only for a probe sent
        after the previous cut)."""
        if self._losses.timed_out():
            self.window.drop_group(self.in_flight, probe.sent_at, now)

    def _limited_late(self, hi: int, now: float) -> None:
        """A canary drew a port-unreachable after a quiet second, where every earlier probe
        had drawn none: the host's ICMP bucket was empty when the scan began (another scan
        drained it). Pace to the bucket from here and give the silent ports fresh tries."""
        self.hosts[hi].icmp.limit(now)
        self._any_limited = True
        self._fresh_tries(hi)

    def _fresh_tries(self, hi: int) -> None:
        """Host ``hi`` turned out rate-limited: the tries its ports spent so far met a dry
        bucket, so they don't count (the exhausted ones go back in the queue)."""
        host = self.hosts[hi]
        host.bonus_tries = max(p.tries for p in self._index[hi].values())
        keep: list[Probe] = []
        for probe in self._exhausted:
            (self._retry if probe.host == hi else keep).append(probe)
        self._exhausted = keep

    def _queue_canaries(self) -> bool:
        """UDP: before calling a host's silent ports open|filtered, re-probe one of them once
        the host has been quiet for a full ICMP interval (nmap waits RLD_TIME_MS likewise).
        Silence alone can't tell a dry ICMP bucket from ports that never answer: a host whose
        bucket was empty when the scan began (another scan drained it), or one with fewer
        closed ports left than the evidence needs. A port-unreachable to the canary switches
        the host to paced probing (``_limited_late``); silence settles it."""
        if not self._udp or self.defeat_icmp_ratelimit:
            return False
        queued = False
        opened: set[int] = set()
        for i in range(len(self._exhausted) - 1, -1, -1):
            probe = self._exhausted[i]
            host = self.hosts[probe.host]
            if host.icmp.limited or probe.verdict is not None:
                continue
            if probe.host not in opened:
                rounds = CANARY_ROUNDS if host.icmp.seen else 1
                if host.canary_rounds >= rounds:
                    continue
                host.canary_ports = set()  # one round per host, queued in this call
                host.canary_rounds += 1
                opened.add(probe.host)
            elif host.canary_ports is None or len(host.canary_ports) >= CANARIES:
                continue
            host.canary_ports.add(probe.port)
            wait = 2 ** (host.canary_rounds - 1)
            probe.not_before = host.icmp.canary_time(host.last_send, wait)
            self._retry.append(self._exhausted.pop(i))
            queued = True
        return queued

    def _maybe_settle(self) -> None:
        """Nothing left to send or wait for: exhausted ports get their verdict (or more tries,
        when what was learnt since they ran out allows more)."""
        if self._fresh or self._retry or self.in_flight or not self._exhausted:
            return
        if self._queue_canaries():
            return
        exhausted, self._exhausted = self._exhausted, []
        for probe in exhausted:
            if probe.final:
                continue
            host = self.hosts[probe.host]
            allowed = max(self.allowed_tries(host, settled=True), self._pp.get(probe.port, 1))
            if self._more_tries(probe, host, allowed):
                self._retry.append(probe)
            else:
                self._finish(probe)

    def _finish(self, probe: Probe) -> None:
        if probe.final:
            return
        if probe.outstanding:
            probe.outstanding = False
            self.in_flight -= 1
            self.hosts[probe.host].in_flight -= 1
        if probe.verdict is None:
            probe.verdict = rules.no_response(
                self.technique, defeat_icmp_ratelimit=self.defeat_icmp_ratelimit
            )
        probe.final = True
        self.finished += 1

    # -- results

    def columns(self, *, last: bool = False) -> ResultColumns:
        """Every port with a verdict, column by column, sorted by (host address, port).
        (``last``: as ``BulkTcpSession.columns`` takes it; nothing to drop here.)"""
        return probe_columns(self.probes, [h.address for h in self.hosts], self.technique)

    def verdicts(self) -> list[PortVerdict]:
        """Every port with a verdict as ``PortVerdict`` rows, in ``columns()`` order."""
        return column_rows(self.columns())
