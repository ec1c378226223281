"""The sans-IO scan session driven by a fake network and a fake clock (no sockets, no root)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_icmp import KernelBucket
from twinscan.core import rules
from twinscan.core.rules import IcmpReply, Reply, TcpReply, UdpReply
from twinscan.core.schema import host_sort_key
from twinscan.core.timing import resolve
from twinscan.core.vocab import PortState, Reason, Technique
from twinscan.protocol.bulk_session import BulkTcpSession
from twinscan.protocol.raw_session import CANARIES, ScanSession

#: The TCP techniques' two sessions: one ``Probe`` per port, and the columnar one a large scan
#: runs on. Every TCP test below holds both to the same behaviour.
TCP_SESSIONS = pytest.mark.parametrize("Session", [ScanSession, BulkTcpSession])
AnySession = ScanSession | BulkTcpSession

SYNACK = TcpReply(rules.SYN | rules.ACK)
RST = TcpReply(rules.RST | rules.ACK)
ADMIN = IcmpReply(3, 13)
PORT_UNREACH = IcmpReply(3, 3)

Behaviour = Callable[[str, int, int, float], Reply | None]


@dataclass
class FakeNet:
    """Per-(host, port) behaviour; ``loss`` drops probes at random; ``rtt`` delays replies."""

    table: dict[int, Reply | None]
    default: Reply | None = RST
    rtt: float = 0.002
    loss: float = 0.0
    seed: int = 1
    bucket: KernelBucket | None = None
    sent: list[tuple[float, str, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def answer(self, host: str, port: int, now: float) -> Reply | None:
        if self.loss and self.rng.random() < self.loss:
            return None
        reply = self.table.get(port, self.default)
        if isinstance(reply, IcmpReply) and self.bucket and not self.bucket.allow(now):
            return None
        return reply


def drive(session: AnySession, net: FakeNet, *, limit_s: float = 600.0) -> float:
    """Run ``session`` to completion against ``net`` on a fake clock; return the elapsed time.

    A ``BulkTcpSession`` gets its TCP replies as the engine hands them over, a batch at a time
    (``receive_tcp_batch``), and the rest (ICMP errors) one by one."""
    now = 0.0
    events: list[tuple[float, int, str, int, int, Reply]] = []
    n = 0
    bulk = isinstance(session, BulkTcpSession)
    for _ in range(1_000_000):
        for host, port, tryno in session.due(now):
            net.sent.append((now, host, port, tryno))
            reply = net.answer(host, port, now)
            if reply is not None:
                n += 1
                heapq.heappush(events, (now + net.rtt, n, host, port, tryno, reply))
        batch: list[tuple[str, int, int, int, int, int]] = []
        while events and events[0][0] <= now:
            _, _, host, port, tryno, reply = heapq.heappop(events)
            if bulk and isinstance(reply, TcpReply):
                batch.append((host, port, tryno, reply.flags, reply.window, 64))
            else:
                session.receive(host, port, tryno, reply, now, ttl=64, sender=host)
        if batch:
            session.receive_tcp_batch(batch, now)
        session.expire(now)
        if session.done:
            return now
        wake = session.wakeup(now)
        candidates = [t for t in (wake, events[0][0] if events else None) if t is not None]
        assert candidates, "session stalled: nothing to wait for"
        now = max(now + 1e-6, min(candidates))
        assert now < limit_s, "fake scan ran past its time limit"
    raise AssertionError("too many steps")


def verdicts(session: AnySession) -> dict[tuple[str, int], tuple[PortState, Reason]]:
    return {(v.host, v.port): (v.state, v.reason) for v in session.verdicts()}


@TCP_SESSIONS
def test_behaviour_table_gives_nmaps_verdicts(Session: type[AnySession]) -> None:
    net = FakeNet({22: SYNACK, 23: RST, 24: None, 25: ADMIN})
    session = Session(Technique.SYN, ["198.18.0.2"], [22, 23, 24, 25], resolve(4))
    drive(session, net)
    got = verdicts(session)
    assert got == {
        ("198.18.0.2", 22): (PortState.OPEN, Reason.SYN_ACK),
        ("198.18.0.2", 23): (PortState.CLOSED, Reason.RESET),
        ("198.18.0.2", 24): (PortState.FILTERED, Reason.NO_RESPONSE),
        ("198.18.0.2", 25): (PortState.FILTERED, Reason.ADMIN_PROHIBITED),
    }
    # the dropped port got six tries: three of four ports answered at once, and three answers
    # cannot show a loss-free path (``pacing.loss_estimate``)
    assert [s[3] for s in net.sent if s[2] == 24] == list(range(6))
    assert [s[3] for s in net.sent if s[2] != 24] == [0, 0, 0]


@TCP_SESSIONS
def test_silence_means_open_filtered_for_fin(Session: type[AnySession]) -> None:
    net = FakeNet({80: None}, default=RST)
    session = Session(Technique.FIN, ["127.0.0.1"], [79, 80, 81], resolve(4))
    drive(session, net)
    got = verdicts(session)
    assert got[("127.0.0.1", 80)] == (PortState.OPEN_FILTERED, Reason.NO_RESPONSE)
    assert got[("127.0.0.1", 79)] == (PortState.CLOSED, Reason.RESET)


def test_port_order_is_random_unless_asked_not_to() -> None:
    ports = list(range(1, 201))
    ordered = ScanSession(Technique.SYN, ["h"], ports, resolve(3), randomize=False)
    assert [p.port for p in ordered.probes] == ports
    shuffled = ScanSession(Technique.SYN, ["h"], ports, resolve(3), rng=random.Random(3))
    assert sorted(p.port for p in shuffled.probes) == ports
    assert [p.port for p in shuffled.probes] != ports


@TCP_SESSIONS
def test_lost_probes_are_retransmitted_and_answered(Session: type[AnySession]) -> None:
    """10% random loss: every port still gets its real verdict (no false 'filtered')."""
    ports = list(range(1, 3001))
    table: dict[int, Reply | None] = {p: SYNACK for p in ports if p % 97 == 0}
    table.update({p: None for p in ports if p % 89 == 0})
    for seed in (1, 2):
        net = FakeNet(table, loss=0.10, seed=seed)
        session = Session(Technique.SYN, ["198.18.0.3"], ports, resolve(4), rng=random.Random(seed))
        elapsed = drive(session, net)
        got = verdicts(session)
        wrong = [
            p
            for p in ports
            if got[("198.18.0.3", p)][0] != rules.classify(Technique.SYN, table.get(p, RST)).state
        ]
        assert wrong == []
        # random loss costs retries, not a crawl: cwnd never collapsed to a trickle
        assert elapsed < 5.0, elapsed


@pytest.mark.parametrize(
    ("technique", "closed"), [(Technique.SYN, RST), (Technique.UDP, PORT_UNREACH)], ids=str
)
def test_a_small_scan_of_a_lossy_host_is_right_however_its_first_tries_went(
    technique: Technique, closed: Reply
) -> None:
    """Ten closed ports at 10% loss (the CI failure of a lab UDP scan): when all nine others
    answered their first try, the port that lost two tries in a row was called silent, about
    one scan in twenty-five. Ten samples cannot show a clean path, so it gets more tries."""
    ports = list(range(150, 160))
    wrong = 0
    for seed in range(300):
        net = FakeNet({}, default=closed, loss=0.10, seed=seed)
        session = ScanSession(
            technique, ["198.18.0.12"], ports, resolve(4), rng=random.Random(seed)
        )
        drive(session, net)
        wrong += sum(state is not PortState.CLOSED for state, _ in verdicts(session).values())
    assert wrong == 0


def test_a_mostly_silent_host_keeps_nmaps_two_tries() -> None:
    """One port of forty answers: silence is the norm there, and each extra try would be paid
    by all the filtered ports -- nmap's allowedTryno (two tries) stands."""
    net = FakeNet({}, default=None)
    net.table[7] = RST
    session = ScanSession(Technique.SYN, ["198.18.0.2"], list(range(1, 41)), resolve(4))
    drive(session, net)
    assert len(net.sent) == 1 + 39 * 2


@TCP_SESSIONS
def test_congestion_cuts_the_window(Session: type[AnySession]) -> None:
    """A bottleneck (30 probes per 10 ms, the rest dropped): loss that grows with the
    sending rate is congestion, so the window shrinks -- and every port is still right."""
    session = Session(Technique.SYN, ["h"], list(range(1, 2001)), resolve(4))

    class Bottleneck(FakeNet):
        def answer(self, host: str, port: int, now: float) -> Reply | None:
            tick = int(now * 100)
            recent = sum(1 for s in self.sent[-200:] if int(s[0] * 100) == tick)
            return None if recent > 30 else RST

    net = Bottleneck({})
    drive(session, net)
    assert all(v[0] is PortState.CLOSED for v in verdicts(session).values())
    assert session.cwnd < 150
    assert session.retransmissions < 2000


@TCP_SESSIONS
def test_max_rate_is_respected(Session: type[AnySession]) -> None:
    net = FakeNet({})
    session = Session(Technique.SYN, ["h"], list(range(1, 201)), resolve(5, max_rate=100))
    elapsed = drive(session, net)
    assert elapsed >= 1.9  # 200 probes at 100/s
    times = [s[0] for s in net.sent]
    for i in range(len(times) - 10):
        assert times[i + 10] - times[i] >= 0.08  # no burst beyond the 20 ms bucket


@TCP_SESSIONS
def test_scan_delay_spaces_probes_to_a_host(Session: type[AnySession]) -> None:
    net = FakeNet({})
    session = Session(Technique.SYN, ["h"], list(range(1, 11)), resolve(4, scan_delay_ms=50))
    drive(session, net)
    times = [s[0] for s in net.sent]
    assert all(b - a >= 0.05 - 1e-9 for a, b in zip(times, times[1:], strict=False))


@TCP_SESSIONS
def test_adaptive_retries_follow_successful_retransmissions(Session: type[AnySession]) -> None:
    """A port answered on its 2nd try raises the cap (nmap's allowedTryno): a port that
    needs 3 tries gets them, and a silent port is tried more than twice."""

    class Stubborn(FakeNet):
        def answer(self, host: str, port: int, now: float) -> Reply | None:
            tries = sum(1 for s in self.sent if s[2] == port)
            need = {6: 2, 7: 3}.get(port, 1)
            return None if port == 9 or tries < need else RST

    net = Stubborn({})
    session = Session(Technique.SYN, ["h"], [5, 6, 7, 8, 9], resolve(4), randomize=False)
    drive(session, net)
    assert verdicts(session)[("h", 7)][0] is PortState.CLOSED
    assert verdicts(session)[("h", 9)][0] is PortState.FILTERED
    assert sum(1 for s in net.sent if s[2] == 9) >= 3
    assert sum(1 for s in net.sent if s[2] == 9) <= resolve(4).max_retries + 1


def test_max_retries_caps_tries() -> None:
    net = FakeNet({}, default=None)
    session = ScanSession(Technique.SYN, ["h"], [1, 2], resolve(4, max_retries=0))
    drive(session, net)
    assert len(net.sent) == 2


@pytest.mark.parametrize("closed", [20, 40])
def test_udp_paces_to_the_icmp_rate_limit(closed: int) -> None:
    """Closed UDP ports behind a 6-burst, 1/s ICMP limiter all come out closed, at the
    bucket's pace: within 1.5x the (N - 6) seconds the limiter itself imposes (the interval is
    measured, not assumed: a few probes go early while the pace closes in on it)."""
    table: dict[int, Reply | None] = {1000: UdpReply(), 1001: None, 1002: None}
    ports = [1000, 1001, 1002, *range(2000, 2000 + closed)]
    net = FakeNet(table, default=PORT_UNREACH, rtt=0.0005, bucket=KernelBucket())
    session = ScanSession(Technique.UDP, ["198.18.0.9"], ports, resolve(4))
    elapsed = drive(session, net)
    got = verdicts(session)
    assert got[("198.18.0.9", 1000)][0] is PortState.OPEN
    assert got[("198.18.0.9", 1001)][0] is PortState.OPEN_FILTERED
    assert all(got[("198.18.0.9", p)][0] is PortState.CLOSED for p in range(2000, 2000 + closed))
    floor = closed - 6
    assert floor - 1 <= elapsed <= 1.5 * floor, elapsed


@pytest.mark.parametrize("tokens_at_start", [0.0, 0.5])
def test_udp_finds_a_bucket_drained_before_the_scan(tokens_at_start: float) -> None:
    """Another scan just emptied the host's ICMP bucket: no port-unreachable comes back at
    first. A canary after a quiet second reveals the limit and the closed ports still come
    out closed, at the bucket's pace (N closed ports: about N seconds)."""
    closed = list(range(3000, 3009))
    table: dict[int, Reply | None] = {53: UdpReply(), 9: None}
    bucket = KernelBucket(tokens=tokens_at_start)
    net = FakeNet(table, default=PORT_UNREACH, rtt=0.0005, bucket=bucket)
    session = ScanSession(Technique.UDP, ["198.18.0.13"], [53, 9, *closed], resolve(4))
    elapsed = drive(session, net)
    got = verdicts(session)
    assert all(got[("198.18.0.13", p)] == (PortState.CLOSED, Reason.PORT_UNREACH) for p in closed)
    assert got[("198.18.0.13", 9)] == (PortState.OPEN_FILTERED, Reason.NO_RESPONSE)
    assert got[("198.18.0.13", 53)][0] is PortState.OPEN
    assert len(closed) - 1 <= elapsed <= 1.5 * (len(closed) + 2), elapsed


def test_silent_udp_host_costs_one_canary_second_only() -> None:
    """A host that never answers (all open|filtered) pays one quiet interval for the canary."""
    ports = list(range(1, 51))
    net = FakeNet({}, default=None, bucket=KernelBucket())
    session = ScanSession(Technique.UDP, ["198.18.0.99"], ports, resolve(4))
    elapsed = drive(session, net)
    assert {v[0] for v in verdicts(session).values()} == {PortState.OPEN_FILTERED}
    canaries = [t for t, _, _, tryno in net.sent if tryno >= 2]
    assert len(canaries) == CANARIES and len(set(canaries)) == 1  # one round, sent together
    # the same scan without waiting for ICMP at all (--defeat-icmp-ratelimit) has no canary
    baseline = ScanSession(
        Technique.UDP, ["198.18.0.99"], ports, resolve(4), defeat_icmp_ratelimit=True
    )
    base_elapsed = drive(baseline, FakeNet({}, default=None, bucket=KernelBucket()))
    assert 1.0 <= elapsed - base_elapsed <= 1.6, (elapsed, base_elapsed)


@pytest.mark.parametrize("loss", [0.1, 0.2])
def test_udp_loss_is_not_mistaken_for_an_icmp_limit(loss: float) -> None:
    """Random loss on a host that is not rate-limited costs retries, not one probe a second."""
    ports = list(range(1, 3001))
    net = FakeNet({53: UdpReply()}, default=PORT_UNREACH, rtt=0.0005, loss=loss, seed=3)
    session = ScanSession(Technique.UDP, ["198.18.0.12"], ports, resolve(4))
    elapsed = drive(session, net)
    got = verdicts(session)
    closed = sum(1 for p in ports if got[("198.18.0.12", p)][0] is PortState.CLOSED)
    # at 20% a port may still lose all of T4's 7 tries (0.2**7 per port): that's the cap's cost
    assert closed >= len(ports) - 1 - (3 if loss > 0.1 else 0)
    assert not session.hosts[0].limited
    assert elapsed < 15, elapsed  # paced at 1/s it would take 3000 s


def test_udp_early_drop_while_resolving_the_neighbour_is_not_a_limit() -> None:
    """The first probes vanish (the kernel holds only a few while it resolves the neighbour);
    everything sent later is answered: no rate limit, the lost ones are simply retried."""

    class Arp(FakeNet):
        def answer(self, host: str, port: int, now: float) -> Reply | None:
            if now < 0.001 and len([s for s in self.sent if s[0] < 0.001]) > 3:
                return None
            return super().answer(host, port, now)

    ports = list(range(1, 2001))
    net = Arp({}, default=PORT_UNREACH, rtt=0.0005)
    session = ScanSession(Technique.UDP, ["198.18.0.10"], ports, resolve(4))
    elapsed = drive(session, net)
    assert all(v[0] is PortState.CLOSED for v in verdicts(session).values())
    assert not session.hosts[0].limited
    assert elapsed < 10, elapsed


def test_defeat_icmp_ratelimit_gives_closed_filtered() -> None:
    net = FakeNet({}, default=None)
    session = ScanSession(Technique.UDP, ["h"], [1, 2], resolve(4), defeat_icmp_ratelimit=True)
    drive(session, net)
    assert {v[0] for v in verdicts(session).values()} == {PortState.CLOSED_FILTERED}


@TCP_SESSIONS
def test_stray_and_late_replies_change_nothing(Session: type[AnySession]) -> None:
    session = Session(Technique.SYN, ["h"], [1], resolve(4))
    # a reply before anything was sent, for an unknown host, for an unknown port
    assert not session.receive("h", 1, 0, SYNACK, 0.0)
    session.due(0.0)
    assert not session.receive("other", 1, 0, SYNACK, 0.001)
    assert not session.receive("h", 2, 0, SYNACK, 0.001)
    # a try number we never sent
    assert not session.receive("h", 1, 5, SYNACK, 0.001)
    assert session.receive("h", 1, 0, RST, 0.001)
    assert session.done


@TCP_SESSIONS
def test_rtt_estimate_follows_jacobson(Session: type[AnySession]) -> None:
    session = Session(Technique.SYN, ["h"], list(range(1, 50)), resolve(3))
    host = session.hosts[0]
    assert host.rtt.timeout == 1.0  # T3 initial RTT timeout
    drive(session, FakeNet({}, rtt=0.05))
    assert host.srtt == pytest.approx(0.05, rel=0.05)
    assert host.rtt.timeout == pytest.approx(0.1, rel=0.05)  # clamped up to min_rtt_timeout


@TCP_SESSIONS
def test_interrupted_session_reports_only_finished_ports(Session: type[AnySession]) -> None:
    session = Session(Technique.SYN, ["h"], [1, 2, 3], resolve(4), randomize=False)
    session.due(0.0)
    session.receive("h", 1, 0, RST, 0.001)
    assert [v.port for v in session.verdicts()] == [1]


@TCP_SESSIONS
def test_columns_are_sorted_by_host_then_port_and_match_verdicts(Session: type[AnySession]) -> None:
    net = FakeNet({22: SYNACK, 24: None, 25: ADMIN}, default=RST)
    hosts = ["198.18.0.20", "198.18.0.3"]  # string order differs from target order
    session = Session(Technique.SYN, hosts, range(20, 30), resolve(4), rng=random.Random(5))
    drive(session, net)
    cols = session.columns()
    keys = list(zip(cols.host, cols.port, strict=True))
    by_address = sorted(keys, key=lambda k: (host_sort_key(k[0]), k[1]))  # .3 before .20
    assert keys == by_address and len(keys) == 20
    rows = [(v.host, v.port, v.state, v.reason, v.reason_ttl, v.rtt_ms) for v in session.verdicts()]
    assert [r[:2] for r in rows] == keys
    by_key = {r[:2]: r for r in rows}
    assert by_key[("198.18.0.3", 22)][2:5] == (PortState.OPEN, Reason.SYN_ACK, 64)
    assert by_key[("198.18.0.3", 24)][2:] == (PortState.FILTERED, Reason.NO_RESPONSE, None, None)
    assert by_key[("198.18.0.20", 23)][5] == pytest.approx(2.0, abs=0.01)  # FakeNet's 2 ms rtt


#: Matched TCP replies as the engine hands them over (host, port, try, flags, window, ttl):
#: known and unknown hosts, tries sent and not, every flag combination a technique reads.
TCP_REPLIES = st.lists(
    st.tuples(
        st.sampled_from(["198.18.0.10", "198.18.0.11", "198.19.9.9"]),
        st.integers(1, 12),
        st.integers(-1, 2),
        st.sampled_from([rules.RST | rules.ACK, rules.SYN | rules.ACK, rules.ACK, rules.SYN]),
        st.sampled_from([0, 1024]),
        st.integers(1, 255),
    ),
    max_size=40,
)
REPLY_TECHNIQUES = st.sampled_from([Technique.SYN, Technique.WINDOW, Technique.ACK, Technique.FIN])


@settings(max_examples=60, deadline=None)
@given(replies=TCP_REPLIES, technique=REPLY_TECHNIQUES)
def test_columnar_batch_equals_probe_session_one_by_one(
    replies: list[tuple[str, int, int, int, int, int]], technique: Technique
) -> None:
    """``BulkTcpSession.receive_tcp_batch`` does what ``ScanSession.receive`` does reply by
    reply: the same verdicts, RTTs, window, in-flight counts and RTT estimates."""
    hosts, ports = ["198.18.0.10", "198.18.0.11"], list(range(1, 13))
    one = ScanSession(technique, hosts, ports, resolve(4), randomize=False)
    bulk = BulkTcpSession(technique, hosts, ports, resolve(4), randomize=False)
    assert sorted(one.due(0.0)) == sorted(bulk.due(0.0))
    for s in (one, bulk):
        s.expire(0.6)  # a first timeout: some ports are on their second try
    assert sorted(one.due(0.6)) == sorted(bulk.due(0.6))
    for host, port, tryno, flags, window, ttl in replies:
        one.receive(host, port, tryno, TcpReply(flags, window), 0.7, ttl=ttl, sender=host)
    bulk.receive_tcp_batch(replies, 0.7)
    a, b = one.columns(), bulk.columns()
    assert (a.host, a.port, a.state, a.reason, a.reason_ttl, a.rtt_ms) == (
        b.host, b.port, b.state, b.reason, b.reason_ttl, b.rtt_ms,
    )  # fmt: skip
    assert (one.in_flight, one.cwnd, one.window.received, one.window.expected, one.finished) == (
        bulk.in_flight, bulk.cwnd, bulk.window.received, bulk.window.expected, bulk.finished,
    )  # fmt: skip
    assert [(h.srtt, h.rtt.timeout, h.max_successful_try, h.answered, h.in_flight) for h in one.hosts] == [
        (h.srtt, h.rtt.timeout, h.max_successful_try, h.answered, h.in_flight) for h in bulk.hosts
    ]  # fmt: skip


@pytest.mark.parametrize("loss", [0.05, 0.10, 0.20])
def test_columnar_session_is_exact_under_loss_on_many_hosts(loss: float) -> None:
    """Three hosts that behave differently (one drops everything, one answers with a mix,
    one is lossy): every port gets its true verdict, as on the probe session."""
    ports = list(range(1, 801))
    table: dict[int, Reply | None] = {p: SYNACK for p in ports if p % 41 == 0}
    table.update({p: ADMIN for p in ports if p % 53 == 0})
    hosts = ["198.18.0.5", "198.18.0.6", "198.18.0.40"]

    class Mixed(FakeNet):
        def answer(self, host: str, port: int, now: float) -> Reply | None:
            if host == "198.18.0.40":
                return None
            return super().answer(host, port, now)

    for seed in range(3):
        net = Mixed(table, loss=loss, seed=seed)
        session = BulkTcpSession(Technique.SYN, hosts, ports, resolve(4), rng=random.Random(seed))
        drive(session, net)
        got = verdicts(session)
        assert len(got) == len(hosts) * len(ports)
        for (host, port), (state, _reason) in got.items():
            want = None if host == "198.18.0.40" else table.get(port, RST)
            assert state is rules.classify(Technique.SYN, want).state, (host, port, seed)


def test_columnar_port_order_is_random_unless_asked_not_to() -> None:
    ports = list(range(1, 201))
    ordered = BulkTcpSession(Technique.SYN, ["h"], ports, resolve(3), randomize=False)
    assert [p for _, p, _ in ordered.due(0.0)] == ports[:10]  # the initial window
    first = [
        [p for _, p, _ in BulkTcpSession(
            Technique.SYN, ["h"], ports, resolve(3), rng=random.Random(seed)
        ).due(0.0)]
        for seed in (1, 2)
    ]  # fmt: skip
    assert first[0] != ports[:10] and first[0] != first[1]


def test_columnar_final_columns_stream_every_verdict_once() -> None:
    net = FakeNet({22: SYNACK, 24: None, 25: ADMIN}, default=RST)
    session = BulkTcpSession(
        Technique.SYN, ["198.18.0.3", "198.18.0.20"], range(1, 300), resolve(4)
    )
    seen: list[tuple[str, int, int]] = []
    now = 0.0
    for _ in range(10_000):
        for host, port, tryno in session.due(now):
            reply = net.answer(host, port, now)
            if isinstance(reply, TcpReply):
                session.receive_tcp_batch([(host, port, tryno, reply.flags, 0, 64)], now + 0.001)
            elif reply is not None:
                session.receive(host, port, tryno, reply, now + 0.001, ttl=64, sender=host)
        session.expire(now)
        part = session.final_columns()
        seen += zip(part.host, part.port, part.state, strict=True)
        if session.done:
            break
        now += 0.05
    whole = session.columns()
    assert sorted(seen) == sorted(zip(whole.host, whole.port, whole.state, strict=True))
    assert len(seen) == len(set(seen)) == 2 * 299
    assert not len(session.final_columns())


@pytest.mark.parametrize("burst", [6.0, 64.0, 150.0])
@pytest.mark.parametrize("interval", [0.0002, 0.002, 0.02, 0.2])
def test_udp_silent_ports_behind_any_bucket_come_out_right(interval: float, burst: float) -> None:
    """Whatever the host's ICMP bucket (fast, slow, a burst bigger than the model believes),
    every closed port comes out closed and the dropped ones open|filtered, canary included."""
    ports = list(range(1, 301))
    table: dict[int, Reply | None] = {53: UdpReply(), 67: None, 68: None}
    net = FakeNet(table, default=PORT_UNREACH, rtt=0.0005, bucket=KernelBucket(interval, burst))
    session = ScanSession(Technique.UDP, ["198.18.0.9"], ports, resolve(4), rng=random.Random(1))
    drive(session, net)
    got = verdicts(session)
    want = {53: PortState.OPEN, 67: PortState.OPEN_FILTERED, 68: PortState.OPEN_FILTERED}
    for port in ports:
        assert got[("198.18.0.9", port)][0] is want.get(port, PortState.CLOSED), port


def test_udp_canary_waits_what_the_answers_prove() -> None:
    """A host that answers every closed port at once proves its ICMP bucket (if any) refills
    fast: the canary for its two silent ports waits that bound, not a default second."""
    ports = list(range(1, 1001))
    table: dict[int, Reply | None] = {53: UdpReply(), 67: None, 68: None}
    net = FakeNet(table, default=PORT_UNREACH, rtt=0.0005)
    session = ScanSession(Technique.UDP, ["198.18.0.9"], ports, resolve(4), rng=random.Random(1))
    elapsed = drive(session, net)
    got = verdicts(session)
    assert got[("198.18.0.9", 67)][0] is got[("198.18.0.9", 68)][0] is PortState.OPEN_FILTERED
    canaries = [t for t, _, port, tryno in net.sent if tryno >= 2]
    assert canaries  # the canary still goes ...
    last_first_try = max(t for t, _, _, tryno in net.sent if tryno == 0)
    assert min(canaries) - last_first_try < 0.3  # ... without waiting a default second
    assert elapsed < 1.0, elapsed
