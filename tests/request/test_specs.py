"""Target, port and timing specifications as nmap takes them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinscan.core.errors import TargetError, UsageError
from twinscan.core.timing import TEMPLATES, resolve
from twinscan.core.vocab import Proto
from twinscan.request.build import parse_duration_ms
from twinscan.request.model import BounceRelay
from twinscan.request.ports import (
    ServiceEntry,
    format_port_list,
    parse_port_list,
    parse_ports,
    top_ports,
)
from twinscan.request.safety import check_targets
from twinscan.request.targets import expand_targets


def no_dns(name: str) -> list[str]:
    return {"lab-host": ["198.18.1.10"]}.get(name, [])


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["198.18.1.1-3"], ["198.18.1.1", "198.18.1.2", "198.18.1.3"]),
        (["198.18.0-1.7"], ["198.18.0.7", "198.18.1.7"]),
        (["198.18.2.4,6"], ["198.18.2.4", "198.18.2.6"]),
        (["198.18.3.0/30"], ["198.18.3.0", "198.18.3.1", "198.18.3.2", "198.18.3.3"]),
        (["127.0.0.1", "127.0.0.1"], ["127.0.0.1"]),
        (["::1"], ["::1"]),
        (["lab-host"], ["198.18.1.10"]),
    ],
)
def test_expand_targets(specs: list[str], expected: list[str]) -> None:
    assert expand_targets(specs, resolve=no_dns) == expected


def test_exclude() -> None:
    got = expand_targets(["198.18.1.0/29"], exclude=["198.18.1.0,198.18.1.7"], resolve=no_dns)
    assert got == [f"198.18.1.{i}" for i in range(1, 7)]


@pytest.mark.parametrize("bad", ["198.18.1.300", "198.18.1.5-2", "not a host", "198.18.0.0/8"])
def test_bad_targets(bad: str) -> None:
    with pytest.raises(TargetError):
        expand_targets([bad], resolve=no_dns)


def test_safety_policy() -> None:
    check_targets(["127.0.0.1", "::1"])  # lab addresses: tests/test_safety_route.py
    with pytest.raises(TargetError, match="refusing to scan 203.0.113.5"):
        check_targets(["203.0.113.5"])


def test_port_syntax() -> None:
    plan = parse_ports("22,80,1000-1002")
    assert plan.tcp == plan.udp == (22, 80, 1000, 1001, 1002)
    plan = parse_ports("U:53,111,T:21-23,80")
    assert plan.udp == (53, 111) and plan.tcp == (21, 22, 23, 80)
    assert parse_ports("-").tcp == tuple(range(1, 65536))
    assert parse_ports("-3").tcp == (1, 2, 3)
    assert parse_ports("65534-").tcp == (65534, 65535)
    assert parse_ports("0").tcp == (0,)
    assert parse_ports("dynamic").tcp == tuple(range(49152, 65536))
    assert parse_ports("T:well-known").tcp == tuple(range(0, 1024))
    assert parse_ports("T:well-known").udp == ()
    assert len(parse_ports("registered").udp) == 49151 - 1024 + 1


@pytest.mark.parametrize("bad", ["70000", "5-1", "T:", "zzz-not-a-service"])
def test_bad_ports(bad: str) -> None:
    with pytest.raises(TargetError):
        parse_ports(bad)


def test_top_ports_by_frequency() -> None:
    services = (
        ServiceEntry("http", 80, Proto.TCP, 0.48),
        ServiceEntry("telnet", 23, Proto.TCP, 0.22),
        ServiceEntry("snmp", 161, Proto.UDP, 0.43),
        ServiceEntry("https", 443, Proto.TCP, 0.21),
    )
    assert top_ports(2, Proto.TCP, services) == [80, 23]
    assert top_ports(5, Proto.UDP, services) == [161]


@given(st.sets(st.integers(0, 65535), max_size=200))
def test_port_list_round_trip(ports: set[int]) -> None:
    assert parse_port_list(format_port_list(ports)) == sorted(ports)


def _runs_one_by_one(ports: set[int]) -> str:
    """The shortest range list, port by port (what ``format_port_list`` must give)."""
    out: list[str] = []
    start = prev = None
    for port in sorted(ports):
        if prev is not None and port == prev + 1:
            prev = port
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = port
    if start is not None:
        out.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(out)


_ranges = st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 3000)), max_size=6)


@given(_ranges, st.sets(st.integers(0, 65535), max_size=50))
def test_port_list_is_the_shortest_range_list(
    ranges: list[tuple[int, int]], extra: set[int]
) -> None:
    """Runs found by halving (a -p- list in a few steps) are every maximal run, joined where
    halves meet: the same text as walking port by port."""
    ports = set(extra)
    for lo, length in ranges:
        ports.update(range(lo, min(65536, lo + length)))
    assert format_port_list(ports) == _runs_one_by_one(ports)
    assert format_port_list(range(65536)) == "0-65535"


def test_timing_templates_match_nmap() -> None:
    t4 = TEMPLATES[4]
    assert (t4.initial_rtt_timeout_ms, t4.min_rtt_timeout_ms, t4.max_rtt_timeout_ms) == (
        500,
        100,
        1250,
    )
    assert t4.max_retries == 6 and t4.max_tcp_scan_delay_ms == 10
    assert TEMPLATES[5].max_retries == 2 and TEMPLATES[5].max_rtt_timeout_ms == 300
    assert TEMPLATES[3].max_retries == 10 and TEMPLATES[0].scan_delay_ms == 300_000
    assert resolve(4, max_retries=1).max_retries == 1
    assert resolve(4, scan_delay_ms=50).max_tcp_scan_delay_ms == 50
    with pytest.raises(ValueError):
        resolve(6)
    with pytest.raises(ValueError):
        resolve(3, min_rate=100, max_rate=10)


def test_durations() -> None:
    assert parse_duration_ms("250") == 250
    assert parse_duration_ms("2s") == 2000
    assert parse_duration_ms("1.5m") == 90_000
    with pytest.raises(UsageError):
        parse_duration_ms("fast")


def test_bounce_relay() -> None:
    assert BounceRelay.parse("198.18.1.30") == BounceRelay("198.18.1.30", 21)
    r = BounceRelay.parse("bob:pw@198.18.1.30:2121")
    assert (r.user, r.password, r.host, r.port) == ("bob", "pw", "198.18.1.30", 2121)


def test_bounce_flag_adds_or_is_the_bounce_scan() -> None:
    from twinscan.core.vocab import Technique
    from twinscan.request.build import build_request

    both = build_request(
        targets=["127.0.0.1"], techniques=[Technique.CONNECT], ports="21", bounce="127.0.0.1:2121"
    )
    assert both.techniques == (Technique.CONNECT, Technique.FTP_BOUNCE)
    assert both.bounce == BounceRelay("127.0.0.1", 2121)
    alone = build_request(targets=["127.0.0.1"], techniques=[], ports="21", bounce="127.0.0.1")
    assert alone.techniques == (Technique.FTP_BOUNCE,)
    with pytest.raises(UsageError, match="needs -b"):
        build_request(targets=["127.0.0.1"], techniques=[Technique.FTP_BOUNCE], ports="21")


def test_all_ports_of_both_protocols_are_one_tuple() -> None:
    """``-p-`` holds 65535 ports per protocol once, not twice (every forked worker carries
    them); different lists stay apart."""
    plan = parse_ports("-")
    assert plan.tcp == plan.udp == tuple(range(1, 65536)) and plan.udp is plan.tcp
    mixed = parse_ports("T:1-10,U:5")
    assert mixed.tcp == tuple(range(1, 11)) and mixed.udp == (5,)


@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=12),
    st.sets(st.integers(0, 400), max_size=20),
)
def test_expanded_ports_are_the_sorted_union(spans: list[tuple[int, int]], extra: set[int]) -> None:
    """Ranges (overlapping, touching, empty, in any order) and named ports: sorted, each once."""
    from twinscan.request.ports import _expand

    ranges = [range(lo, lo + width) for lo, width in spans]
    expected = sorted(extra.union(*(set(r) for r in ranges)))
    assert _expand(ranges, extra) == expected
