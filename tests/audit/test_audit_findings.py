"""Findings: the (state, role) table, one finding per cell, the baseline, advice (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinscan.audit.advice import (
    OwnerFacts,
    ServiceFacts,
    advise,
    fix_line,
    nft_rule,
    unit_from_cgroup,
)
from twinscan.audit.findings import TABLE, Cell, Finding, Kind, audit, by_host, classify
from twinscan.audit.policy import Role, parse_policy
from twinscan.core.vocab import PortState, Proto, Technique

S, R, K = PortState, Role, Kind
T, U = Proto.TCP, Proto.UDP

#: The documented treatment of every state under every role (None: compliant).
EXPECTED: dict[PortState, dict[Role, Kind | None]] = {
    S.OPEN: {
        R.FIREWALLED: K.NOT_FIREWALLED,
        R.DENY: K.DENIED_OPEN,
        R.EXPECT: None,
        R.ALLOW: None,
        R.UNLISTED: K.UNEXPECTED_OPEN,
    },
    S.CLOSED: {
        R.FIREWALLED: K.NOT_FIREWALLED,
        R.DENY: None,
        R.EXPECT: K.MISSING_EXPECTED,
        R.ALLOW: None,
        R.UNLISTED: None,
    },
    S.FILTERED: {
        R.FIREWALLED: None,
        R.DENY: None,
        R.EXPECT: K.MISSING_EXPECTED,
        R.ALLOW: None,
        R.UNLISTED: None,
    },
    # ACK/Window: reached the stack, open or closed unknown
    S.UNFILTERED: {
        R.FIREWALLED: K.NOT_FIREWALLED,
        R.DENY: K.UNCONFIRMED,
        R.EXPECT: K.UNCONFIRMED,
        R.ALLOW: None,
        R.UNLISTED: None,
    },
    # UDP silence, FIN/NULL/Xmas/Maimon: a drop looks like this, so does a silent open service
    S.OPEN_FILTERED: {
        R.FIREWALLED: None,
        R.DENY: K.UNCONFIRMED,
        R.EXPECT: K.UNCONFIRMED,
        R.ALLOW: None,
        R.UNLISTED: None,
    },
    # idle scan: not open, but maybe the stack answered
    S.CLOSED_FILTERED: {
        R.FIREWALLED: K.UNCONFIRMED,
        R.DENY: None,
        R.EXPECT: K.MISSING_EXPECTED,
        R.ALLOW: None,
        R.UNLISTED: None,
    },
}

#: The states each technique can report (nmap's rules; bounce: open, closed, filtered).
TECHNIQUE_STATES: dict[Technique, tuple[PortState, ...]] = {
    Technique.CONNECT: (S.OPEN, S.CLOSED, S.FILTERED),
    Technique.SYN: (S.OPEN, S.CLOSED, S.FILTERED),
    Technique.FTP_BOUNCE: (S.OPEN, S.CLOSED, S.FILTERED),
    Technique.FIN: (S.OPEN_FILTERED, S.CLOSED, S.FILTERED),
    Technique.XMAS: (S.OPEN_FILTERED, S.CLOSED, S.FILTERED),
    Technique.NULL: (S.OPEN_FILTERED, S.CLOSED, S.FILTERED),
    Technique.MAIMON: (S.OPEN_FILTERED, S.CLOSED, S.FILTERED),
    Technique.UDP: (S.OPEN, S.OPEN_FILTERED, S.CLOSED, S.FILTERED),
    Technique.ACK: (S.UNFILTERED, S.FILTERED),
    Technique.WINDOW: (S.OPEN, S.CLOSED, S.FILTERED),
}


def test_the_table_covers_every_state_and_role() -> None:
    assert set(TABLE) == {(s, r) for s in PortState for r in Role}
    for state, roles in EXPECTED.items():
        for role, kind in roles.items():
            assert classify(state, role) is kind, (state, role)


def test_allowed_ports_are_never_a_finding_and_only_proof_of_open_is_unexpected() -> None:
    assert all(TABLE[(s, R.ALLOW)] is None for s in PortState)
    unlisted = {s for s in PortState if TABLE[(s, R.UNLISTED)] is not None}
    assert unlisted == {S.OPEN}


@pytest.mark.parametrize("technique", list(TECHNIQUE_STATES))
def test_every_technique_state_is_decided(technique: Technique) -> None:
    """Per technique, each state it can give maps to the documented finding under each role."""
    policy = parse_policy(
        '[[rule]]\nhosts = "127.0.0.1"\nallow = "T:1,U:1"\nexpect = "T:2,U:2"\n'
        'deny = "T:3,U:3"\nfirewalled = "T:4,U:4"\n'
    )
    roles = {1: R.ALLOW, 2: R.EXPECT, 3: R.DENY, 4: R.FIREWALLED, 5: R.UNLISTED}
    proto = technique.proto
    for state in TECHNIQUE_STATES[technique]:
        cells = [Cell("127.0.0.1", proto, port, technique.value, state, "x") for port in roles]
        got = {f.cell.port: f.kind for f in audit(cells, policy).findings}
        want = {p: EXPECTED[state][r] for p, r in roles.items() if EXPECTED[state][r]}
        assert got == want, (technique, state)


POLICY = parse_policy(
    '[[rule]]\nhosts = "198.18.0.0/24"\nallow = "T:22"\nexpect = "T:443"\n'
    'deny = "T:23"\nfirewalled = "T:3389,U:161"\n'
)

cells = st.builds(
    Cell,
    host=st.sampled_from(["198.18.0.10", "198.18.0.11", "127.0.0.1"]),
    proto=st.sampled_from(list(Proto)),
    port=st.sampled_from([22, 23, 161, 443, 3389, 8080]),
    technique=st.sampled_from(["syn", "fin", "ack", "udp"]),
    state=st.sampled_from(list(PortState)),
    reason=st.just("x"),
)


@given(st.lists(cells, max_size=40))
def test_one_finding_per_cell_the_worst_of_its_techniques(scan: list[Cell]) -> None:
    result = audit(scan, POLICY, hosts=["198.18.0.10"])
    keys = [f.cell.key for f in result.findings]
    assert len(keys) == len(set(keys))
    assert result.cells == len({c.key for c in scan})
    for f in result.findings:
        role = POLICY.decide(*f.cell.key).role
        kinds = [TABLE[(c.state, role)] for c in scan if c.key == f.cell.key]
        worst = min((k for k in kinds if k is not None), key=lambda k: k.severity)
        assert f.kind is worst and f.role is role
    for key in {c.key for c in scan} - set(keys):
        role = POLICY.decide(*key).role
        assert all(TABLE[(c.state, role)] is None for c in scan if c.key == key)
    order = [(f.kind.severity,) for f in result.findings]
    assert order == sorted(order)
    assert result.compliant is (not result.findings)


def test_hosts_no_rule_covers_have_every_open_port_unexpected() -> None:
    (f,) = audit([Cell("127.0.0.1", T, 22, "syn", S.OPEN, "syn-ack")], POLICY).findings
    assert f.kind is K.UNEXPECTED_OPEN and f.rule is None
    assert f.rule_label == "no rule covers this host"


def test_ports_named_but_not_scanned_are_not_checked() -> None:
    scan = [Cell("198.18.0.10", T, 22, "syn", S.OPEN, "syn-ack")]
    result = audit(scan, POLICY, hosts=["198.18.0.10"])
    assert result.compliant
    assert result.not_checked == (
        ("198.18.0.10", T, 23),
        ("198.18.0.10", T, 443),
        ("198.18.0.10", T, 3389),
        ("198.18.0.10", U, 161),
    )


def _cell(port: int, state: PortState, host: str = "198.18.0.10", proto: Proto = T) -> Cell:
    return Cell(host, proto, port, "syn", state, "x")


def test_baseline_newly_open_and_newly_closed_only_where_the_policy_is_silent() -> None:
    now = [
        _cell(22, S.OPEN),  # allowed, was closed: newly-open
        _cell(8080, S.CLOSED),  # was open: newly-closed
        _cell(23, S.OPEN),  # denied: denied-open wins over newly-open
        _cell(25, S.OPEN_FILTERED),  # undecided now
        _cell(26, S.CLOSED),  # not in the baseline
        _cell(27, S.FILTERED),  # was closed: not open either way, unchanged
    ]
    before = [
        (("198.18.0.10", T, 22), S.CLOSED),
        (("198.18.0.10", T, 8080), S.OPEN),
        (("198.18.0.10", T, 23), S.CLOSED),
        (("198.18.0.10", T, 25), S.OPEN),
        (("198.18.0.10", T, 27), S.CLOSED),
        (("198.18.0.10", T, 9999), S.OPEN),  # not scanned now
    ]
    result = audit(now, POLICY, baseline=before)
    got = {f.cell.port: (f.kind, f.baseline_state) for f in result.findings}
    assert got == {
        22: (K.NEWLY_OPEN, "closed"),
        8080: (K.NEWLY_CLOSED, "open"),
        23: (K.DENIED_OPEN, None),
    }
    stats = result.baseline
    assert stats is not None
    assert (stats.compared, stats.undecided, stats.only_baseline, stats.only_current) == (
        4,
        1,
        1,
        1,
    )
    assert stats.not_compared == 3


@given(
    st.lists(cells, max_size=30),
    st.lists(st.tuples(st.sampled_from([22, 23, 80, 443]), st.sampled_from(list(PortState)))),
)
def test_baseline_counts_add_up(scan: list[Cell], old: list[tuple[int, PortState]]) -> None:
    before = [(("198.18.0.10", T, port), state) for port, state in old]
    stats = audit(scan, POLICY, baseline=before).baseline
    assert stats is not None
    keys_now = {c.key for c in scan}
    keys_then = {k for k, _ in before}
    assert stats.compared + stats.undecided == len(keys_now & keys_then)
    assert stats.only_baseline == len(keys_then - keys_now)
    assert stats.only_current == len(keys_now - keys_then)


def test_by_host_puts_the_worst_host_first() -> None:
    scan = [
        _cell(8080, S.OPEN, host="198.18.0.9"),  # unexpected-open only
        _cell(23, S.OPEN, host="198.18.0.20"),  # denied-open: worst
        _cell(443, S.CLOSED, host="198.18.0.20"),
    ]
    groups = by_host(audit(scan, POLICY).findings)
    assert [h for h, _ in groups] == ["198.18.0.20", "198.18.0.9"]
    assert [f.kind for f in groups[0][1]] == [K.DENIED_OPEN, K.MISSING_EXPECTED]


def test_nft_lines() -> None:
    assert (
        nft_rule("198.18.0.10", T, 23)
        == "nft add rule inet filter input ip daddr 198.18.0.10 tcp dport 23 drop"
    )
    assert (
        nft_rule("::1", U, 53) == "nft add rule inet filter input ip6 daddr ::1 udp dport 53 drop"
    )
    assert nft_rule("198.18.0.10", T, 443, "accept").startswith("nft insert rule inet filter")


@pytest.mark.parametrize("state", list(PortState))
@pytest.mark.parametrize("role", list(Role))
def test_every_finding_has_advice(state: PortState, role: Role) -> None:
    kind = TABLE[(state, role)]
    for k in [kind, K.NEWLY_OPEN, K.NEWLY_CLOSED] if kind else [K.NEWLY_OPEN, K.NEWLY_CLOSED]:
        f = Finding(_cell(23, state), k, role, None, baseline_state="closed")
        text = advise(f)
        assert "tcp/23" in text and "\n" not in text
        if fix_line(f):
            assert fix_line(f) in text


def test_advice_names_the_owner_how_to_stop_it_and_the_version() -> None:
    f = Finding(_cell(23, S.OPEN, host="127.0.0.1"), K.DENIED_OPEN, R.DENY, None)
    owner = OwnerFacts(812, "inetd", "root", "/usr/sbin/inetd -i", unit="inetd.service")
    text = advise(f, owner, ServiceFacts("telnet", "Linux telnetd", "0.17"))
    assert "inetd (pid 812, user root: /usr/sbin/inetd -i)" in text
    assert "systemctl disable --now inetd.service" in text
    assert "telnet Linux telnetd 0.17" in text
    assert "ip daddr 127.0.0.1 tcp dport 23 drop" in text
    assert "kill 812" in advise(f, OwnerFacts(812, "inetd"))
    assert "as root" in advise(f, OwnerFacts(None))


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("0::/system.slice/ssh.service\n", "ssh.service"),
        ("0::/user.slice/user-0.slice/session-3.scope\n", None),
        ("12:pids:/system.slice/nginx.service\n0::/system.slice/nginx.service\n", "nginx.service"),
        ("0::/\n", None),
        ("", None),
    ],
)
def test_unit_from_cgroup(text: str, unit: str | None) -> None:
    assert unit_from_cgroup(text) == unit
