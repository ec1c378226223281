"""The raw TCP scan session in columns: one numpy array per field instead of one object per probe.

``ScanSession`` (``raw_session``) keeps a ``Probe`` object per (host, port) and walks them one
by one. For a large TCP scan at loopback speed that bookkeeping, not the network, is the scan's
cost: creating 65535 objects, then per reply a lookup, a verdict, an RTT sample and a window
ack in Python (about 10 us a port, benchmarks/results ``loopback-65k-syn``). This session holds
the same state in arrays indexed by probe number and moves whole batches at once:

* a probe's number is ``rank * H + h``: ``rank`` its port's place in the (shuffled) port
  order, ``h`` its host -- hosts interleaved as nmap does; a port's rank comes from one
  65536-entry table, so a reply finds its probe with two array reads;
* ``due_arrays`` sends retries first, then each host's next fresh ports (a pointer per host
  into the shared port order), within the congestion window per host and for the scan, the
  rate limits and the scan delay;
* ``receive_arrays`` takes a batch of matched TCP replies (``ProbeBuilder.match_tcp_arrays``)
  and applies ``ScanSession``'s first-answer bookkeeping to all of them: verdict, Karn's RTT
  sample, retries earned (``max_successful_try``), the loss signal, the window's acks;
* ``expire`` walks the send log (probe numbers in send order) a chunk at a time and handles
  only the probes that timed out one by one (their retries and the congestion policy).

The pacing and the policy are ``ScanSession``'s, for the TCP techniques (the ICMP bucket
model, the canaries and token batches are UDP's, which stays on ``ScanSession``): the same
``pacing`` units, ``retry_budget``, the loss-ratio congestion cut, verdicts from
``rules``, no-response verdicts deferred to the end. ``tests/protocol/test_session.py``
drives both sessions through the same simulated networks and holds them to the same
verdicts; ``receive``, ``due`` and ``columns`` keep ``ScanSession``'s
interface for that and for the I/O loop's per-reply path (ICMP errors, odd datagrams).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from twinscan.core import rules
from twinscan.core.rules import IcmpReply, Reply, TcpReply, Verdict
from twinscan.core.schema import PortVerdict, ResultColumns, category_code, host_sort_key
from twinscan.core.timing import CC_SCALE_MAX, Timing
from twinscan.core.vocab import Engine, Technique

from .pacing import (
    MAX_SAMPLE_S,
    OUTLIER_JUMP_S,
    RTTVAR_RESET_ABOVE_S,
    CongestionWindow,
    RateLimiter,
    RttEstimator,
    retry_budget,
    sample_all,
)
from .raw_session import HostStats, LossSignal
from .session_columns import column_rows

__all__ = ["BulkTcpSession"]

#: Send-log entries ``expire`` and ``wakeup`` look at per step.
_CHUNK = 4096
#: Deferred retries (their host's window is full) looked past before ``due`` stops.
_DEFER_MAX = 64


class BulkTcpSession:
    """Pure state of one raw TCP technique's scan over ``targets`` x ``ports``, in arrays."""

    def __init__(
        self,
        technique: Technique,
        targets: Sequence[str],
        ports: Sequence[int],
        timing: Timing,
        *,
        randomize: bool = True,
        rng: random.Random | None = None,
        start: float = 0.0,
    ) -> None:
        if technique is Technique.UDP or not technique.raw or technique is Technique.CONNECT:
            raise ValueError(f"the columnar session scans raw TCP techniques, not {technique}")
        self.technique = technique
        self.timing = timing
        rng = rng or random.Random()
        #: the caller's port numbers as objects, in the caller's order (the result lists share
        #: them, not 65535 new ints), and the caller's index of each rank's port (None: the same)
        self._port_objects = np.empty(len(ports), dtype=object)
        self._port_objects[:] = list(ports)
        order = self._port_objects.astype(np.int64)
        self._shuffle: Any = None
        if randomize:  # sorted by random keys from ``rng``: 65535 ports in 2 ms, not 50
            # (64-bit keys do not tie, so the default sort gives the stable sort's order, 4x
            # faster; the objects are not permuted, ``_shuffle`` leads to them: 3.5 ms less)
            keys = np.frombuffer(rng.randbytes(8 * len(order)), dtype=np.uint64)
            self._shuffle = np.argsort(keys)
            order = order[self._shuffle]
        self.hosts = [HostStats(a, RttEstimator.for_timing(timing)) for a in targets]
        self._host_index = {a: i for i, a in enumerate(targets)}
        h, p = len(self.hosts), len(order)
        self._h = h
        self.total = h * p
        #: the port of each rank, and the rank of each port (-1: not scanned)
        self._order = order
        self._rank = np.full(65536, -1, dtype=np.int64)
        self._rank[self._order] = np.arange(p, dtype=np.int64)
        n = self.total
        self._tries = np.zeros(n, dtype=np.int64)
        self._sent_at = np.zeros(n, dtype=np.float64)
        self._outstanding = np.zeros(n, dtype=bool)
        self._final = np.zeros(n, dtype=bool)
        self._emitted = np.zeros(n, dtype=bool)
        self._verdict = np.full(n, -1, dtype=np.int16)  # index into ``_verdicts``
        self._ttl = np.full(n, -1, dtype=np.int16)
        self._rtt = np.full(n, math.nan, dtype=np.float64)
        self._reason_ip: dict[int, str] = {}
        self._verdicts: list[Verdict] = []
        self._verdict_code: dict[Verdict, int] = {}
        self._meaning: dict[int, int] = {}  # flags << 16 | window -> code, -1: none
        self._no_response = self._code(rules.no_response(technique))
        #: per host: the rank of its next fresh port
        self._next = [0] * h
        self._ports = p
        self._retry: deque[int] = deque()
        self._exhausted: list[int] = []
        #: probe numbers in send order (``expire``'s queue): ``_log[_head:_tail]``
        self._log = np.empty(max(1024, min(n, 1 << 20)), dtype=np.int64)
        self._head = self._tail = 0
        self.in_flight = 0
        self.finished = 0
        self._group = RttEstimator.for_timing(timing)
        self._unsampled = h
        self.window = CongestionWindow.for_timing(timing)
        self.rate = RateLimiter.for_timing(timing, start=start, per_host_delay=True)
        self._delay = timing.scan_delay_ms / 1000
        self._losses = LossSignal(timing)
        self.sent_packets = 0
        self.retransmissions = 0

    # -- queries

    @property
    def done(self) -> bool:
        return self.finished == self.total

    @property
    def cwnd(self) -> float:
        return self.window.cwnd

    def host_of(self, address: str) -> int | None:
        return self._host_index.get(address)

    def probe_number(self, host: int, port: int) -> int:
        """The probe of ``port`` on host number ``host``, -1 when the port is not scanned."""
        rank = int(self._rank[port]) if 0 <= port < 65536 else -1
        return -1 if rank < 0 else rank * self._h + host

    def port_order(self) -> Any:
        """The ports in the order their first tries go out: rank ``r``'s port is
        ``port_order()[r]``, and each host's fresh probes leave in rank order."""
        return self._order

    def allowed_tries(self, host: HostStats, *, settled: bool = False) -> int:
        """How many times a port of ``host`` may be sent (``pacing.retry_budget``); ``settled``
        as ``ScanSession.allowed_tries``."""
        return retry_budget(
            host.max_successful_try,
            host.loss_ratio(self._ports, settled=settled),
            self.total,
            self.timing.max_retries,
        )

    def wakeup(self, now: float) -> float | None:
        """The next absolute time something is due, or None when only replies can move us."""
        times: list[float] = []
        first = self._first_outstanding()
        if first >= 0:
            times.append(float(self._sent_at[first]) + self._timeout(self.hosts[first % self._h]))
        if self.in_flight < self._window() and self._sendable():
            times.append(self._next_send_time(now))
        return min(times) if times else None

    def _sendable(self) -> bool:
        """Is there a probe whose host's window has room (else only a reply or a timeout can
        move the scan: a silent host's full window must not make the loop spin)?"""
        cwnd = max(1, int(self.window.cwnd))
        room = [host.in_flight < cwnd for host in self.hosts]
        if any(r and nxt < self._ports for r, nxt in zip(room, self._next, strict=True)):
            return True
        for k, i in enumerate(self._retry):
            if room[i % self._h] or k >= 4 * _DEFER_MAX:
                return True
        return False

    # -- sending

    def due(self, now: float) -> list[tuple[str, int, int]]:
        """``due_arrays`` as ``ScanSession.due`` gives it: (address, port, try) tuples."""
        hosts, ports, tries = self.due_arrays(now)
        addrs = [h.address for h in self.hosts]
        return [
            (addrs[h], p, t)
            for h, p, t in zip(hosts.tolist(), ports.tolist(), tries.tolist(), strict=True)
        ]

    def due_arrays(self, now: float) -> tuple[Any, Any, Any]:
        """Probes to send now as arrays (host number, port, try): retries first, then each
        host's next fresh ports, hosts interleaved."""
        budget = self.rate.budget(self._window() - self.in_flight, now)
        cwnd = int(self.window.cwnd)
        caps = [self._cap(host, cwnd, now) for host in self.hosts]
        picked: list[int] = []
        if self._retry and budget > 0:
            deferred: list[int] = []
            retry, final, h = self._retry, self._final, self._h
            while budget > 0 and retry:
                i = retry.popleft()
                if final[i]:
                    continue
                if caps[i % h] <= 0:
                    deferred.append(i)
                    if len(deferred) > _DEFER_MAX:
                        break
                    continue
                caps[i % h] -= 1
                picked.append(i)
                budget -= 1
            retry.extendleft(reversed(deferred))
        parts = [np.asarray(picked, dtype=np.int64)] if picked else []
        if budget > 0:
            fresh = self._fresh(budget, caps)
            if fresh is not None:
                parts.append(fresh)
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        idx = parts[0] if len(parts) == 1 else np.concatenate(parts)
        tries = self._tries[idx]
        self.retransmissions += int(np.count_nonzero(tries))
        self._tries[idx] = tries + 1
        self._sent_at[idx] = now
        self._outstanding[idx] = True
        self._log_append(idx)
        n = len(idx)
        hosts = idx % self._h
        if self._h == 1:
            self.hosts[0].in_flight += n
            self.hosts[0].last_send = now
        else:
            for hi, count in enumerate(np.bincount(hosts, minlength=self._h).tolist()):
                if count:
                    self.hosts[hi].in_flight += count
                    self.hosts[hi].last_send = now
        self.in_flight += n
        self.sent_packets += n
        self.rate.spend(n, now)
        return hosts, self._order[idx // self._h], tries

    def _cap(self, host: HostStats, cwnd: int, now: float) -> int:
        """How many probes ``host`` may get now: its window's room (one with a scan delay)."""
        if self._delay:
            return 1 if now - host.last_send >= self._delay and host.in_flight < cwnd else 0
        return cwnd - host.in_flight

    def _fresh(self, budget: int, caps: list[int]) -> Any:
        """Up to ``budget`` fresh probes, each host within its cap, shared out evenly."""
        h = self._h
        take = [0] * h
        left = [self._ports - nxt for nxt in self._next]
        active = [i for i in range(h) if left[i] > 0 and caps[i] > 0]
        for _ in range(64):  # bounded: each round hands out at least one probe or stops
            if budget <= 0 or not active:
                break
            share = max(1, budget // len(active))
            still: list[int] = []
            for i in active:
                k = min(share, caps[i], left[i], budget)
                take[i] += k
                caps[i] -= k
                left[i] -= k
                budget -= k
                if caps[i] > 0 and left[i] > 0:
                    still.append(i)
            active = still
        parts = []
        for i in range(h):
            if take[i]:
                ranks = np.arange(self._next[i], self._next[i] + take[i], dtype=np.int64)
                parts.append(ranks * h + i)
                self._next[i] += take[i]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return np.sort(np.concatenate(parts))  # port by port, every host in turn

    def _log_append(self, idx: Any) -> None:
        n = len(idx)
        if self._tail + n > len(self._log):
            live = self._log[self._head : self._tail]
            size = len(self._log)
            while len(live) + n > size // 2:
                size *= 2
            log = np.empty(size, dtype=np.int64) if size != len(self._log) else self._log
            log[: len(live)] = live.copy()
            self._log = log
            self._head, self._tail = 0, len(live)
        self._log[self._tail : self._tail + n] = idx
        self._tail += n

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
        """Account one matched reply (``ScanSession.receive``; ``tryno`` -1: the reply does
        not say which try it answers). Returns True when it gave the port its verdict."""
        hi = self._host_index.get(address)
        if hi is None:
            return False
        i = self.probe_number(hi, port)
        if i < 0 or self._final[i]:
            return False
        tries = int(self._tries[i])
        if tries == 0 or tryno >= tries:
            return False
        code = self._code(rules.interpret(self.technique, reply))
        if code < 0:
            return False
        if sender and sender != address:
            self._reason_ip[i] = sender
        icmp = isinstance(reply, IcmpReply)
        self._answered(
            np.asarray([i]),
            np.asarray([code]),
            np.asarray([tryno if tryno >= 0 else tries - 1]),
            np.asarray([-1 if ttl is None else ttl]),
            now,
            max_cc_scale=1.0 if icmp else CC_SCALE_MAX,
        )
        self._maybe_settle()
        return True

    def receive_tcp_batch(
        self, matched: Sequence[tuple[str, int, int, int, int, int]], now: float
    ) -> None:
        """``receive_arrays`` of matched replies given as (host, port, tryno, flags, window,
        ttl) tuples, the host an address (``ProbeBuilder.match_tcp``'s form)."""
        if not matched:
            return
        known = [self._host_index.get(m[0], -1) for m in matched]
        cols = list(zip(*matched, strict=True))
        self.receive_arrays(
            np.asarray(known, dtype=np.int64), *(np.asarray(c) for c in cols[1:]), now=now
        )

    def receive_arrays(
        self, host: Any, port: Any, tryno: Any, flags: Any, window: Any, ttl: Any, *, now: float
    ) -> None:
        """Many matched TCP replies at once (host number, port, try -- -1 for one that does
        not say --, flags, window, ttl), in arrival order: each port's first answer counts."""
        host = np.asarray(host, dtype=np.int64)
        port = np.asarray(port, dtype=np.int64)
        if not len(port):
            return
        # (the matchers give hosts >= 0 and 16-bit ports: two reductions check it, instead of
        # masking every reply for a case that does not come from them)
        if host.min() >= 0 and port.min() >= 0 and port.max() < 65536:
            rank = self._rank[port]
            ok = rank >= 0
        else:
            ok = (host >= 0) & (port >= 0) & (port < 65536)
            rank = np.where(ok, self._rank[np.where(ok, port, 0)], -1)
            ok &= rank >= 0
        idx = rank * self._h + host
        safe = np.where(ok, idx, 0)
        tries = self._tries[safe]
        tryno = np.asarray(tryno, dtype=np.int64)
        ok &= ~self._final[safe] & (tries > 0) & (tryno < tries)
        keys = (np.asarray(flags, dtype=np.int64) << 16) | np.asarray(window, dtype=np.int64)
        lo, hi = int(keys.min()), int(keys.max())
        if lo == hi:  # one kind of reply in the batch, as usual: one lookup
            code = self._meaning_of(lo)
            if code < 0:
                return
        else:
            codes = np.full(len(keys), -1, dtype=np.int64)
            for key in _distinct(keys[ok]).tolist():
                codes[keys == key] = self._meaning_of(key)
            ok &= codes >= 0
        sel = np.flatnonzero(ok)
        if not len(sel):
            return
        idx = idx[sel]
        first = _first_of_each(idx)  # a port's first reply in the batch
        if len(first) < len(sel):
            sel = sel[np.sort(first)]
            idx = safe[sel]
        tries, tryno = tries[sel], tryno[sel]
        answered = np.where(tryno >= 0, tryno, tries - 1)
        verdicts = code if lo == hi else codes[sel]
        self._answered(idx, verdicts, answered, np.asarray(ttl, dtype=np.int64)[sel], now)
        self._maybe_settle()

    def _meaning_of(self, key: int) -> int:
        """The verdict code of a reply's (flags << 16 | window), -1: no verdict."""
        code = self._meaning.get(key)
        if code is None:
            reply = TcpReply(key >> 16, key & 0xFFFF)
            code = self._meaning[key] = self._code(rules.interpret(self.technique, reply))
        return code

    def _answered(
        self,
        idx: Any,
        codes: Any,
        answered_try: Any,
        ttl: Any,
        now: float,
        *,
        max_cc_scale: float = CC_SCALE_MAX,
    ) -> None:
        """Ports' first answers (``ScanSession._answered`` for a batch): verdicts, RTT samples
        (Karn: only replies to the latest try), retries earned, the loss signal, one ack each."""
        h = self._h
        self._verdict[idx] = codes
        self._ttl[idx] = ttl
        latest = answered_try == self._tries[idx] - 1
        sampled = idx[latest]
        rtts = now - self._sent_at[sampled]
        self._rtt[sampled] = rtts
        out = self._outstanding[idx]
        # per answering host: (host, ports answered, their lost tries, probes no longer out,
        # the highest answered try) -- one host's are sums, not per-host counts
        per_host: list[tuple[int, int, int, int, int]] = []
        if h == 1:
            self._sample(np.zeros(len(rtts), dtype=np.int64), rtts)
            if len(idx):
                per_host.append(
                    (
                        0,
                        len(idx),
                        int(answered_try.sum()),
                        int(np.count_nonzero(out)),
                        int(answered_try.max()),
                    )
                )
        else:
            hosts = idx % h
            self._sample(hosts[latest], rtts)
            most = np.full(h, -1, dtype=np.int64)
            np.maximum.at(most, hosts, answered_try)
            answered = np.bincount(hosts, minlength=h)
            lost = np.bincount(hosts, weights=answered_try, minlength=h)
            gone = np.bincount(hosts[out], minlength=h)
            per_host = [
                (hi, int(answered[hi]), int(lost[hi]), int(gone[hi]), int(most[hi]))
                for hi in np.flatnonzero(answered).tolist()
            ]
        best_try = 0
        for hi, n_answered, n_lost, n_gone, best in per_host:
            host = self.hosts[hi]
            host.answered += n_answered
            host.lost_tries += n_lost
            host.in_flight -= n_gone
            self.in_flight -= n_gone
            best_try = max(best_try, best)
            if best > host.max_successful_try:
                host.max_successful_try = best
                self._revive(hi)
        n = len(idx)
        if best_try > 0:
            self._losses.answered(answered_try.tolist())
        else:
            self._losses.answered_first(n)
        self._outstanding[idx] = False
        self.window.ack_many(n, max_cc_scale=max_cc_scale)
        self._final[idx] = True  # nmap stops probing a port once it has an answer
        self.finished += n

    def _sample(self, hosts: Any, rtts: Any) -> None:
        """RTT samples in arrival order: per host, and for the group while a host has none."""
        if not len(rtts):
            return
        if self._unsampled:
            for hi, delta in zip(hosts.tolist(), rtts.tolist(), strict=True):
                est = self.hosts[hi].rtt
                if self._unsampled:
                    self._group.sample(delta)
                fresh = est.srtt is None
                est.sample(delta)
                if fresh and est.srtt is not None:
                    self._unsampled -= 1
            return
        if self._h == 1:
            sample_many(self.hosts[0].rtt, rtts)
            return
        order = np.argsort(hosts, kind="stable")  # each host's samples, still in order
        cuts = np.flatnonzero(np.diff(hosts[order])) + 1
        for part in np.split(order, cuts):
            sample_many(self.hosts[int(hosts[part[0]])].rtt, rtts[part])

    def _revive(self, hi: int) -> None:
        """A higher max_successful_try: exhausted ports of host ``hi`` get their extra tries."""
        allowed = self.allowed_tries(self.hosts[hi])
        keep: list[int] = []
        for i in self._exhausted:
            if i % self._h == hi and self._tries[i] < allowed:
                self._retry.append(i)
            else:
                keep.append(i)
        self._exhausted = keep

    def _code(self, verdict: Verdict | None) -> int:
        if verdict is None:
            return -1
        code = self._verdict_code.get(verdict)
        if code is None:
            code = self._verdict_code[verdict] = len(self._verdicts)
            self._verdicts.append(verdict)
        return code

    # -- timers

    def _window(self) -> int:
        return max(1, int(self.window.cwnd)) * self._h

    def _timeout(self, host: HostStats) -> float:
        return host.rtt.timeout if host.rtt.srtt is not None else self._group.timeout

    def _first_outstanding(self) -> int:
        """The earliest-sent probe still waiting (-1: none); drops answered ones off the log."""
        for _ in range(1 << 20):  # bounded by the log's length
            if self._head >= self._tail:
                return -1
            chunk = self._log[self._head : min(self._tail, self._head + _CHUNK)]
            waiting = np.flatnonzero(self._outstanding[chunk])
            if len(waiting):
                self._head += int(waiting[0])
                return int(chunk[waiting[0]])
            self._head += len(chunk)
        return -1

    def expire(self, now: float) -> None:
        """Time out probes whose wait is over; queue retransmissions or give up."""
        timeouts = np.asarray([self._timeout(host) for host in self.hosts])
        for _ in range(1 << 20):  # bounded by the log's length
            if self._head >= self._tail:
                break
            chunk = self._log[self._head : min(self._tail, self._head + _CHUNK)]
            out = self._outstanding[chunk]
            waited = now - self._sent_at[chunk]
            pending = out & (waited < timeouts[chunk % self._h])
            stop = int(np.argmax(pending)) if pending.any() else len(chunk)
            for i in chunk[:stop][out[:stop]].tolist():
                self._expired(i, now)
            self._head += stop
            if stop < len(chunk):
                break
        self._maybe_settle()

    def _expired(self, i: int, now: float) -> None:
        host = self.hosts[i % self._h]
        self._outstanding[i] = False
        self.in_flight -= 1
        host.in_flight -= 1
        self.window.expected += 1
        if self._losses.timed_out():  # (the policy and the cut: ``ScanSession._loss``)
            self.window.drop_group(self.in_flight, float(self._sent_at[i]), now)
        if self._tries[i] < self.allowed_tries(host):
            self._retry.append(i)
        else:
            self._exhausted.append(i)

    def _has_work(self) -> bool:
        return bool(self._retry) or any(nxt < self._ports for nxt in self._next)

    def _next_send_time(self, now: float) -> float:
        t = self.rate.next_time(now)
        if self._delay:
            t = max(t, min(host.last_send for host in self.hosts) + self._delay)
        return t

    def _maybe_settle(self) -> None:
        """Nothing left to send or wait for: exhausted ports get their verdict (or more tries,
        when what was learnt since they ran out allows more)."""
        if self.in_flight or not self._exhausted or self._has_work():
            return
        exhausted, self._exhausted = self._exhausted, []
        for i in exhausted:
            if self._final[i]:
                continue
            if self._tries[i] < self.allowed_tries(self.hosts[i % self._h], settled=True):
                self._retry.append(i)
            else:
                self._verdict[i] = self._no_response
                self._final[i] = True
                self.finished += 1

    # -- results

    def columns(self, *, last: bool = False) -> ResultColumns:
        """Every port with a verdict, column by column, sorted by (host address, port).

        ``last``: the session's final act. Its per-probe arrays go as soon as the values
        are read, before the result lists are built: the two together were the peak of a
        -p- scan's memory. The session answers nothing after that."""
        return self._columns(np.flatnonzero(self._verdict >= 0), last=last)

    def verdicts(self) -> list[PortVerdict]:
        """Every port with a verdict as ``PortVerdict`` rows, in ``columns()`` order."""
        return column_rows(self.columns())

    def final_columns(self) -> ResultColumns:
        """The ports that became final since the last call (what a stream emits)."""
        new = np.flatnonzero(self._final & ~self._emitted)
        self._emitted[new] = True
        return self._columns(new)

    def _columns(self, idx: Any, *, last: bool = False) -> ResultColumns:
        h = self._h
        addrs = [host.address for host in self.hosts]
        ranks_of = idx // h
        ports = self._order[ranks_of]
        if h == 1:
            hosts = None
            if len(ports) >= _CHUNK:  # each port once: a table by port puts them in order
                place = np.full(65536, -1, dtype=np.int64)  # (an argsort of 65535: ~3 ms)
                place[ports] = np.arange(len(ports))
                order = place[place >= 0]
            else:
                order = np.argsort(ports, kind="stable")
        else:
            ranks = np.empty(h, dtype=np.int64)
            ranks[sorted(range(h), key=lambda i: host_sort_key(addrs[i]))] = np.arange(h)
            hosts = idx % h
            order = np.argsort((ranks[hosts] << 16) | ports, kind="stable")
            hosts = hosts[order]
        del ports
        idx, ranks_of = idx[order], ranks_of[order]
        del order
        verdicts = self._verdict[idx]
        # code tables by verdict number ([0]: none yet, for an empty ``idx``)
        table = self._verdicts
        state = np.array([category_code("state", v.state.value) for v in table] or [0], np.int8)
        reason = np.array([category_code("reason", v.reason.value) for v in table] or [0], np.int8)
        state, reason = state[verdicts], reason[verdicts]
        at = ranks_of if self._shuffle is None else self._shuffle[ranks_of]
        port_objects = self._port_objects[at]
        ttl = self._ttl[idx]
        rtt = np.round(self._rtt[idx] * 1000, 3)
        rips = self._reason_ip
        reason_ip = [rips.get(i) for i in idx.tolist()] if rips else None
        n = len(idx)
        del verdicts, ranks_of, idx
        if last:
            self._drop_probe_arrays()
        return ResultColumns(
            engine=Engine.NATIVE,
            technique=self.technique,
            proto=self.technique.proto,
            host=[addrs[0]] * n if hosts is None else _objects(addrs)[hosts].tolist(),
            port=port_objects.tolist(),
            state=state.tolist(),
            reason=reason.tolist(),
            reason_ttl=_with_none(ttl, ttl < 0),
            reason_ip=[None] * n if reason_ip is None else reason_ip,
            rtt_ms=_shared_floats(rtt),
        )

    def _drop_probe_arrays(self) -> None:
        for name in (
            "_tries", "_sent_at", "_outstanding", "_final", "_emitted", "_verdict", "_ttl",
            "_rtt", "_log", "_rank", "_order", "_port_objects", "_shuffle",
        ):  # fmt: skip
            setattr(self, name, None)


def _shared_floats(values: Any) -> list[float | None]:
    """``values.tolist()`` (float64, NaN: None) with one float object per distinct value (bit
    pattern: 0.0 and -0.0 stay apart): a scan's RTTs repeat (milliseconds to 3 decimals), so
    65535 of them are a few hundred objects, not 65535 (1.5 MiB)."""
    bits = values.view(np.int64)
    order = np.argsort(bits)  # (not stable: 5x faster, and any row of a value gives its value)
    ranked = bits[order]
    starts = np.empty(len(ranked), dtype=bool)
    starts[:1] = True
    np.not_equal(ranked[1:], ranked[:-1], out=starts[1:])
    inverse = np.empty(len(ranked), dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    firsts = order[starts]
    missing = np.isnan(values[firsts]).tolist()
    objects = [None if m else v for v, m in zip(values[firsts].tolist(), missing, strict=True)]
    return list(map(objects.__getitem__, inverse.tolist()))


def _distinct(values: Any) -> Any:
    """``np.unique(values)``, which imports numpy.ma on its first call (7 ms, 1.4 MiB)."""
    s = np.sort(values)
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else s


#: fewer samples than this go through ``sample_all``'s loop (the arrays' fixed cost is higher)
_MANY_SAMPLES = 32
#: the longest run summed at once by ``sample_many`` ((8/7)^1024 is about 1e59: no overflow)
_SAMPLE_CHUNK = 1024


def sample_many(est: RttEstimator, rtts: Any) -> None:
    """``pacing.sample_all(est, rtts)`` on an array, in closed form when nothing in it can take
    ``RttEstimator.sample``'s exceptions: a sampled estimator, every sample in [0, 8 s), and all
    of them and ``srtt`` within 1.5 s of each other (so no jump is an outlier, and ``rttvar``,
    a running mean of jumps below 1.5 s, cannot pass 2.3 s unless it already has). Then
    ``srtt`` and ``rttvar`` are the two exponential averages nmap's loop computes:
    ``srtt_k = 7/8 srtt_{k-1} + 1/8 d_k`` and ``rttvar_k = 3/4 rttvar_{k-1} + 1/4 |d_k -
    srtt_{k-1}|``, summed with weights instead of a Python step per reply (a -p- scan's 65535
    replies cost ~20 ms in the loop). The samples are non-negative, so the weighted sums have
    no cancellation: they agree with the loop to rounding (tests/protocol/test_bulk_helpers.py)."""
    n = len(rtts)
    srtt, rttvar = est.srtt, est.rttvar
    if n < _MANY_SAMPLES or srtt is None or rttvar > RTTVAR_RESET_ABOVE_S:
        sample_all(est, rtts.tolist())
        return
    lo, hi = float(rtts.min()), float(rtts.max())
    if lo < 0 or hi >= MAX_SAMPLE_S or max(hi, srtt) - min(lo, srtt) > OUTLIER_JUMP_S:
        sample_all(est, rtts.tolist())
        return
    grows, fades = _powers()
    for start in range(0, n, _SAMPLE_CHUNK):
        d = np.asarray(rtts[start : start + _SAMPLE_CHUNK], dtype=np.float64)
        k = len(d)
        grow = grows[:k]  # (8/7)^1..k: srtt_j = (7/8)^j (srtt + sum_i<=j d_i (8/7)^i / 8)
        after = (srtt + np.cumsum(d * grow) / 8) / grow
        before = np.empty(k)  # srtt_{j-1}: the value each sample's jump is measured from
        before[0] = srtt
        before[1:] = after[:-1]
        fade = fades[:k][::-1]  # (3/4)^(k-1)..0: rttvar_k = 3/4^k rttvar + sum 3/4^(k-j) |e_j|/4
        rttvar = float(0.75**k * rttvar + np.dot(fade, np.abs(d - before)) / 4)
        srtt = float(after[-1])
    est.srtt, est.rttvar = srtt, rttvar
    timeout = srtt + 4 * rttvar
    timeout = est.max_timeout if timeout > est.max_timeout else max(timeout, est.min_timeout)
    est.timeout = max(timeout, est.floor)


_POWERS: list[tuple[Any, Any]] = []


def _powers() -> tuple[Any, Any]:
    """``sample_many``'s weights for its longest run, made once (a batch takes a prefix: the
    same numbers as computing them per batch, two array powers a batch fewer)."""
    if not _POWERS:
        _POWERS.append(
            ((8 / 7) ** np.arange(1, _SAMPLE_CHUNK + 1), 0.75 ** np.arange(_SAMPLE_CHUNK))
        )
    return _POWERS[0]


def _first_of_each(values: Any) -> Any:
    """``np.unique(values, return_index=True)[1]``: the index of each value's first
    occurrence, ordered by value (without numpy.ma, as ``_distinct``)."""
    order = np.argsort(values, kind="stable")
    s = values[order]
    return order[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else order


def _objects(values: Sequence[Any]) -> Any:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _with_none(values: Any, missing: Any) -> list[Any]:
    """``values.tolist()`` with None where ``missing``."""
    if not missing.any():
        return list(values.tolist())
    out = values.astype(object)
    out[missing] = None
    return list(out.tolist())
