"""The detectors as pure units: thresholds, windows, what they ignore, and no false alarms."""

from __future__ import annotations

import pytest
from detect_frames import ip4
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core.vocab import Technique as T
from twinscan.detect.base import Event, Outcome, event
from twinscan.detect.runner import DETECTORS
from twinscan.detect.scanlogd import Scanlogd
from twinscan.detect.sfportscan import SfPortscan
from twinscan.detect.trw import Trw
from twinscan.detect.zeek import ZeekScan

A, B, C = ip4("198.18.0.1"), ip4("198.18.0.10"), ip4("198.18.0.11")
Out = Outcome


def vertical(
    n: int, *, tech: T = T.SYN, outcome: Out = Out.RST, start: int = 2000, dt: float = 0.01
) -> list[Event]:
    return [event(1.0 + i * dt, A, B, start + i, tech, outcome) for i in range(n)]


def horizontal(n: int, *, port: int = 80, outcome: Out = Out.RST, dt: float = 0.01) -> list[Event]:
    return [event(1.0 + i * dt, A, B + i, port, T.SYN, outcome) for i in range(n)]


def kinds(det: object, evs: list[Event]) -> list[tuple[str, float]]:
    return [(a.kind, round(a.at, 6)) for a in det.feed(evs)]  # type: ignore[attr-defined]


# --- sfPortscan ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "n", "expected"),
    [
        ("low", 4, []),
        ("low", 5, [("tcp-portscan", 1.04)]),
        ("medium", 14, []),
        ("medium", 15, [("tcp-portscan", 1.14)]),
        ("high", 10, [("tcp-portscan", 1.09)]),
    ],
)
def test_sfportscan_portscan_thresholds(
    level: str, n: int, expected: list[tuple[str, float]]
) -> None:
    assert kinds(SfPortscan(level), vertical(n)) == expected


def test_sfportscan_one_alert_per_window_then_again_in_the_next() -> None:
    evs = vertical(10) + [event(100.0 + i, A, B, 3000 + i, T.SYN, Out.RST) for i in range(5)]
    assert kinds(SfPortscan("low"), evs) == [("tcp-portscan", 1.04), ("tcp-portscan", 104.0)]


def test_sfportscan_window_expiry_resets_the_counts() -> None:
    evs = vertical(3) + [event(70.0 + i, A, B, 3000 + i, T.SYN, Out.RST) for i in range(2)]
    assert kinds(SfPortscan("low"), evs) == []


def test_sfportscan_counts_port_changes_not_unique_ports() -> None:
    # a client refused 10 times on one port: priority 10, but one port change
    evs = [event(1.0 + i, A, B, 9999, T.CONNECT, Out.RST) for i in range(10)]
    assert kinds(SfPortscan("high"), evs) == []


def test_sfportscan_filtered_scan_needs_connections_and_exists_above_low() -> None:
    silent = vertical(200, outcome=Out.SILENT, dt=0.001)
    assert kinds(SfPortscan("low"), silent) == []
    assert kinds(SfPortscan("medium"), silent) == [("tcp-filtered-portscan", 1.199)]


def test_sfportscan_completed_handshakes_are_taken_off() -> None:
    evs = [
        event(1.0 + i * 0.001, A, B, 2000 + i, T.CONNECT, Out.OPEN, completed=True)
        for i in range(300)
    ]
    assert kinds(SfPortscan("medium"), evs) == []


def test_sfportscan_portsweep_and_udp() -> None:
    assert kinds(SfPortscan("low"), horizontal(5)) == [("tcp-portsweep", 1.04)]
    udp = vertical(5, tech=T.UDP, outcome=Out.UNREACH)
    assert kinds(SfPortscan("low"), udp) == [("udp-portscan", 1.04)]


def test_sfportscan_many_sources_make_it_a_decoy_not_a_portscan() -> None:
    # the scanned host's u_ip_count counts source changes: 30 alternating sources >= nets 25
    evs = [event(1.0 + i * 0.01, A + i, B, 2000 + i, T.SYN, Out.RST) for i in range(30)]
    assert [k for k, _ in kinds(SfPortscan("low"), evs) if k.endswith("portscan")] == []


# --- zeek scan.zeek ------------------------------------------------------------------------------


def test_zeek_port_scan_at_fifteen_failed_ports() -> None:
    assert kinds(ZeekScan(), vertical(14)) == []
    assert kinds(ZeekScan(), vertical(15)) == [("port-scan", 1.14)]


def test_zeek_address_scan_at_twenty_five_hosts() -> None:
    assert kinds(ZeekScan(), horizontal(24)) == []
    assert kinds(ZeekScan(), horizontal(25)) == [("address-scan", 1.24)]


@pytest.mark.parametrize(
    ("ev", "counted"),
    [
        (event(1, A, B, 1, T.SYN, Out.RST), True),
        (event(1, A, B, 1, T.SYN, Out.SILENT), True),
        (event(1, A, B, 1, T.SYN, Out.OPEN, orig_rst=True), True),
        (event(1, A, B, 1, T.CONNECT, Out.OPEN, completed=True, orig_rst=True), True),
        (event(1, A, B, 1, T.CONNECT, Out.OPEN, completed=True), False),
        (event(1, A, B, 1, T.CONNECT, Out.OPEN, completed=True, orig_rst=True, data=True), False),
        (event(1, A, B, 1, T.FIN, Out.RST), False),
        (event(1, A, B, 1, T.UDP, Out.UNREACH), False),
    ],
)
def test_zeek_failed_connection(ev: Event, counted: bool) -> None:
    from twinscan.detect.zeek import failed

    assert failed(ev) is counted


def test_zeek_epochs_reset() -> None:
    evs = [event(1.0 + i * 30, A, B, 2000 + i, T.SYN, Out.RST) for i in range(15)]  # 420 s
    assert kinds(ZeekScan(), evs) == []


# --- TRW --------------------------------------------------------------------------------------


def test_trw_four_failed_first_contacts() -> None:
    assert kinds(Trw(), horizontal(3)) == []
    assert kinds(Trw(), horizontal(4)) == [("scanner", 1.03)]


def test_trw_vertical_scan_is_one_observation() -> None:
    assert kinds(Trw(), vertical(1000)) == []


def test_trw_successes_pull_back_and_benign_restarts_the_walk() -> None:
    ok = [event(1.0 + i, A, B + i, 80, T.CONNECT, Out.OPEN, completed=True) for i in range(4)]
    bad = [event(10.0 + i, A, C + 100 + i, 80, T.SYN, Out.RST) for i in range(4)]
    # 4 successes reach 1/256 <= eta0: benign, the walk restarts; then 4 failures flag it
    alerts = Trw().feed(ok + bad)
    assert [(a.kind, a.at, a.since) for a in alerts] == [("scanner", 13.0, 4.0)]


# --- scanlogd ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "alert_at"),
    [
        (list(range(1, 8)), 7),
        (list(range(1, 7)), None),
        (list(range(2000, 2021)), 21),
        (list(range(2000, 2020)), None),
        ([1, 2, 3, 4, 5, 2000, 2001, 2002, 2003, 2004, 2005], 11),  # 15 + 6
    ],
)
def test_scanlogd_weights(ports: list[int], alert_at: int | None) -> None:
    evs = [event(float(i + 1), A, B, p, T.SYN, Out.RST) for i, p in enumerate(ports)]
    got = Scanlogd().feed(evs)
    assert [a.at for a in got] == ([float(alert_at)] if alert_at else [])


def test_scanlogd_gap_starts_over_and_ack_is_ignored() -> None:
    evs = [event(1.0 + i * 3.5, A, B, 2000 + i, T.SYN, Out.RST) for i in range(30)]
    assert Scanlogd().feed(evs) == []
    assert Scanlogd().feed(vertical(50, tech=T.ACK)) == []
    assert Scanlogd().feed(vertical(50, tech=T.MAIMON)) == []
    assert Scanlogd().feed(vertical(50, tech=T.UDP, outcome=Out.UNREACH)) == []
    assert len(Scanlogd().feed(vertical(50, tech=T.XMAS))) == 1


# --- every detector --------------------------------------------------------------------------


SERVER_OF = {ip4("198.18.0.20"): B, ip4("198.18.0.21"): C, ip4("198.18.0.22"): B}


def _ordinary() -> st.SearchStrategy[list[Event]]:
    """Clients using the services of their server: answered connections (some retransmitted)
    and DNS/SNMP/NTP queries, a refused port retried a few times: what no detector may flag.

    (A client that alternates among three or more servers and is refused three times within
    600 s is a portsweep to sfportscan-high, as in Snort: see the README.)"""
    clients = st.sampled_from(sorted(SERVER_OF))
    answered = st.builds(
        lambda c, port, t, tries: event(
            t, c, SERVER_OF[c], port, T.CONNECT, Out.OPEN, completed=True, data=True, tries=tries
        ),
        clients,
        st.sampled_from([80, 443, 22]),
        st.floats(0, 600),
        st.integers(1, 3),
    )
    queries = st.builds(
        lambda c, port, t: event(t, c, SERVER_OF[c], port, T.UDP, Out.OPEN),
        clients,
        st.sampled_from([53, 161, 123]),
        st.floats(0, 600),
    )
    refused = st.builds(
        lambda c, t, n: [
            event(t + i, c, SERVER_OF[c], 9999, T.CONNECT, Out.RST, tries=2) for i in range(n)
        ],
        clients,
        st.floats(0, 600),
        st.integers(1, 4),
    )
    return st.tuples(
        st.lists(answered, max_size=150), st.lists(queries, max_size=150), refused
    ).map(lambda x: sorted(x[0] + x[1] + x[2], key=lambda e: e.t))


def test_sfportscan_high_is_sensitive_to_a_busy_client() -> None:
    # Snort's documented weakness of high sensitivity: destination changes plus 3 refusals
    evs = [
        event(1.0 + i, A, [B, C, C + 1][i % 3], 80, T.CONNECT, Out.OPEN, completed=True, data=True)
        for i in range(6)
    ]
    evs += [event(10.0 + i, A, B, 9999, T.CONNECT, Out.RST) for i in range(3)]
    assert kinds(SfPortscan("high"), evs) == [("tcp-portsweep", 12.0)]
    assert kinds(SfPortscan("low"), evs) == []


@settings(max_examples=150, deadline=None)
@given(_ordinary())
def test_ordinary_traffic_raises_nothing(evs: list[Event]) -> None:
    for name, make in DETECTORS.items():
        assert make().feed(evs) == [], name


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.builds(
            lambda t, s, d, port, tech, out: event(t, A + s, B + d, port, tech, out),
            st.floats(0, 1000),
            st.integers(0, 3),
            st.integers(0, 40),
            st.integers(1, 1100),
            st.sampled_from([T.SYN, T.FIN, T.ACK, T.UDP, T.CONNECT]),
            st.sampled_from(list(Out)),
        ),
        max_size=300,
    ).map(lambda evs: sorted(evs, key=lambda e: e.t)),
    st.floats(-1e6, 1e6),
)
def test_feeding_in_pieces_and_shifting_time_change_nothing(evs: list[Event], shift: float) -> None:
    for name, make in DETECTORS.items():
        whole = make().feed(evs)
        one_by_one = make()
        pieces = [a for e in evs for a in one_by_one.feed([e])]
        assert pieces == whole, name
        shifted = make().feed([e._replace(t=e.t + 4096.0) for e in evs])
        assert [(a.kind, a.scanner, a.target, a.port) for a in shifted] == [
            (a.kind, a.scanner, a.target, a.port) for a in whole
        ], name
    assert shift == shift  # hypothesis draws it; the fixed 4096 s shift keeps floats exact
