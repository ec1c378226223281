"""The pure truth function, cell by cell, against the port-state table of the reference notes
(performance-reliability-detection.md section 2.4), as corrected by running nmap 7.93 on the lab
(tests/test_lab_nmap.py): Linux RSTs Window and Maimon probes to open ports (so -sW and -sM say
closed), and a conntrack rule on NEW packets never sees FIN/NULL/Xmas probes (they are INVALID).
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core.rules import LEGAL_STATES
from twinscan.core.schema import COLUMNS
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.lab.spec import Action, Conntrack, Host, LabSpec, Rule, ScanPlan, UdpKind, parse_spec
from twinscan.lab.truth import TECHNIQUES, expected, truth_frame, truth_verdicts

S, R, T = PortState, Reason, Technique

SPEC = parse_spec(
    """
[scan]
tcp_ports = "1-3"
udp_ports = "1-3"
bounce_relay = "relay"
bounce_targets = ["acl"]
bounce_ports = "22,23,100,111,112"

[hosts.acl]
address = "198.18.0.10"
tcp = [22, 8080]
udp = { 53 = "dns", 123 = "ntp", 7 = "echo", 9 = "silent" }
rules = [
  { proto = "tcp", ports = 8080, action = "tcp-reset" },
  { proto = "tcp", ports = 100, action = "drop" },
  { proto = "tcp", ports = 110, action = "tcp-reset" },
  { proto = "tcp", ports = 111, action = "port-unreachable" },
  { proto = "tcp", ports = 112, action = "host-prohibited" },
  { proto = "tcp", ports = 113, action = "admin-prohibited" },
  { proto = "tcp", ports = 114, action = "net-unreachable" },
  { proto = "udp", ports = 200, action = "drop" },
  { proto = "udp", ports = 201, action = "port-unreachable" },
  { proto = "udp", ports = 202, action = "host-prohibited" },
  { proto = "udp", ports = 203, action = "admin-prohibited" },
  { proto = "udp", ports = 204, action = "net-unreachable" },
]

[hosts.newsyn]
address = "198.18.0.11"
tcp = [22]
conntrack = ["drop-new-non-syn"]
loss = 0.1

[hosts.invalid]
address = "198.18.0.12"
tcp = [22]
conntrack = ["drop-invalid"]

[hosts.relay]
address = "198.18.0.13"
ftp = 21

[hosts.dark]
address = "198.18.0.99"
silent = true
""",
    source="truth-test",
)

OPEN_SA = (S.OPEN, R.SYN_ACK)
RESET_CLOSED = (S.CLOSED, R.RESET)
SILENT_F = (S.FILTERED, R.NO_RESPONSE)
SILENT_OF = (S.OPEN_FILTERED, R.NO_RESPONSE)
UNF = (S.UNFILTERED, R.RESET)
REFUSED = (S.CLOSED, R.CONN_REFUSED)

# (host, port, {technique: (state, reason)}) -- one row of the section 2.4 table per setup.
TCP_TABLE = [
    ("acl", 22, "listener, no rule", {
        T.CONNECT: OPEN_SA, T.SYN: OPEN_SA, T.FIN: SILENT_OF, T.XMAS: SILENT_OF,
        T.NULL: SILENT_OF, T.ACK: UNF, T.WINDOW: RESET_CLOSED, T.MAIMON: RESET_CLOSED}),
    ("acl", 1, "no listener, no rule", {
        T.CONNECT: REFUSED, T.SYN: RESET_CLOSED, T.FIN: RESET_CLOSED, T.XMAS: RESET_CLOSED,
        T.NULL: RESET_CLOSED, T.ACK: UNF, T.WINDOW: RESET_CLOSED, T.MAIMON: RESET_CLOSED}),
    ("acl", 100, "drop", {
        T.CONNECT: SILENT_F, T.SYN: SILENT_F, T.FIN: SILENT_OF, T.XMAS: SILENT_OF,
        T.NULL: SILENT_OF, T.ACK: SILENT_F, T.WINDOW: SILENT_F, T.MAIMON: SILENT_OF}),
    ("acl", 110, "reject tcp-reset", {
        T.CONNECT: REFUSED, T.SYN: RESET_CLOSED, T.FIN: RESET_CLOSED, T.XMAS: RESET_CLOSED,
        T.NULL: RESET_CLOSED, T.ACK: UNF, T.WINDOW: RESET_CLOSED, T.MAIMON: RESET_CLOSED}),
    ("acl", 8080, "listener behind tcp-reset", {
        T.CONNECT: REFUSED, T.SYN: RESET_CLOSED, T.ACK: UNF}),
    ("acl", 111, "reject icmp port-unreachable (-sT/-sS disagree)", {
        T.CONNECT: REFUSED, T.SYN: (S.FILTERED, R.PORT_UNREACH),
        T.FIN: (S.FILTERED, R.PORT_UNREACH), T.ACK: (S.FILTERED, R.PORT_UNREACH),
        T.WINDOW: (S.FILTERED, R.PORT_UNREACH), T.MAIMON: (S.FILTERED, R.PORT_UNREACH)}),
    ("acl", 112, "reject host-prohibited", {
        T.CONNECT: (S.FILTERED, R.HOST_UNREACH), T.SYN: (S.FILTERED, R.HOST_PROHIBITED),
        T.NULL: (S.FILTERED, R.HOST_PROHIBITED), T.ACK: (S.FILTERED, R.HOST_PROHIBITED)}),
    ("acl", 113, "reject admin-prohibited", {
        T.CONNECT: (S.FILTERED, R.HOST_UNREACH), T.SYN: (S.FILTERED, R.ADMIN_PROHIBITED),
        T.XMAS: (S.FILTERED, R.ADMIN_PROHIBITED)}),
    ("acl", 114, "reject net-unreachable", {
        T.CONNECT: (S.FILTERED, R.NET_UNREACH), T.SYN: (S.FILTERED, R.NET_UNREACH),
        T.WINDOW: (S.FILTERED, R.NET_UNREACH)}),
    ("newsyn", 22, "stateful drop NEW non-SYN, listener", {
        T.CONNECT: OPEN_SA, T.SYN: OPEN_SA, T.ACK: SILENT_F, T.WINDOW: SILENT_F,
        T.FIN: SILENT_OF, T.MAIMON: RESET_CLOSED}),
    ("newsyn", 1, "stateful drop NEW non-SYN, closed (FIN probes are INVALID, not NEW)", {
        T.CONNECT: REFUSED, T.SYN: RESET_CLOSED, T.ACK: SILENT_F, T.FIN: RESET_CLOSED,
        T.NULL: RESET_CLOSED, T.XMAS: RESET_CLOSED, T.MAIMON: RESET_CLOSED}),
    ("invalid", 1, "conntrack drop INVALID, closed", {
        T.SYN: RESET_CLOSED, T.ACK: UNF, T.FIN: SILENT_OF, T.NULL: SILENT_OF, T.XMAS: SILENT_OF,
        T.MAIMON: SILENT_OF}),
    ("dark", 22, "silent address", {
        T.CONNECT: SILENT_F, T.SYN: SILENT_F, T.FIN: SILENT_OF, T.ACK: SILENT_F,
        T.WINDOW: SILENT_F, T.MAIMON: SILENT_OF}),
]  # fmt: skip

UDP_TABLE = [
    ("acl", 53, "dns service", (S.OPEN, R.UDP_RESPONSE)),
    ("acl", 123, "ntp service", (S.OPEN, R.UDP_RESPONSE)),
    ("acl", 7, "echo service", (S.OPEN, R.UDP_RESPONSE)),
    ("acl", 9, "bound socket that never answers", SILENT_OF),
    ("acl", 1, "closed", (S.CLOSED, R.PORT_UNREACH)),
    ("acl", 200, "drop", SILENT_OF),
    ("acl", 201, "reject port-unreachable", (S.CLOSED, R.PORT_UNREACH)),
    ("acl", 202, "reject host-prohibited", (S.FILTERED, R.HOST_PROHIBITED)),
    ("acl", 203, "reject admin-prohibited", (S.FILTERED, R.ADMIN_PROHIBITED)),
    ("acl", 204, "reject net-unreachable", (S.FILTERED, R.NET_UNREACH)),
    ("dark", 53, "silent address", SILENT_OF),
]

BOUNCE_TABLE = [
    (22, (S.OPEN, R.NO_RESPONSE)),  # 150 then 226
    (23, (S.CLOSED, R.NO_RESPONSE)),  # refused: 425
    (100, (S.CLOSED, R.NO_RESPONSE)),  # dropped: the relay gives up with 421
    (111, (S.CLOSED, R.NO_RESPONSE)),
    (112, (S.CLOSED, R.NO_RESPONSE)),
]


@pytest.mark.parametrize(
    ("host", "port", "technique", "want"),
    [
        pytest.param(h, p, t, w, id=f"{setup}-{t}")
        for h, p, setup, row in TCP_TABLE
        for t, w in row.items()
    ],
)
def test_tcp_cells(host: str, port: int, technique: Technique, want: tuple[S, R]) -> None:
    assert tuple(expected(SPEC.host(host), technique, port)) == want


@pytest.mark.parametrize(
    ("host", "port", "setup", "want"), UDP_TABLE, ids=[r[2] for r in UDP_TABLE]
)
def test_udp_cells(host: str, port: int, setup: str, want: tuple[S, R]) -> None:
    assert tuple(expected(SPEC.host(host), T.UDP, port)) == want


@pytest.mark.parametrize(("port", "want"), BOUNCE_TABLE)
def test_bounce_cells(port: int, want: tuple[S, R]) -> None:
    assert tuple(expected(SPEC.host("acl"), T.FTP_BOUNCE, port)) == want


def test_rate_limited_udp_truth_is_what_is_real() -> None:
    spec = parse_spec('[hosts.rl]\naddress = "198.18.0.5"\nicmp_ratelimit = true\n')
    assert tuple(expected(spec.host("rl"), T.UDP, 99)) == (S.CLOSED, R.PORT_UNREACH)


def test_frame_shape_and_universe() -> None:
    frame = truth_frame(SPEC)
    assert list(frame.columns) == list(COLUMNS)
    assert set(frame["engine"].astype(str)) == {Engine.TRUTH.value}
    assert set(frame["technique"].astype(str)) == {t.value for t in TECHNIQUES}
    n_tcp, n_udp = len(SPEC.tcp_universe()), len(SPEC.udp_universe())
    n_hosts = len(SPEC.hosts)
    bounce = len(SPEC.scan.bounce_targets) * len(SPEC.scan.bounce_ports)
    assert len(frame) == n_hosts * (8 * n_tcp + n_udp) + bounce
    assert not frame.duplicated(["host", "proto", "port", "technique"]).any()
    udp = frame[frame["technique"].astype(str) == "udp"]
    assert set(udp["proto"].astype(str)) == {"udp"}


def test_default_spec_truth_is_pure_and_deterministic() -> None:
    from twinscan.lab import load_spec

    spec = load_spec()
    a, b = truth_frame(spec), truth_frame(spec)
    assert a.equals(b)
    assert len(a) > 5000


# --- property: any spec yields only states its technique can produce --------------------------

_ports = st.integers(min_value=1, max_value=40)


@st.composite
def hosts(draw: st.DrawFn) -> tuple[Host, ...]:
    out = []
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        rules = tuple(
            Rule(proto, tuple(sorted(draw(st.sets(_ports, min_size=1, max_size=3)))), action)
            for proto, action in draw(
                st.lists(st.tuples(st.sampled_from(Proto), st.sampled_from(Action)), max_size=4)
            )
            if not (action is Action.TCP_RESET and proto is Proto.UDP)
        )
        out.append(
            Host(
                name=f"h{i}",
                address=f"198.18.0.{10 + i}",
                silent=draw(st.booleans()) if i else False,
                tcp=tuple(sorted(draw(st.sets(_ports, max_size=4)))),
                udp=tuple(
                    sorted(
                        draw(st.dictionaries(_ports, st.sampled_from(UdpKind), max_size=3)).items()
                    )
                ),
                rules=rules,
                conntrack=frozenset(draw(st.sets(st.sampled_from(Conntrack)))),
            )
        )
    return tuple(out)


@settings(max_examples=60, deadline=None)
@given(hosts())
def test_every_state_is_legal_for_its_technique(hs: tuple[Host, ...]) -> None:
    spec = LabSpec(
        subnet=ipaddress.IPv4Network("198.18.0.0/24"),
        scanner="198.18.0.1",
        hosts=hs,
        scan=ScanPlan(tcp_ports=tuple(range(1, 41)), udp_ports=tuple(range(1, 41))),
    )
    verdicts = truth_verdicts(spec, tuple(t for t in TECHNIQUES if t is not T.FTP_BOUNCE))
    assert len(verdicts) == len(hs) * (8 * 40 + 40)
    for v in verdicts:
        assert v.state in LEGAL_STATES[v.technique], v
        if v.state is S.OPEN and v.technique is T.SYN:
            h = spec.host(next(h.name for h in hs if h.address == v.host))
            assert v.port in h.tcp_listeners and h.rule_for(Proto.TCP, v.port) is None
