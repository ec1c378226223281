"""The native raw-packet engine: SYN, FIN, Xmas, NULL, ACK, Window, Maimon and UDP scans.

The only module that opens raw sockets for these techniques. It holds the I/O loop around
the pure ``twinscan.protocol.raw_session.ScanSession``: probe bytes come from ``twinscan.protocol.packets`` and go
out on one long-lived ``IPPROTO_RAW`` socket (IP_HDRINCL); replies come back on raw
``IPPROTO_TCP``/``IPPROTO_UDP`` and ``IPPROTO_ICMP`` sockets, each with a classic BPF filter
attached in the kernel (only packets to our per-scan source port, and ICMP errors quoting
it) and a large receive buffer. Works on loopback and over veth links alike.

IPv6 (``-6``, IPv6 targets): the same design on ``AF_INET6`` sockets. Probes are whole IPv6
datagrams on an ``IPPROTO_RAW`` socket (Linux implies ``IPV6_HDRINCL`` there); replies come
on raw ``IPPROTO_TCP``/``IPPROTO_UDP`` and ``IPPROTO_ICMPV6`` sockets, which deliver them
without the IPv6 header: ``recvmsg`` gives the sender and, with ``IPV6_RECVHOPLIMIT``, the hop
limit, and ``twinscan.protocol.packets.parse_reply6`` reads the rest. TCP replies are read in
bulk as over IPv4 (``recvmmsg`` with each sender and hop limit, ``ProbeBuilder.match_tcp6``).
One scan is one family.

Over 400 lines: the socket setup, the probe-by-probe and bulk send and receive loops of both
families and the forked worker of large UDP scans drive one session (``ScanSession``, or
``BulkTcpSession`` for a TCP scan of ``BULK_MIN_PROBES`` or more); the filters and the
``mmsg`` batching are already out.

The filters are built in ``twinscan.engines.bpf``, the batched ``sendmmsg``/``recvmmsg`` of the
TCP techniques live in ``twinscan.engines.mmsg``; this module is the driver.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import random
import select
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Union

from twinscan import __version__
from twinscan.core import phases
from twinscan.core.errors import EnvironmentProblem, ScanFailed, UsageError
from twinscan.core.progress import NoProgress, Progress
from twinscan.core.schema import ResultColumns
from twinscan.core.vocab import Engine, Technique
from twinscan.engines import interrupt, stream
from twinscan.engines.bpf import (
    attach,
    bpf_dport_filter,
    bpf_dport_filter6,
    bpf_icmp6_filter,
    bpf_icmp_filter,
)
from twinscan.engines.mmsg import BatchReceiver, BatchSender
from twinscan.engines.template_cache import cached_template
from twinscan.protocol.packets import (
    MalformedReply,
    Parsed,
    ProbeBuilder,
    parse_reply,
    parse_reply6,
)
from twinscan.protocol.raw_session import ScanSession
from twinscan.protocol.wire import IPPROTO_ICMPV6, IPPROTO_UDP

if TYPE_CHECKING:
    from twinscan.core.schema import ScanResult
    from twinscan.protocol.bulk_session import BulkTcpSession
    from twinscan.request.model import ScanRequest

SO_RCVBUFFORCE = 33
RCVBUF = 32 * 1024 * 1024
_READ = 65535
_CMSG_HOPLIMIT = socket.CMSG_SPACE(4)
#: The session a raw scan runs: one ``Probe`` object per port, or columns for a large TCP scan.
Session = Union[ScanSession, "BulkTcpSession"]
#: A datagram as an ``AF_INET6`` raw socket gives it: (bytes, sender, protocol, hop limit).
Datagram6 = tuple[bytes, str, int, int]


# --- the network ---------------------------------------------------------------------------


class RawNetwork:
    """One raw send socket and the filtered raw receive sockets for one scan."""

    def __init__(self, technique: Technique, sport: int, *, v6: bool = False) -> None:
        proto = socket.IPPROTO_UDP if technique is Technique.UDP else socket.IPPROTO_TCP
        self._socks: list[socket.socket] = []
        self.v6 = v6
        self.family = socket.AF_INET6 if v6 else socket.AF_INET
        icmp = IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
        #: The protocol of each receive socket (what ``parse_reply6`` is told).
        self.recv_protos = (int(proto), icmp)
        try:
            self.send_sock = self._open(socket.IPPROTO_RAW)
            self.recv_socks = [self._open(proto), self._open(icmp)]
        except PermissionError:
            self.close()
            raise EnvironmentProblem(
                f"-s{technique.letter} needs raw sockets (root or CAP_NET_RAW); "
                "run as root or use -sT (connect scan)"
            ) from None
        if v6:
            attach(self.recv_socks[0], bpf_dport_filter6(sport))
            attach(self.recv_socks[1], bpf_icmp6_filter(sport))
            for s in self.recv_socks:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            attach(self.recv_socks[0], bpf_dport_filter(sport))
            attach(self.recv_socks[1], bpf_icmp_filter(sport))
        for s in self.recv_socks:
            s.setblocking(False)
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.send_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        self._poll = select.poll()
        for s in self.recv_socks:
            self._poll.register(s, select.POLLIN)

    def _open(self, proto: int) -> socket.socket:
        s = socket.socket(self.family, socket.SOCK_RAW, proto)
        self._socks.append(s)
        return s

    def send(self, packet: bytes, dst: str) -> bool:
        """Send one probe; False when the kernel refused it for now (buffer full, firewall)."""
        for attempt in range(3):
            try:
                self.send_sock.sendto(packet, (dst, 0))
                return True
            except OSError as exc:
                if exc.errno == errno.ENOBUFS and attempt < 2:
                    time.sleep(0.001)
                    continue
                if exc.errno in (errno.ENOBUFS, errno.EPERM, errno.EACCES):
                    return False
                if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                    return False
                raise ScanFailed(f"cannot send to {dst}: {exc.strerror}") from None
        return False

    def drain(self, budget: int = 100_000, *, icmp_only: bool = False) -> list[bytes]:
        """Everything the receive sockets hold right now (bounded by ``budget`` datagrams)."""
        out: list[bytes] = []
        for s in self.recv_socks[1:] if icmp_only else self.recv_socks:
            recv = s.recv
            try:
                while len(out) < budget:
                    out.append(recv(_READ))
            except BlockingIOError:
                pass
            except InterruptedError:
                pass
        return out

    def drain6(self, budget: int = 100_000, *, icmp_only: bool = False) -> list[Datagram6]:
        """``drain`` for IPv6: each datagram with its sender, protocol and hop limit."""
        out: list[Datagram6] = []
        first = 1 if icmp_only else 0
        for s, proto in zip(self.recv_socks[first:], self.recv_protos[first:], strict=True):
            recvmsg = s.recvmsg
            try:
                while len(out) < budget:
                    data, anc, _flags, addr = recvmsg(_READ, _CMSG_HOPLIMIT)
                    hlim = 0
                    for level, kind, value in anc:
                        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                            hlim = int.from_bytes(value[:4], "little")
                    out.append((data, addr[0].split("%", 1)[0], proto, hlim))
            except (BlockingIOError, InterruptedError):
                pass
        return out

    def wait(self, seconds: float) -> None:
        self._poll.poll(max(0, int(seconds * 1000)))

    def close(self) -> None:
        for s in self._socks:
            s.close()
        self._socks.clear()


def source_address(dst: str) -> str:
    """The local address the kernel would use towards ``dst`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((dst, 9))
        except OSError as exc:
            raise ScanFailed(f"no route to {dst}: {exc.strerror}") from None
        addr: str = s.getsockname()[0]
        return addr


def pick_source_port(rng: random.Random, avoid: Iterable[int]) -> int:
    """A random high source port, outside the scanned ports when possible."""
    avoid_set = set(avoid)
    for _ in range(64):
        port = rng.randrange(33000, 61000)
        if port not in avoid_set:
            return port
    return rng.randrange(33000, 61000)


# --- the scan ------------------------------------------------------------------------------


def scan(
    request: ScanRequest, technique: Technique, *, progress: Progress | None = None
) -> ScanResult:
    """Run one raw technique over the request's targets and ports."""
    progress = progress or NoProgress()
    if not technique.raw or technique is Technique.CONNECT:
        raise UsageError(f"the raw engine does not do {technique.value} scans")
    families = {":" in target for target in request.targets}
    if len(families) > 1:
        raise UsageError(
            "one raw scan is IPv4 or IPv6 (as nmap's -6): scan the two families in separate runs"
        )
    start = dt.datetime.now(dt.UTC)
    # Forked workers: a stop signal is passed on to them, and none may raise here while their
    # verdicts become the result (``twinscan.engines.interrupt``). In process, the loop catches it.
    forked = shard_count(request, technique) > 0
    with interrupt.deferred() if forked else contextlib.nullcontext():
        return _scan(request, technique, progress, start)


def _scan(
    request: ScanRequest, technique: Technique, progress: Progress, start: dt.datetime
) -> ScanResult:
    from twinscan.core.schema import ScanMeta, ScanResult

    cols, incomplete = _scan_columns(request, technique, progress)
    end = dt.datetime.now(dt.UTC)
    meta = ScanMeta(
        engine=Engine.NATIVE,
        start=start,
        end=end,
        arguments=" ".join(request.argv),
        engine_version=f"twinscan {__version__}",
        techniques=(technique,),
        incomplete=incomplete,
    )
    return ScanResult(columns=cols, meta=meta)


#: A UDP scan of at least this many probes runs in a forked worker while this process loads
#: the service names for the report.
FORK_MIN_PROBES = 4096
#: A TCP scan of at least this many probes runs on the columnar session
#: (``protocol.bulk_session``) and builds, sends and matches its probes in bulk (numpy,
#: ``sendmmsg``/``recvmmsg``), in this process; a smaller one sends and reads them one by one,
#: as UDP does, and never imports numpy: the import (~55 ms) costs more than the per-probe
#: Python saves below a few thousand probes (benchmarks/results, ``loopback-1k-syn``).
BULK_MIN_PROBES = 4096


def _scan_columns(
    request: ScanRequest, technique: Technique, progress: Progress
) -> tuple[ResultColumns, bool]:
    """``run`` the scan -- in a forked worker when it is a large UDP one -- and return its
    verdict columns."""
    if not shard_count(request, technique):
        session, incomplete = run(request, technique, progress=progress)
        return stream.columns_left(session), incomplete
    from twinscan.engines.forked import run_forked

    def work(part: ScanRequest, worker_progress: Progress) -> tuple[ResultColumns, bool]:
        session, incomplete = run(part, technique, progress=worker_progress)
        return stream.columns_left(session), incomplete

    probes = len(request.targets) * len(request.ports_for(technique))
    progress.start(f"{technique.value} scan", probes)
    try:
        ((cols, incomplete),) = run_forked(
            [request],
            work,
            progress=progress,
            stall_timeout_s=_worst_case_s(request, probes) + 30,
            meanwhile=None if stream.active() else _prefetch,  # streamed: a lean parent
        )
    finally:
        progress.finish()
    return cols, incomplete


def shard_count(request: ScanRequest, technique: Technique) -> int:
    """How many forked workers scan ``technique``: 1 for a large UDP scan, else 0 (this
    process).

    A large UDP scan (its per-probe session is Python objects) runs in a worker while this
    process loads the service names; it stays whole, as its ICMP pacing models each host's
    one token bucket. TCP scans run here: a large one on the columnar session, whose
    per-probe cost is numpy's, not Python's, so the kernel's send work is what is left and two
    workers would only double the memory (benchmarks/results, ``loopback-65k-syn``).
    """
    probes = len(request.targets) * len(request.ports_for(technique))
    if technique is not Technique.UDP or probes < FORK_MIN_PROBES:
        return 0
    return 1


def _prefetch() -> None:
    """What the parent loads while the worker scans: the service names for the report.

    Not pandas: a plain ``scan --csv`` writes from the columns and never needs it, and on two
    cores its import would only slow the workers down."""
    from twinscan.formats.text_report import service_names

    service_names()


def run(
    request: ScanRequest,
    technique: Technique,
    *,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Session, bool]:
    """The I/O loop. Returns the session and whether Ctrl-C cut it short."""
    ports = request.ports_for(technique)
    rng = random.Random(os.urandom(16))
    secret = os.urandom(16)
    sport = pick_source_port(rng, ports)
    payloads = None
    per_probe: dict[int, int] = {}
    if technique is Technique.UDP:
        from twinscan.protocol.udp_payloads import load_payloads

        payloads = load_payloads()
        per_probe = {p: len(payloads(p)) for p in ports}
    builders: dict[str, ProbeBuilder] = {}
    by_source: dict[str, ProbeBuilder] = {}
    for target in request.targets:
        src = source_address(target)
        if src not in by_source:
            by_source[src] = ProbeBuilder(
                technique,
                src,
                sport,
                secret,
                ip_id_base=rng.getrandbits(16),
                payloads=payloads,
                template=cached_template,
            )
        builders[target] = by_source[src]
    total = len(request.targets) * len(ports)
    bulk = technique is not Technique.UDP and total >= BULK_MIN_PROBES
    session: Session
    if bulk:
        from twinscan.engines.heap import unmap_large_frees
        from twinscan.protocol.bulk_session import BulkTcpSession

        unmap_large_frees()  # the session's arrays leave no resident pages once freed
        session = BulkTcpSession(
            technique,
            request.targets,
            ports,
            request.timing,
            randomize=request.randomize_ports,
            rng=rng,
            start=clock(),
        )
    else:
        session = ScanSession(
            technique,
            request.targets,
            ports,
            request.timing,
            randomize=request.randomize_ports,
            rng=rng,
            packets_per_probe=per_probe,
            defeat_icmp_ratelimit=request.defeat_icmp_ratelimit,
            start=clock(),
        )
    phases.mark(f"{technique.value}: probes planned")
    if session.done:
        return session, False
    v6 = bool(request.targets) and ":" in request.targets[0]
    net = RawNetwork(technique, sport, v6=v6)
    bulk_io = (
        None
        if isinstance(session, ScanSession)
        else _BulkIO(net, request.targets, builders, session)
    )
    progress.start(f"{technique.value} scan", session.total)
    reported = 0
    drain = stream.ProbeDrain(session, clock)  # verdicts leave as they become final
    phases.mark(f"{technique.value}: sockets open, probing starts")
    # (a streamed scan starts with the stop flag cleared, ``engines.streamed``: a flag set now
    # is a stop deferred during this scan; outside streaming a signal raises at once)
    streaming = stream.active()
    guard = clock() + _worst_case_s(request, session.total)
    try:
        while not session.done:
            if streaming:
                interrupt.check()  # a stop deferred while verdicts were being written
            now = clock()
            if now > guard:
                raise ScanFailed("the scan overran its worst-case duration; giving up")
            if bulk_io is not None:
                sent = bulk_io.send(now)
                bulk_io.receive(clock())
            else:
                assert isinstance(session, ScanSession)
                due = session.due(now)
                sent = len(due)
                for addr, port, tryno in due:
                    for packet in builders[addr].probes(addr, port, tryno):
                        net.send(packet, addr)
                if v6:
                    _handle6(net.drain6(), session, builders, clock())
                else:
                    _handle(net.drain(), session, builders, clock())
            session.expire(clock())
            progress.advance(session.finished - reported)  # 0 is a heartbeat
            reported = session.finished
            drain.poll()
            if session.done:
                break
            now = clock()
            wake = session.wakeup(now)
            pause = 0.2 if wake is None else min(0.2, wake - now)
            if pause > 0 or not sent:
                net.wait(max(pause, 0.0005))
    except KeyboardInterrupt:
        return session, True
    finally:
        phases.mark(f"{technique.value}: probing done")
        try:
            if bulk_io is not None:
                bulk_io.close()  # (its last rows out, its second thread ended)
        finally:
            net.close()
            drain.flush()
            progress.finish()
    return session, False


#: the smallest batch ``_BulkIO`` sends from two threads at once, given two CPUs
#: (``mmsg.BatchSender``): below it, waking the second thread costs more than it saves
SPLIT_MIN = 64


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


#: how many first tries ``_BulkIO`` builds at once (4096 probes of 40-60 bytes: ~200 KB)
FIRST_TRIES_CHUNK = 4096


class _BulkIO:
    """The bulk TCP path around a ``BulkTcpSession``: probes built with numpy from the
    session's arrays and sent with ``sendmmsg``; replies read with ``recvmmsg`` and matched
    with numpy; what the fast path does not read (ICMP errors, IP options) one by one."""

    def __init__(
        self,
        net: RawNetwork,
        targets: Sequence[str],
        builders: dict[str, ProbeBuilder],
        session: BulkTcpSession,
    ) -> None:
        import numpy as np

        self._np = np
        self._net = net
        self._targets = targets
        self._builders = builders
        self._session = session
        self._sender = BatchSender(
            net.send_sock, targets, split_min=SPLIT_MIN if _cpus() >= 2 else None
        )
        self._receiver = BatchReceiver(net.recv_socks[0], v6=net.v6)
        #: the targets of each source address's builder, as host numbers, and its host table
        groups: dict[int, list[int]] = {}
        for i, target in enumerate(targets):
            groups.setdefault(id(builders[target]), []).append(i)
        self._groups = [
            (builders[targets[members[0]]], np.asarray(members, dtype=np.int64))
            for members in groups.values()
        ]
        self._table = {
            id(b): b.host_table(targets) for b, _ in self._groups
        }  # (every target: row h is host h)
        self._matcher = builders[targets[0]]
        #: one target: its first tries, prebuilt FIRST_TRIES_CHUNK at a time in rank order
        #: (the first rank, the rows)
        self._order = session.port_order() if len(targets) == 1 else None
        self._first: tuple[int, Any] | None = None

    def send(self, now: float) -> int:
        hosts, ports, tries = self._session.due_arrays(now)
        n = len(hosts)
        if not n:
            return 0
        if len(self._groups) == 1:
            builder = self._groups[0][0]
            rows = self._first_tries(builder, ports, tries) if self._order is not None else None
            if rows is None:
                rows = builder.tcp_rows(self._table[id(builder)], hosts, ports, tries)
            self._sender.send(rows, hosts)
            return n
        for builder, members in self._groups:
            pick = self._np.isin(hosts, members)
            if pick.any():
                table = self._table[id(builder)]
                rows = builder.tcp_rows(table, hosts[pick], ports[pick], tries[pick])
                self._sender.send(rows, hosts[pick])
        return n

    def _first_tries(self, builder: ProbeBuilder, ports: Any, tries: Any) -> Any:
        """The rows of a batch of one target's first tries (None for any other batch).

        Those leave in rank order, a run of consecutive ranks per batch, and their bytes do
        not depend on when they leave: built a chunk at a time they cost one numpy pass per
        chunk instead of one per batch of a few hundred (a -p- scan: 265 passes -> 16). The
        rows are ``tcp_rows``' except the IP ID, which counts per chunk."""
        if tries.any():
            return None
        order = self._order
        assert order is not None
        start = self._session.probe_number(0, int(ports[0]))
        stop = start + len(ports)
        if start < 0 or stop > len(order) or int(order[stop - 1]) != int(ports[-1]):
            return None  # (not one run of ranks: built per batch)
        first = self._first
        if first is None or not first[0] <= start or stop > first[0] + len(first[1]):
            np = self._np
            end = min(len(order), start + max(FIRST_TRIES_CHUNK, stop - start))
            zeros = np.zeros(end - start, dtype=np.int64)
            table = self._table[id(builder)]
            first = self._first = (start, builder.tcp_rows(table, zeros, order[start:end], zeros))
        return first[1][start - first[0] : stop - first[0]]

    def close(self) -> None:
        """Before the sockets close: the last rows are out, the sender's second thread ends."""
        self._sender.close()

    def receive(self, now: float) -> None:
        session, receiver, net = self._session, self._receiver, self._net
        for _ in range(64):  # bounded: at most 64 full buffers per turn
            if net.v6:
                rows, lengths, senders, hlims = receiver.receive6()
                if len(rows):
                    cols = self._matcher.match_tcp6_arrays(
                        rows, lengths, senders, hlims, self._targets
                    )
                    session.receive_arrays(*cols, now=now)
            else:
                rows, lengths = receiver.receive()
                if len(rows):
                    cols, slow = self._matcher.match_tcp_arrays(rows, lengths, self._targets)
                    session.receive_arrays(*cols, now=now)
                    if len(slow):
                        datagrams = [bytes(rows[i, : lengths[i]]) for i in slow]
                        _handle(datagrams, session, self._builders, now)
            if len(rows) < receiver.capacity:
                break
        if net.v6:
            _handle6(net.drain6(icmp_only=True), session, self._builders, now)
        else:
            _handle(net.drain(icmp_only=True), session, self._builders, now)


def _handle(
    datagrams: list[bytes],
    session: Session,
    builders: dict[str, ProbeBuilder],
    now: float,
) -> None:
    parsed: list[Parsed] = []
    for data in datagrams:
        try:
            parsed.append(parse_reply(data))
        except MalformedReply:
            continue
    _deliver(parsed, session, builders, now)


def _handle6(
    datagrams: list[Datagram6],
    session: Session,
    builders: dict[str, ProbeBuilder],
    now: float,
) -> None:
    parsed: list[Parsed] = []
    for data, sender, proto, hlim in datagrams:
        try:
            parsed.append(parse_reply6(data, sender, proto, hlim))
        except MalformedReply:
            continue
    _deliver(parsed, session, builders, now)


def _deliver(
    replies: list[Parsed], session: Session, builders: dict[str, ProbeBuilder], now: float
) -> None:
    """Hand each parsed reply that answers one of our probes to the session (both families)."""
    for parsed in replies:
        builder = builders.get(parsed.host)
        if builder is None:
            continue
        tryno = builder.try_of(parsed)
        if tryno is None:
            continue
        if parsed.proto == IPPROTO_UDP and parsed.port == builder.sport and tryno == -1:
            continue  # our own datagram looped back to ourselves
        session.receive(
            parsed.host,
            parsed.port,
            tryno,
            parsed.reply,
            now,
            ttl=parsed.ttl,
            sender=parsed.sender,
        )


def _worst_case_s(request: ScanRequest, probes: int) -> float:
    """An upper bound on a scan's duration: every try of every probe waits the longest."""
    t = request.timing
    per_try = t.max_rtt_timeout_ms / 1000 + t.scan_delay_ms / 1000 + 1.0
    rate = t.max_rate or 1.0
    return 60 + probes * (t.max_retries + 1) * (per_try + 1 / rate)
