"""TCP connect scan (``-sT``): non-blocking ``connect()`` on many sockets at once, no privileges.

The I/O half only: ``connect_plan.ConnectPlan`` decides what to start and when a try has timed
out; this module opens the sockets, waits on epoll (``selectors`` elsewhere) and reports each
``connect()`` result back. Like nmap (``scan_engine_connect.cc`` ``init_socket``) every socket
gets ``SO_LINGER {on, 0}`` so closing an accepted connection sends a RST instead of leaving a
TIME_WAIT entry, which would exhaust source ports on a 65535-port scan; and a connection that
turns out to be connected to itself (loopback, source port == destination port) is retried.
"""

from __future__ import annotations

import _socket
import dataclasses
import datetime as dt
import errno
import functools
import ipaddress
import itertools
import os
import random
import resource
import select
import selectors
import socket
import struct
import time
from collections.abc import Callable

from twinscan.core.errors import ScanFailed
from twinscan.core.progress import Progress
from twinscan.core.rules import UnexpectedConnectError
from twinscan.core.schema import ScanResult
from twinscan.core.timing import Timing
from twinscan.core.vocab import Technique
from twinscan.engines import interrupt, stream
from twinscan.protocol.connect_plan import ConnectPlan, ProbeKey
from twinscan.request.model import ScanRequest

from .native_result import Row, build_result, row, rows_columns

_LINGER_RST = struct.pack("ii", 1, 0)
#: the C socket type: ``socket.socket`` adds a Python-level ``__init__``/``close`` per socket,
#: a measurable share of a 65535-port loopback scan. SOCK_NONBLOCK saves the setblocking call.
_new_socket = _socket.socket
_STREAM_NONBLOCK = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
#: descriptors kept free for stdio, output files and the selector itself.
_FD_RESERVE = 32
#: local failures that mean "this machine is out of something", not a verdict.
_LOCAL_SHORTAGE = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL, errno.EAGAIN}
)
#: consecutive local shortages before giving up (each one also shrinks the window).
_MAX_SHORTAGES = 10_000


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the descriptors a scan may use."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(soft - _FD_RESERVE, 4)


def probe_order(request: ScanRequest, technique: Technique, rng: random.Random) -> list[ProbeKey]:
    """Every (target, port), port order shuffled per target unless ``-r`` (as nmap does)."""
    ports = list(request.ports_for(technique))
    keys: list[ProbeKey] = []
    for host in request.targets:
        order = ports[:]
        if request.randomize_ports:
            rng.shuffle(order)
        keys.extend((host, p) for p in order)
    return keys


#: below this many probes one process is fast enough and forking is not worth it.
SHARD_MIN_PROBES = 4096

#: the shard's rows and whether it was interrupted.
ShardResult = tuple[list[Row], bool]


def scan(
    request: ScanRequest,
    technique: Technique,
    *,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    workers: int | None = None,
) -> ScanResult:
    """Connect-scan every (target, port) of ``request``; ``workers`` processes (default: one per
    CPU for large scans without a scan delay, see ``shard_count``)."""
    if technique is not Technique.CONNECT:
        raise ValueError(f"the connect engine cannot run a {technique} scan")
    started = dt.datetime.now(dt.UTC)
    keys = probe_order(request, technique, rng or random.Random())
    n = shard_count(request.timing, len(keys)) if workers is None else max(workers, 1)
    budget = raise_nofile_limit()
    if n == 1:
        progress.start("connect scan", len(keys))
        try:
            rows, incomplete = scan_shard(keys, request.timing, budget, clock, progress)
        finally:
            progress.finish()
        return build_result(request, technique, rows, started=started, incomplete=incomplete)
    from twinscan.engines.forked import run_forked

    # A stop signal is passed on to the workers, and none may raise here while their verdicts
    # become the result (``twinscan.engines.interrupt``).
    with interrupt.deferred():
        progress.start("connect scan", len(keys))
        try:
            timing = shard_timing(request.timing, n)
            parts = [keys[i::n] for i in range(n)]
            results = run_forked(
                parts,
                lambda part, prog: scan_shard(part, timing, budget // n, clock, prog),
                progress=progress,
                stall_timeout_s=max(60.0, 3 * request.timing.max_rtt_timeout_ms / 1000),
                meanwhile=None if stream.active() else _prefetch,
            )
        finally:
            progress.finish()
        rows = [r for shard, _ in results for r in shard]
        incomplete = any(flag for _, flag in results)
        return build_result(request, technique, rows, started=started, incomplete=incomplete)


def shard_count(timing: Timing, probes: int) -> int:
    """How many worker processes a connect scan uses: one per CPU (at most 4) for scans of at
    least ``SHARD_MIN_PROBES`` probes, one when probes must be serialised (scan delay, a
    parallelism of 1 as in -T0..-T2) or fork is unavailable."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (
        not hasattr(os, "fork")
        or probes < SHARD_MIN_PROBES
        or timing.scan_delay_ms > 0
        or (timing.max_parallelism is not None and timing.max_parallelism < 2)
    ):
        return 1
    return max(1, min(cpus or 1, 4))


def shard_timing(timing: Timing, shards: int) -> Timing:
    """Each shard gets an equal share of the global rate limits and parallelism cap."""
    changes: dict[str, object] = {}
    if timing.min_rate is not None:
        changes["min_rate"] = timing.min_rate / shards
    if timing.max_rate is not None:
        changes["max_rate"] = timing.max_rate / shards
    if timing.max_parallelism is not None:
        changes["max_parallelism"] = max(timing.max_parallelism // shards, 1)
    return dataclasses.replace(timing, **changes)  # type: ignore[arg-type]


def scan_shard(
    keys: list[ProbeKey],
    timing: Timing,
    max_sockets: int,
    clock: Callable[[], float],
    progress: Progress,
) -> ShardResult:
    """One process's share: plan and run it; a Ctrl-C ends it early with what is known."""
    plan = ConnectPlan(keys, timing, start=clock(), max_sockets=max_sockets)
    incomplete = False
    emitter = _OutcomeStream(plan, clock)
    try:
        run_plan(plan, clock=clock, progress=progress, emitter=emitter)
    except KeyboardInterrupt:
        incomplete = True
    if emitter.on:  # streamed: every verdict has left through ``stream.emit``
        emitter.flush()
        return [], incomplete
    return [row(h, p, o.verdict, o.rtt_ms) for (h, p), o in plan.outcomes.items()], incomplete


class _OutcomeStream:
    """Emits a plan's outcomes as they arrive (``stream.emit``, at most every
    ``stream.EMIT_INTERVAL_S``), when the scan streams its verdicts."""

    def __init__(self, plan: ConnectPlan, clock: Callable[[], float]) -> None:
        self.plan = plan
        self.clock = clock
        self.on = stream.active()
        self.sent = 0
        self.last = clock()

    def poll(self) -> None:
        if self.on and (
            len(self.plan.outcomes) - self.sent >= stream.EMIT_MAX_ROWS
            or self.clock() - self.last >= stream.EMIT_INTERVAL_S
        ):
            self.flush()
            interrupt.check()  # a stop deferred while the verdicts were being written

    def flush(self) -> None:
        self.last = self.clock()
        outcomes = self.plan.outcomes  # insertion order: each key is added once, when final
        if len(outcomes) == self.sent:
            return
        new = list(itertools.islice(outcomes.items(), self.sent, None))
        rows = [row(h, p, o.verdict, o.rtt_ms) for (h, p), o in new]
        stream.emit(rows_columns(Technique.CONNECT, rows))  # then count them (a repeat is harmless)
        self.sent += len(new)


def _prefetch() -> None:
    """While the workers scan, load nmap's service names for the report (cached for the rest
    of the process). Not pandas: ``scan --csv`` writes from the columns without it."""
    from twinscan.formats.text_report import service_names

    service_names()


@functools.lru_cache(maxsize=4096)
def _family(host: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def run_plan(
    plan: ConnectPlan,
    *,
    clock: Callable[[], float],
    progress: Progress,
    emitter: _OutcomeStream | None = None,
) -> None:
    """Drive ``plan`` to completion with real sockets. Every socket is closed on the way out."""
    poller = _Poller()
    by_fd: dict[int, tuple[ProbeKey, _socket.socket]] = {}
    fd_of: dict[ProbeKey, int] = {}
    shortages = 0
    reported = 0

    def finish(key: ProbeKey, sock: _socket.socket, err: int, now: float) -> None:
        if err == 0:
            # RST on close instead of a FIN handshake and TIME_WAIT (only a connected socket
            # can end in TIME_WAIT, so only it pays for the setsockopt).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        if err == 0 and _self_connected(sock):
            plan.retry(key)
        else:
            try:
                plan.completed(key, err, now)
            except UnexpectedConnectError as exc:
                raise ScanFailed(
                    f"connect() to {key[0]} port {key[1]} failed with {exc} -- bailing scan"
                ) from None
        sock.close()

    try:
        while not plan.done:
            now = clock()
            for key in plan.launches(now):
                host, port = key
                family = _family(host)
                try:
                    sock = _new_socket(family, _STREAM_NONBLOCK)
                except OSError as exc:
                    if exc.errno not in _LOCAL_SHORTAGE:
                        raise ScanFailed(f"cannot open a socket: {exc.strerror}") from None
                    shortages += 1
                    plan.postpone(key, sockets_in_use=len(by_fd))
                    continue
                err = sock.connect_ex(
                    (host, port) if family == socket.AF_INET else (host, port, 0, 0)
                )
                if err == errno.EINPROGRESS:
                    # On loopback the handshake (or the RST) has usually completed inside
                    # connect(): collect it now and skip three epoll calls per port.
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err == 0 and not _connected(sock):
                        err = errno.EINPROGRESS
                if err == errno.EINPROGRESS:
                    fd = sock.fileno()
                    by_fd[fd] = (key, sock)
                    fd_of[key] = fd
                    poller.register(fd)
                elif err in _LOCAL_SHORTAGE:
                    sock.close()
                    shortages += 1
                    plan.postpone(key, sockets_in_use=len(by_fd))
                else:
                    finish(key, sock, err, clock())
            if shortages > _MAX_SHORTAGES:
                raise ScanFailed(
                    "the machine keeps running out of sockets or source ports; "
                    "try a slower timing template (-T2) or --max-rate"
                )
            if plan.done:
                break
            wake = plan.next_wakeup(clock())
            timeout = 0.0 if wake is None else min(max(wake - clock(), 0.0), 1.0)
            ready = poller.poll(timeout) if by_fd else _sleep(timeout)
            now = clock()
            for fd in ready:
                key, sock = by_fd.pop(fd)
                del fd_of[key]
                poller.unregister(fd)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                finish(key, sock, err, now)
                shortages = 0
            for key in plan.expired(clock()):
                fd = fd_of.pop(key)
                _key, sock = by_fd.pop(fd)
                poller.unregister(fd)
                sock.close()
            progress.advance(len(plan.outcomes) - reported)  # 0 is a heartbeat
            reported = len(plan.outcomes)
            if emitter is not None:
                emitter.poll()
        progress.advance(len(plan.outcomes) - reported)
    finally:
        for _key, sock in by_fd.values():
            sock.close()
        poller.close()


class _Poller:
    """epoll where the platform has it, ``selectors`` otherwise; speaks file descriptors."""

    def __init__(self) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._sel = None if self._epoll is not None else selectors.DefaultSelector()

    def register(self, fd: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLOUT)
        else:
            assert self._sel is not None
            self._sel.register(fd, selectors.EVENT_WRITE)

    def unregister(self, fd: int) -> None:
        if self._epoll is not None:
            self._epoll.unregister(fd)
        else:
            assert self._sel is not None
            self._sel.unregister(fd)

    def poll(self, timeout: float) -> list[int]:
        if self._epoll is not None:
            return [fd for fd, _ev in self._epoll.poll(timeout)]
        assert self._sel is not None
        return [int(k.fd) for k, _ev in self._sel.select(timeout)]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        if self._sel is not None:
            self._sel.close()


def _sleep(seconds: float) -> list[int]:
    if seconds > 0:
        time.sleep(seconds)
    return []


def _connected(sock: _socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _self_connected(sock: _socket.socket) -> bool:
    try:
        return bool(sock.getsockname() == sock.getpeername())
    except OSError:
        return False
