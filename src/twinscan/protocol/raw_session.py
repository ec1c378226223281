"""The native engine's scan session: pure state, time passed in (sans-IO).

The I/O loop (``twinscan.engines.raw``) drives one ``ScanSession``::

    sends = session.due(now)            # (host, port, try) to put on the wire now
    session.receive(host, port, try, reply, now, ...)   # every matched reply
    session.expire(now)                 # time out what waited too long
    session.wakeup()                    # when something will next be due (absolute)
    session.done / session.verdicts()

What it implements, after nmap's ultra_scan (scan_engine.cc, timing.cc):

* the probe plan: every (host, port), ports shuffled unless ``-r``, hosts interleaved;
* RTT estimation per host (Jacobson, timing.cc ``adjust_timeouts2``), clamped to the
  template's min/max RTT timeout, starting at its initial timeout;
* congestion control: a cwnd of outstanding probes, slow start then congestion avoidance
  scaled by nmap's ``cc_scale``; a drop cuts it -- but only when losses look like congestion.
  Random loss (a lossy link) is told apart from congestion by the *loss ratio*: the share of
  tries to ports that did answer which went unanswered. A steady ratio below the template's
  threshold (30%, 40% at -T4/-T5, nmap's boostScanDelay thresholds) is the link's own loss:
  it costs retries, not speed;
* adaptive retransmission: a port may be tried ``max(2, max_successful_try + 2)`` times
  (nmap's ``allowedTryno``), capped by ``--max-retries``, and at least as often as the
  measured loss ratio needs to make a false "no response" unlikely. Ports that ran out of
  tries are only given their no-response verdict at the end, so a later, higher
  ``max_successful_try`` still retries them;
* ``--min-rate``/``--max-rate`` (global packets per second), ``--scan-delay`` (per host);
* ICMP rate limiting (UDP): once a host's port-unreachables stop while probes go
  unanswered, the host's ICMP token bucket (Linux: a burst of 6, then one per second) is
  modelled and closed-candidate ports are re-probed exactly when the bucket has a token.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Sequence

from twinscan.core import rules
from twinscan.core.rules import IcmpReply, Reply, TcpReply, Verdict
from twinscan.core.schema import PortVerdict, category_code, host_sort_key
from twinscan.core.timing import CC_SCALE_MAX, INITIAL_CWND, INITIAL_SSTHRESH, MAX_CWND, Timing
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique

#: Linux's ICMP error rate limit per destination (net.ipv4.icmp_ratelimit, XRLIM_BURST_FACTOR).
ICMP_INTERVAL_S = 1.0
ICMP_BURST = 6
#: Send a rate-limited probe this long after the modelled token arrives (timer/jiffy slack).
ICMP_MARGIN_S = 0.02
#: How long a rate-limited probe holds its modelled token before a silence gives it back.
ICMP_HOLD_MIN_S = 0.02
#: Ports re-probed together after a quiet interval: the one token the bucket has by then goes to
#: the first closed one among them (a single canary could pick a port that never answers).
CANARIES = 3
#: Consecutive silences of probes sent after the latest answered one that mean a dry ICMP bucket.
LIMIT_EVIDENCE = 8
#: The chance we accept that a responsive port is called silent because every try was lost.
FALSE_SILENCE = 1e-4
#: How many recent tries and answers the congestion signal looks at.
_LOSS_WINDOW = 200


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


@dataclasses.dataclass(slots=True)
class HostStats:
    address: str
    srtt: float | None = None
    rttvar: float = 0.0
    timeout: float = 1.0
    max_successful_try: int = -1
    in_flight: int = 0
    last_send: float = -math.inf
    answered: int = 0  # ports that answered
    lost_tries: int = 0  # unanswered tries of ports that later answered
    # ICMP rate limiting (UDP)
    icmp_seen: int = 0
    limited: bool = False
    tokens: float = 0.0
    tokens_at: float = 0.0
    interval: float = ICMP_INTERVAL_S
    burst: int = ICMP_BURST
    #: the send order of the latest probe a port-unreachable answered, and how many probes
    #: sent after it have gone silent since: the evidence that the ICMP bucket ran dry
    answered_seq: int = -1
    limit_evidence: int = 0
    #: the ports re-probed after a quiet second, to find a bucket that silence alone can't show
    canary_ports: set[int] | None = None
    #: tries every port already spent before the limit was found late; they don't count
    bonus_tries: int = 0

    def loss_ratio(self) -> float:
        total = self.answered + self.lost_tries
        return self.lost_tries / total if total else 0.0


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
        self.hosts = [HostStats(a, timeout=timing.initial_rtt_timeout_ms / 1000) for a in targets]
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
        #: group-wide RTT estimate: the timeout of hosts that have not answered yet (nmap's
        #: group timing stats), so a silent host does not wait the initial timeout forever
        self._group = HostStats("*", timeout=timing.initial_rtt_timeout_ms / 1000)
        self.cwnd = float(min(INITIAL_CWND, timing.max_parallelism or MAX_CWND))
        self.max_cwnd = float(timing.max_parallelism or MAX_CWND)
        self.ssthresh = float(INITIAL_SSTHRESH)
        self._expected = 0  # replies expected / received, for nmap's cc_scale
        self._received = 0
        #: outcome of recently resolved tries (True: timed out), and of recent answers
        #: (True: it took a retransmission) -- the congestion signal
        self._recent_tries: deque[bool] = deque(maxlen=_LOSS_WINDOW)
        self._recent_retry_ok: deque[bool] = deque(maxlen=_LOSS_WINDOW)
        self._rate_tokens = 1.0
        self._rate_at = start
        self._start = start
        self._any_limited = False
        self._last_drop_cut = -math.inf
        self.sent_packets = 0
        self._send_seq = 0
        self.retransmissions = 0
        self._rtt_bounds = (timing.min_rtt_timeout_ms / 1000, timing.max_rtt_timeout_ms / 1000)

    # -- queries

    @property
    def done(self) -> bool:
        return self.finished == len(self.probes)

    def host_of(self, address: str) -> int | None:
        return self._host_index.get(address)

    def allowed_tries(self, host: HostStats) -> int:
        """How many times a port of ``host`` may be sent (1 + retransmissions)."""
        cap = self.timing.max_retries + 1 + host.bonus_tries
        tries = max(2, host.max_successful_try + 2) + host.bonus_tries
        p = host.loss_ratio()
        if p > 0:
            # enough tries that a responsive port stays silent with chance < FALSE_SILENCE
            pending = max(1, len(self.probes) - self.finished)
            need = math.ceil(math.log(FALSE_SILENCE / pending) / math.log(min(p, 0.9)))
            tries = max(tries, need)
        return min(tries, cap)

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
        budget = self._budget(now)
        deferred: list[Probe] = []
        while budget > 0 and (self._retry or self._fresh):
            probe = self._retry.popleft() if self._retry else self._fresh.popleft()
            if probe.final:
                continue
            host = self.hosts[probe.host]
            if host.in_flight >= int(self.cwnd) or not self._host_ready(host, probe, now):
                deferred.append(probe)
                if len(deferred) > 64:
                    break
                continue
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
            self.in_flight += 1
            host.in_flight += 1
            self._expected += 1
            n = 1
            self.sent_packets += n
            self._rate_tokens -= n
            budget -= n
        self._retry.extendleft(reversed(deferred))
        return out

    def _budget(self, now: float) -> int:
        """How many packets may go now: cwnd, then --max-rate, then --min-rate."""
        budget = self._window() - self.in_flight
        t = self.timing
        if t.max_rate is not None:
            cap = max(1.0, t.max_rate / 50)  # at most 20 ms worth of burst
            self._rate_tokens = min(cap, self._rate_tokens + (now - self._rate_at) * t.max_rate)
            self._rate_at = now
            budget = min(budget, int(self._rate_tokens))
        if t.min_rate is not None:
            owed = int(t.min_rate * (now - self._start)) - self.sent_packets
            budget = max(budget, owed)
            if t.max_rate is not None:
                budget = min(budget, int(self._rate_tokens))
        return budget

    def _host_ready(self, host: HostStats, probe: Probe, now: float) -> bool:
        if now < probe.not_before:
            return False
        delay = self.timing.scan_delay_ms / 1000
        if delay and now - host.last_send < delay:
            return False
        if host.limited:
            cost = 1
            self._refill(host, now)
            if host.tokens < cost:
                return False
            host.tokens -= cost
            probe.held_token = True
        return True

    def _next_send_time(self, now: float) -> float:
        t = now
        if self.timing.max_rate is not None and self._rate_tokens < 1:
            t = now + (1 - self._rate_tokens) / self.timing.max_rate
        delay = self.timing.scan_delay_ms / 1000
        head = [q[0] for q in (self._retry, self._fresh) if q]
        best = math.inf
        for probe in head:
            host = self.hosts[probe.host]
            ready = host.last_send + delay if delay else now
            ready = max(ready, probe.not_before)
            if host.limited:
                self._refill(host, now)
                cost = 1
                if host.tokens < cost:
                    ready = max(ready, now + (cost - host.tokens) * host.interval)
            best = min(best, ready)
        return max(t, best if head else now)

    def _refill(self, host: HostStats, now: float) -> None:
        if now > host.tokens_at:
            gained = (now - host.tokens_at) / host.interval
            host.tokens = min(float(host.burst), host.tokens + gained)
            host.tokens_at = now

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
            return False
        try:
            verdict = self._meaning[reply]
        except KeyError:
            verdict = self._meaning[reply] = rules.interpret(self.technique, reply)
        host = self.hosts[hi]
        if isinstance(reply, IcmpReply) and reply.type == 3 and reply.code == 3:
            host.icmp_seen += 1
            if probe.seq > host.answered_seq:
                host.answered_seq = probe.seq
            host.limit_evidence = 0
            if probe.held_token:
                probe.held_token = False  # the kernel spent the token we reserved
            if host.canary_ports and probe.port in host.canary_ports and not host.limited:
                self._limited_late(host, probe, now)
        if verdict is None:
            return False
        first = probe.verdict is None
        new = verdict if first else rules.merge(self.technique, probe.verdict, verdict)
        changed = first or new != probe.verdict
        probe.verdict = new
        if changed:
            probe.ttl = ttl
            probe.reason_ip = sender if sender and sender != address else None
        if first:
            answered_try = tryno if tryno >= 0 else probe.tries - 1
            if answered_try == probe.tries - 1:
                rtt = now - probe.sent_at
                probe.rtt = rtt
                self._rtt_sample(host, rtt)
                self._rtt_sample(self._group, rtt)
            if answered_try > host.max_successful_try:
                host.max_successful_try = answered_try
                self._revive(host)
            if not host.limited:
                # tries lost on a rate-limited host are the bucket's doing, not the link's
                host.answered += 1
                host.lost_tries += answered_try
                self._recent_tries.append(False)
                self._recent_retry_ok.append(answered_try > 0)
            if probe.outstanding:
                probe.outstanding = False
                self.in_flight -= 1
                host.in_flight -= 1
            self._received += 1
            self._ack(isinstance(reply, IcmpReply))
        # nmap stops probing a port once it has an answer
        self._finish(probe)
        self._maybe_settle()
        return changed

    def receive_tcp_batch(
        self, matched: Sequence[tuple[str, int, int, int, int, int]], now: float
    ) -> None:
        """``receive`` for many matched TCP replies (host, port, tryno, flags, window, ttl).

        The same bookkeeping as one ``receive`` per reply, with the common case -- a port's
        first answer, to its latest try -- inlined: a loopback ``-p-`` hands over 65535 RSTs.
        """
        replies: dict[tuple[int, int], TcpReply] = {}
        meaning = self._meaning
        host_index = self._host_index
        index = self._index
        hosts = self.hosts
        group = self._group
        sample_group = any(h.srtt is None for h in hosts)
        for address, port, tryno, flags, window, ttl in matched:
            reply = replies.get((flags, window))
            if reply is None:
                reply = replies[(flags, window)] = TcpReply(flags, window)
            hi = host_index.get(address)
            probe = index[hi].get(port) if hi is not None else None
            if probe is None or probe.final or probe.verdict is not None or probe.tries == 0:
                self.receive(address, port, tryno, reply, now, ttl=ttl, sender=address)
                continue
            if tryno >= probe.tries:
                continue
            try:
                verdict = meaning[reply]
            except KeyError:
                verdict = meaning[reply] = rules.interpret(self.technique, reply)
            if verdict is None:
                continue
            host = hosts[hi]  # type: ignore[index]
            probe.verdict = verdict
            probe.ttl = ttl
            answered_try = tryno if tryno >= 0 else probe.tries - 1
            if answered_try == probe.tries - 1:
                rtt = now - probe.sent_at
                probe.rtt = rtt
                self._rtt_sample(host, rtt)
                if sample_group:
                    self._rtt_sample(group, rtt)
                    sample_group = any(h.srtt is None for h in hosts)
            if answered_try > host.max_successful_try:
                host.max_successful_try = answered_try
                self._revive(host)
            if not host.limited:
                host.answered += 1
                host.lost_tries += answered_try
                self._recent_tries.append(False)
                self._recent_retry_ok.append(answered_try > 0)
            if probe.outstanding:
                probe.outstanding = False
                self.in_flight -= 1
                host.in_flight -= 1
            self._received += 1
            self._ack(False)
            self._finish(probe)
        self._maybe_settle()

    def _rtt_sample(self, host: HostStats, delta: float) -> None:
        """timing.cc adjust_timeouts2: Jacobson's estimator, clamped to the template."""
        if delta < 0 or delta >= 8.0:
            return
        if host.srtt is None:
            host.srtt = delta
            host.rttvar = 2.0 if delta > 2.0 else 0.005 if delta < 0.005 else delta
        else:
            if delta > 1.5 and delta > 3 * host.srtt + 2 * host.rttvar:
                return
            err = delta - host.srtt
            host.srtt += err / 8
            host.rttvar += (abs(err) - host.rttvar) / 4
            if host.rttvar > 2.3:
                host.rttvar = 2.0
        timeout = host.srtt + 4 * host.rttvar
        lo, hi = self._rtt_bounds
        host.timeout = hi if timeout > hi else lo if timeout < lo else timeout

    def _ack(self, icmp: bool) -> None:
        """timing.cc ultra_timing_vals::ack, with nmap's cc_scale."""
        scale = self._expected / (self._received or 1)
        if scale > CC_SCALE_MAX:
            scale = CC_SCALE_MAX
        if icmp and scale > 1.0:
            scale = 1.0  # ICMP errors may speed us up only modestly
        cwnd = self.cwnd
        cwnd += scale if cwnd < self.ssthresh else self.timing.ca_incr / cwnd * scale
        self.cwnd = cwnd if cwnd < self.max_cwnd else self.max_cwnd

    def _revive(self, host: HostStats) -> None:
        """A higher max_successful_try: exhausted ports of ``host`` get their extra tries."""
        keep: list[Probe] = []
        allowed = self.allowed_tries(host)
        for probe in self._exhausted:
            if self.hosts[probe.host] is host and probe.tries < allowed:
                self._retry.append(probe)
            else:
                keep.append(probe)
        self._exhausted = keep

    # -- timers

    def _window(self) -> int:
        """Probes allowed out at once: cwnd per host (nmap keeps one per host and group)."""
        return max(1, int(self.cwnd)) * len(self.hosts)

    def _timeout(self, host: HostStats) -> float:
        return host.timeout if host.srtt is not None else self._group.timeout

    def _hold(self, host: HostStats) -> float:
        return max(ICMP_HOLD_MIN_S, 3 * (host.srtt or 0.0) + 4 * host.rttvar)

    def expire(self, now: float) -> None:
        """Time out probes whose wait is over; queue retransmissions or give up."""
        inflight = self._inflight
        if self._any_limited:
            for probe in inflight:
                host = self.hosts[probe.host]
                if probe.held_token and now - probe.sent_at >= self._hold(host):
                    self._release(host, probe)
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
            if probe.held_token:
                self._release(host, probe)
            self._on_silence(host, probe, now)
        self._maybe_settle()

    def _release(self, host: HostStats, probe: Probe) -> None:
        """A silent probe did not make the host send an ICMP error: give its token back."""
        probe.held_token = False
        host.tokens = min(float(host.burst), host.tokens + 1)

    def _on_silence(self, host: HostStats, probe: Probe, now: float) -> None:
        if (
            self._udp
            and not host.limited
            and host.icmp_seen > 0
            and probe.seq > host.answered_seq
            and not self.defeat_icmp_ratelimit
        ):
            # A probe sent after the latest answered one went silent. Several in a row, with
            # no port-unreachable between them: the host's ICMP bucket ran dry. (Silence of
            # probes sent *before* an answered one is loss -- e.g. while the neighbour entry
            # was resolved -- not a limit; and random loss rarely strikes LIMIT_EVIDENCE
            # times in a row.)
            host.limit_evidence += 1
            if host.limit_evidence >= LIMIT_EVIDENCE:
                host.limited = True
                self._any_limited = True
                host.burst = max(1, min(ICMP_BURST, host.icmp_seen))
                host.tokens = -ICMP_MARGIN_S / host.interval
                host.tokens_at = now
        if not host.limited:
            self._drop(now, host)
        if probe.tries < max(self.allowed_tries(host), self._pp.get(probe.port, 1)):
            self._retry.append(probe)
        else:
            self._exhausted.append(probe)

    def _drop(self, now: float, host: HostStats) -> None:
        """A timeout: cut cwnd only when losses look like congestion (timing.cc drop).

        Congestion: many recent tries timed out (more than nmap's boostScanDelay share) *and*
        some ports answered only after a retransmission -- so responsive ports are losing
        probes, not just filtered ports staying silent. A lossy link's steady 10% stays below
        the threshold and costs retries only.
        """
        self._recent_tries.append(True)
        tries = self._recent_tries
        if len(tries) < 20 or not any(self._recent_retry_ok):
            return
        ratio = sum(tries) / len(tries)
        threshold = 0.4 if self.timing.level >= 4 else 0.3
        if ratio <= threshold or now - self._last_drop_cut < self._timeout(host):
            return
        self._last_drop_cut = now
        self.ssthresh = max(self.in_flight / self.timing.ssthresh_divisor, 2.0)
        self.cwnd = max(1.0, self.cwnd / 2)

    def _limited_late(self, host: HostStats, canary: Probe, now: float) -> None:
        """The canary drew a port-unreachable after a quiet second, where every earlier probe
        had drawn none: the host's ICMP bucket was empty when the scan began (another scan
        drained it). Pace to the bucket from here and give the silent ports fresh tries."""
        host.limited = True
        self._any_limited = True
        host.burst = ICMP_BURST
        host.tokens = -ICMP_MARGIN_S / host.interval
        host.tokens_at = now
        host.bonus_tries = max(p.tries for p in self._index[self.hosts.index(host)].values())
        keep: list[Probe] = []
        for probe in self._exhausted:
            (self._retry if self.hosts[probe.host] is host else keep).append(probe)
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
            if host.limited or probe.verdict is not None:
                continue
            if host.canary_ports is None:
                host.canary_ports = set()  # one round per host, queued in this call
                opened.add(probe.host)
            elif probe.host not in opened or len(host.canary_ports) >= CANARIES:
                continue
            host.canary_ports.add(probe.port)
            probe.not_before = host.last_send + host.interval + ICMP_MARGIN_S
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
            allowed = max(self.allowed_tries(self.hosts[probe.host]), self._pp.get(probe.port, 1))
            if probe.tries < allowed:
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

    def columns(self) -> VerdictColumns:
        """Every port with a verdict, column by column, sorted by (host address, port).

        What ``schema.frame_from_columns`` takes: no Python object per port beyond the values.
        """
        by_addr = sorted(range(len(self.hosts)), key=lambda i: host_sort_key(self._addr(i)))
        rank = {i: r for r, i in enumerate(by_addr)}
        done = [p for p in self.probes if p.verdict is not None]
        done.sort(key=lambda p: (rank[p.host] << 16) | p.port)
        codes = {
            v: (category_code("state", v.state.value), category_code("reason", v.reason.value))
            for v in {p.verdict for p in done}
            if v is not None
        }
        pairs = [codes[p.verdict] for p in done if p.verdict is not None]
        addrs = [h.address for h in self.hosts]
        return VerdictColumns(
            host=[addrs[p.host] for p in done],
            port=[p.port for p in done],
            state=[c[0] for c in pairs],
            reason=[c[1] for c in pairs],
            reason_ttl=[p.ttl for p in done],
            reason_ip=[p.reason_ip for p in done],
            rtt_ms=[None if p.rtt is None else round(p.rtt * 1000, 3) for p in done],
        )

    def _addr(self, host: int) -> str:
        return self.hosts[host].address

    def verdicts(self) -> list[PortVerdict]:
        """Every port with a verdict as ``PortVerdict`` rows, in ``columns()`` order."""
        proto = Proto.UDP if self._udp else Proto.TCP
        states = list(PortState)
        reasons = list(Reason)
        cols = self.columns()
        return [
            PortVerdict(
                engine=Engine.NATIVE,
                technique=self.technique,
                host=host,
                proto=proto,
                port=port,
                state=states[st],
                reason=reasons[rs],
                reason_ttl=ttl,
                reason_ip=rip,
                rtt_ms=rtt,
            )
            for host, port, st, rs, ttl, rip, rtt in zip(
                cols.host,
                cols.port,
                cols.state,
                cols.reason,
                cols.reason_ttl,
                cols.reason_ip,
                cols.rtt_ms,
                strict=True,
            )
        ]


@dataclasses.dataclass(slots=True)
class VerdictColumns:
    """A session's verdicts as parallel lists (state/reason as schema categorical codes)."""

    host: list[str]
    port: list[int]
    state: list[int]
    reason: list[int]
    reason_ttl: list[int | None]
    reason_ip: list[str | None]
    rtt_ms: list[float | None]


def merge_columns(parts: Sequence[VerdictColumns]) -> VerdictColumns:
    """Several sessions' columns as one, sorted by (host address, port) like ``columns()``."""
    if len(parts) == 1:
        return parts[0]
    import numpy as np

    joined = VerdictColumns([], [], [], [], [], [], [])
    names = [f.name for f in dataclasses.fields(VerdictColumns)]
    for part in parts:
        for name in names:
            getattr(joined, name).extend(getattr(part, name))
    rank = {h: r for r, h in enumerate(sorted(set(joined.host), key=host_sort_key))}
    key = np.array([rank[h] for h in joined.host], dtype=np.int64) << 16
    key |= np.asarray(joined.port, dtype=np.int64)
    order = np.argsort(key, kind="stable").tolist()
    return VerdictColumns(*([col[i] for i in order] for col in map(joined.__getattribute__, names)))
