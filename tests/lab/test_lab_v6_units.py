"""Dual-stack lab units (issue #17): spec, nftables rules for IPv6, IPv6 truth vs the rules."""

from __future__ import annotations

import errno

import pytest

from twinscan.core import rules
from twinscan.core.rules import ConnectOutcome, IcmpReply
from twinscan.core.vocab import Technique
from twinscan.lab import load_spec
from twinscan.lab.netns import nft_ruleset, services_config
from twinscan.lab.spec import Action, SpecError, parse_spec
from twinscan.lab.truth import expected, expected6, situation

T = Technique
#: The ICMPv6 destination-unreachable code each lab rejection sends (nft icmpv6 type ...), and
#: the errno Linux gives connect() for it (icmpv6_err_convert).
ICMP6_CODE = {
    Action.PORT_UNREACHABLE.value: (4, errno.ECONNREFUSED),
    Action.HOST_PROHIBITED.value: (1, errno.EACCES),
    Action.ADMIN_PROHIBITED.value: (1, errno.EACCES),
    Action.NET_UNREACHABLE.value: (0, errno.ENETUNREACH),
}


def test_addresses_follow_the_ipv4_offsets() -> None:
    spec = load_spec()
    assert spec.sink6 == "2001:db8:18::fe"
    assert {h.name: h.address6 for h in spec.hosts}["dark"] == "2001:db8:18::63"
    assert spec.by_address("2001:db8:18::b") is spec.host("acl")
    assert services_config(spec.host("plain"))["address6"] == "2001:db8:18::a"


@pytest.mark.parametrize("subnet6", ['"2001:db9::/64"', '"fd00::/64"', '"2001:db8::/125"', '"x"'])
def test_subnet6_must_be_documentation_space(subnet6: str) -> None:
    text = f'[lab]\nsubnet6 = {subnet6}\n[hosts.a]\naddress = "198.18.0.10"\n'
    with pytest.raises(SpecError, match="subnet6"):
        parse_spec(text)


def test_ipv4_only_spec_stays_ipv4_only() -> None:
    spec = parse_spec(
        '[hosts.a]\naddress = "198.18.0.10"\nrules = [{proto="tcp", ports=1, action="host-prohibited"}]\n'
    )
    assert spec.subnet6 is None and spec.hosts[0].address6 is None
    text = nft_ruleset(spec.hosts[0])
    assert text is not None and text.startswith("table ip twinscan") and "icmpv6" not in text


def test_dual_stack_rules_act_on_ipv6() -> None:
    acl = nft_ruleset(load_spec().host("acl"))
    assert acl is not None and acl.startswith("table inet twinscan")
    assert "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept" in acl
    assert (
        "meta nfproto ipv6 tcp dport { 112 } counter reject with icmpv6 type admin-prohibited"
        in acl
    )
    assert "meta nfproto ipv6 udp dport { 19 } counter reject with icmpv6 type no-route" in acl
    assert (
        "meta nfproto ipv6 udp dport { 69 } counter reject with icmpv6 type port-unreachable" in acl
    )
    assert "tcp dport { 110 } counter reject with tcp reset" in acl  # both families


@pytest.mark.parametrize("technique", [t for t in T if t is not T.FTP_BOUNCE], ids=str)
def test_ipv6_truth_agrees_with_the_icmpv6_rules(technique: Technique) -> None:
    """Every IPv6 truth cell of the default lab: an ICMPv6 rejection is classified by nmap's
    ICMPv6 rules (connect: by Linux's errno for it); everything else is as over IPv4."""
    spec = load_spec()
    ports = spec.udp_universe() if technique is T.UDP else spec.tcp_universe()
    for host in spec.hosts:
        for port in ports:
            where = situation(host, technique, port)
            cell = expected6(host, technique, port)
            if where not in ICMP6_CODE:
                assert cell == expected(host, technique, port)
                continue
            code, err = ICMP6_CODE[where]
            if technique is T.CONNECT:
                want = rules.classify(technique, ConnectOutcome(err))
            else:
                want = rules.classify(technique, IcmpReply(1, code, from_target=True, v6=True))
            assert (cell.state, cell.reason) == (want.state, want.reason), (host.name, port)
