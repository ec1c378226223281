"""IPv6 targets and the guard over IPv6 (issue #17)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core.errors import TargetError
from twinscan.request.safety import (
    LabNamespace,
    Route,
    check_targets,
    route_groups,
)
from twinscan.request.targets import MAX_HOSTS, expand_targets


def test_ipv6_addresses_and_prefixes() -> None:
    assert expand_targets(["::1"], family=6) == ["::1"]
    assert expand_targets(["2001:DB8:18:0::A"], family=6) == ["2001:db8:18::a"]
    assert len(expand_targets(["2001:db8:18::/120"], family=6)) == 256
    assert len(expand_targets(["2001:db8:18::/112"], family=6)) == MAX_HOSTS


def test_a_64_sweep_is_refused_clearly() -> None:
    with pytest.raises(TargetError, match=r"2\*\*64 addresses: an IPv6 prefix cannot be swept"):
        expand_targets(["2001:db8:18::/64"], family=6)
    with pytest.raises(TargetError, match=r"/112 or longer"):
        expand_targets(["2001:db8:18::/111"], family=6)


def test_ipv6_ranges_are_refused_as_nmap_does() -> None:
    with pytest.raises(TargetError, match="ranges are not accepted"):
        expand_targets(["2001:db8:18::1-5"], family=6)


def test_hostname_with_aaaa_record() -> None:
    names = {"dual": ["198.18.0.10", "2001:db8:18::10"], "v4only": ["198.18.0.11"]}
    assert expand_targets(["dual"], family=6, resolve=names.__getitem__) == ["2001:db8:18::10"]
    assert expand_targets(["dual"], resolve=names.__getitem__) == ["198.18.0.10"]
    with pytest.raises(TargetError, match="IPv6 address"):
        expand_targets(["v4only"], family=6, resolve=names.__getitem__)


@settings(max_examples=100, deadline=None)
@given(st.ip_addresses(v=6), st.integers(118, 128))
def test_prefix_expansion_is_every_address(addr: ipaddress.IPv6Address, plen: int) -> None:
    net = ipaddress.IPv6Network(f"{addr}/{plen}", strict=False)
    got = expand_targets([f"{addr}/{plen}"], family=6)
    assert len(got) == net.num_addresses and got[0] == str(net.network_address)
    assert all(":" in g and ipaddress.IPv6Address(g) in net for g in got[:5])


LAB_NS = (1, 2)
LABS = [LabNamespace("ts", "ts-scan", LAB_NS, frozenset({"tsbr"}))]


def test_guard_ipv6_loopback_local_and_outside() -> None:
    check_targets(["::1"], local=set())
    check_targets(["fd00::5"], local={"fd00::5"})
    with pytest.raises(TargetError, match=r"refusing to scan 2606:4700::1111: not loopback"):
        check_targets(["2606:4700::1111"], local=set())


def test_guard_ipv6_lab_needs_a_route_into_the_lab() -> None:
    inside = {"2001:db8:18::10": Route(LAB_NS, "tsbr")}
    check_targets(
        ["2001:db8:18::10"],
        routes=lambda a: inside,
        labs=LABS,
        local=set(),
    )
    outside = {"2001:db8:18::10": Route((9, 9), "eth0", gateway="fe80::1")}
    with pytest.raises(TargetError, match="not into a twinscan lab"):
        check_targets(["2001:db8:18::10"], routes=lambda a: outside, labs=LABS, local=set())
    with pytest.raises(TargetError, match="no route"):
        check_targets(
            ["2001:db8:18::10"],
            routes=lambda a: {a[0]: Route((9, 9), None)},
            labs=LABS,
            local=set(),
        )


def test_route_groups_ipv6_by_64_and_longer_routes() -> None:
    every = [str(a) for a in ipaddress.ip_network("2001:db8:18::/120")] + ["2001:db8:19::1"]
    splits = [ipaddress.IPv6Network("2001:db8:18::63/128"), ipaddress.IPv4Network("198.18.0.99/32")]
    groups = route_groups([*every, "198.18.0.1"], splits)
    assert len(groups) == 4
    assert ["2001:db8:18::63"] in groups.values() and ["2001:db8:19::1"] in groups.values()


def test_host_namespace_refuses_ipv6_lab_addresses() -> None:
    """The real kernel: this namespace has no route into a lab for 2001:db8::/32."""
    with pytest.raises(TargetError, match=r"refusing to scan 2001:db8:18::10: "):
        check_targets(["2001:db8:18::10"])
