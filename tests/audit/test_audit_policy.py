"""The audit policy: parsing, errors with file and line, which rule decides a port (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO
from twinscan.audit.policy import (
    PolicyError,
    Role,
    load_policy,
    parse_policy,
    parse_port_value,
)
from twinscan.core.vocab import Proto
from twinscan.request.ports import format_port_list

T, U = Proto.TCP, Proto.UDP
POLICIES = REPO / "fixtures" / "policies"

EXAMPLE = """\
# the issue's example
[[rule]]
hosts = "198.18.0.10"
allow = "T:22,80,443"          # may be open
expect = "T:443,U:53"          # must be open
deny = "T:23"                  # must not be open
firewalled = "T:3389,5900"     # must be filtered
"""


def test_the_issue_example_parses() -> None:
    policy = parse_policy(EXAMPLE, source="p.toml")
    (rule,) = policy.rules
    assert rule.line == 2 and rule.label == "rule 1 (line 2)"
    assert "198.18.0.10" in rule.hosts and "198.18.0.11" not in rule.hosts
    roles = {key: role.value for key, role in rule.ports.items()}
    assert roles == {
        (T, 22): "allow",
        (T, 80): "allow",
        (T, 443): "expect",  # expect implies allow: the stricter role wins
        (U, 53): "expect",
        (T, 23): "deny",
        (T, 3389): "firewalled",
        (T, 5900): "firewalled",
    }
    assert policy.named_ports(U) == (53,)
    assert policy.decide("198.18.0.10", T, 8080).role is Role.UNLISTED
    assert policy.decide("198.18.0.99", T, 23).rule is None


@pytest.mark.parametrize(
    ("hosts", "inside", "outside"),
    [
        ('"198.18.0.10"', ["198.18.0.10"], ["198.18.0.11"]),
        ('"198.18.0.0/30"', ["198.18.0.0", "198.18.0.3"], ["198.18.0.4"]),
        ('"198.18.0.10-12"', ["198.18.0.11"], ["198.18.0.13"]),
        ('"198.18.0.10,198.18.0.12"', ["198.18.0.12"], ["198.18.0.11"]),
        ('["198.18.0.10", "127.0.0.0/8"]', ["127.5.0.1"], ["198.18.0.9"]),
        ('"0.0.0.0/0"', ["203.0.113.7"], ["::1"]),  # a CIDR is tested, never expanded
        ('"::1"', ["::1", "0:0::1"], ["127.0.0.1"]),
        ('"198.18.0.*"', ["198.18.0.255"], ["198.18.1.1"]),
    ],
)
def test_hosts_take_what_a_target_takes(hosts: str, inside: list[str], outside: list[str]) -> None:
    (rule,) = parse_policy(f"[[rule]]\nhosts = {hosts}\ndeny = 23\n").rules
    for host in inside:
        assert host in rule.hosts
    for host in outside:
        assert host not in rule.hosts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"T:22,80"', {(T, 22), (T, 80)}),
        ('"22"', {(T, 22), (U, 22)}),  # unprefixed: both, as -p takes it
        ('"T:1-3,U:53"', {(T, 1), (T, 2), (T, 3), (U, 53)}),
        ("23", {(T, 23), (U, 23)}),
        ('[23, "U:161"]', {(T, 23), (U, 23), (U, 161)}),
        ('"U:dynamic"', {(U, p) for p in range(49152, 65536)}),
        ('""', set()),
    ],
)
def test_port_lists_take_what_p_takes(value: str, expected: set[tuple[Proto, int]]) -> None:
    text = f'[[rule]]\nhosts = "127.0.0.1"\nallow = {value}\ndeny = "T:9"\n'
    (rule,) = parse_policy(text).rules
    assert {k for k, r in rule.ports.items() if r is Role.ALLOW} == expected


BAD = [
    # (policy text, line, words the message must hold)
    ('[[rule]]\nhosts = "127.0.0.1"\nalow = "T:22"\n', 3, ["rule 1", "unknown key 'alow'"]),
    ('[[rule]]\nhosts = "127.0.0.1"\n\ndeny = "T:22-x"\n', 4, ["bad port list in deny", "22-x"]),
    ('[[rule]]\nhosts = "127.0.0.1"\ndeny = "T:70000"\n', 3, ["out of range"]),
    ('[[rule]]\nhosts = "127.0.0.1"\ndeny = "T:ftpx"\n', 3, ["unknown port or service"]),
    ('[[rule]]\nhosts = "127.0.0.1"\ndeny = true\n', 3, ["strings or integers"]),
    ('[[rule]]\nhosts = "example.com"\ndeny = 22\n', 2, ["bad hosts", "host name"]),
    ('[[rule]]\nhosts = "10.0.0.300"\ndeny = 22\n', 2, ["bad hosts"]),
    ('[[rule]]\nhosts = "10.0.0.0/33"\ndeny = 22\n', 2, ["bad CIDR"]),
    ("[[rule]]\nhosts = []\ndeny = 22\n", 2, ["no hosts"]),
    ("[[rule]]\ndeny = 22\n", 1, ["no hosts"]),
    ('[[rule]]\nhosts = "127.0.0.1"\n', 1, ["no port list"]),
    ('[[rule]]\nhosts = "127.0.0.1"\nallow = "T:22"\ndeny = "22"\n', 4, ["T:22", "allow and deny"]),
    (
        '[[rule]]\nhosts = "127.0.0.1"\nexpect = 1\nfirewalled = "1-9"\n',
        4,
        ["expect and firewalled"],
    ),
    ('[[rule]]\nhosts = "127.0.0.1"\ndeny = "T:22\n', 3, ["not TOML"]),
    ('owner = "me"\n[[rule]]\nhosts = "127.0.0.1"\ndeny = 1\n', 1, ["unknown key 'owner'"]),
    ('[rule]\nhosts = "127.0.0.1"\n', 1, ["[[rule]] tables"]),
    ("# nothing\n", None, ["no [[rule]]"]),
    (
        '[[rule]]\nhosts = "127.0.0.1"\ndeny = 1\n\n[[rule]]\nhosts = "127.0.0.1"\n"deny" = "x"\n',
        7,
        ["rule 2", "bad port list"],
    ),
    ('[[rule]]\nname = ""\nhosts = "127.0.0.1"\ndeny = 1\n', 2, ["name"]),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD)
def test_a_bad_policy_names_file_line_and_problem(
    text: str, line: int | None, words: list[str]
) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    message = str(info.value)
    assert "\n" not in message
    prefix = f"p.toml: line {line}: " if line is not None else "p.toml: "
    assert message.startswith(prefix), message
    for word in words:
        assert word in message, message
    assert info.value.exit_code == 2


def test_unreadable_policy_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match="is a directory"):
        load_policy(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(tmp_path / "bin.toml")


SPECIFIC = """\
[[rule]]
hosts = "198.18.0.0/24"
deny = "T:23,25"
firewalled = "T:3389"

[[rule]]
name = "mail"
hosts = "198.18.0.10"
allow = "T:25"

[[rule]]
hosts = "198.18.0.10-11"
expect = "T:3389"
"""


def test_the_most_specific_rule_decides_then_the_strictest() -> None:
    policy = parse_policy(SPECIFIC)
    # a /24 denies 25, the rule for .10 alone allows it: the single host wins
    assert policy.decide("198.18.0.10", T, 25).role is Role.ALLOW
    assert policy.decide("198.18.0.10", T, 25).rule.label == "mail"  # type: ignore[union-attr]
    assert policy.decide("198.18.0.11", T, 25).role is Role.DENY
    # the 2-host rule expects 3389, more specific than the /24 that wants it firewalled
    assert policy.decide("198.18.0.11", T, 3389).role is Role.EXPECT
    assert policy.decide("198.18.0.12", T, 3389).role is Role.FIREWALLED
    # a rule that does not name the port does not decide it
    assert policy.decide("198.18.0.10", T, 23).role is Role.DENY
    unlisted = policy.decide("198.18.0.10", T, 8080)
    assert unlisted.role is Role.UNLISTED and unlisted.rule.label == "mail"  # type: ignore[union-attr]


def test_equally_specific_rules_take_the_strictest_role() -> None:
    text = '[[rule]]\nhosts = "127.0.0.1"\nallow = 22\n\n[[rule]]\nhosts = "127.0.0.1"\ndeny = 22\n'
    assert parse_policy(text).decide("127.0.0.1", T, 22).role is Role.DENY


port_sets = st.sets(st.integers(1, 65535), max_size=40)


@given(tcp=port_sets, udp=port_sets)
def test_port_lists_round_trip(tcp: set[int], udp: set[int]) -> None:
    parts = []
    if tcp:
        parts.append("T:" + format_port_list(tcp))
    if udp:
        parts.append("U:" + format_port_list(udp))
    assert parse_port_value(",".join(parts)) == {(T, p) for p in tcp} | {(U, p) for p in udp}


def test_the_lab_policies_parse() -> None:
    for name in ("lab-violated", "lab-compliant", "loopback"):
        policy = load_policy(POLICIES / f"{name}.toml")
        assert policy.rules
