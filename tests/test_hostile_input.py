"""Hostile input to every parser a user can feed: any input gives a value or the project's own
error (a ``TwinscanError``), never another exception or a hang. (Checkpoints: tested with
their own module.) Work is bounded by the size of the input: the pathological inputs below
(a port range repeated thousands of times, infinite or NaN time values and rates) complete.
"""

from __future__ import annotations

import ipaddress
import math
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinscan.audit.policy import parse_policy
from twinscan.core.errors import TwinscanError
from twinscan.core.timing import parse_level, resolve
from twinscan.detect.capture import read_capture
from twinscan.formats.nmap_xml_read import parse_nmap_xml
from twinscan.lab.spec import parse_spec
from twinscan.request.build import parse_duration_ms
from twinscan.request.ports import parse_port_list, parse_ports
from twinscan.request.targets import expand_targets

#: More examples for a deeper run: TWINSCAN_FUZZ_EXAMPLES=20000 pytest tests/test_hostile_input.py
EXAMPLES = int(os.environ.get("TWINSCAN_FUZZ_EXAMPLES", "300"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PORTISH = st.text(alphabet="0123456789,-:TUtu* abcxyz[]", max_size=40)
TARGETISH = st.text(alphabet="0123456789./-,:abcdefx*[]% ", max_size=40)


def no_dns(name: str) -> list[str]:
    return []


def _ok(call, *args, **kwargs) -> object:  # type: ignore[no-untyped-def]
    try:
        return call(*args, **kwargs)
    except TwinscanError:
        return None


@FAST
@given(text=PORTISH | st.text(max_size=40))
def test_port_lists(text: str) -> None:
    ports = _ok(parse_port_list, text)
    if isinstance(ports, list):
        assert all(0 <= p <= 65535 for p in ports)
    plan = _ok(parse_ports, text)
    if plan is not None:
        assert all(1 <= p <= 65535 for p in [*plan.tcp, *plan.udp]) or 0 in [*plan.tcp]


def test_repeated_port_ranges_cost_one_pass() -> None:
    """Found by these tests: ``1-65535`` repeated used to be expanded once per repetition."""
    spec = ",".join(["1-65535", "U:1-65535", "T:http", "http"] * 5000)
    plan = parse_ports(spec)
    assert len(plan.tcp) == 65535 and len(plan.udp) == 65535
    assert len(parse_port_list(",".join(["1-65535"] * 20000))) == 65535


def test_repeated_targets_are_expanded_once() -> None:
    got = expand_targets(["198.18.0.0/16"] * 2000, exclude=["198.18.0.0/17"] * 2000, resolve=no_dns)
    assert len(got) == 32768


@FAST
@given(text=TARGETISH | st.text(max_size=40))
def test_targets(text: str) -> None:
    got = _ok(expand_targets, [text], resolve=no_dns)
    if isinstance(got, list):
        for a in got[:10]:
            ipaddress.ip_address(a)


@FAST
@given(
    rate=st.floats(allow_nan=True, allow_infinity=True) | st.none(),
    other=st.floats(allow_nan=True, allow_infinity=True) | st.none(),
)
def test_rates(rate: float | None, other: float | None) -> None:
    """--min-rate/--max-rate: a usable finite rate or the documented ValueError (the CLI
    turns it into a usage error, request/build.py)."""
    try:
        timing = resolve(4, min_rate=rate, max_rate=other)
    except ValueError:
        return
    for r in (timing.min_rate, timing.max_rate):
        assert r is None or (math.isfinite(r) and r > 0)


def test_time_values_that_would_never_end_are_refused() -> None:
    for text in ("nan", "NaN", "inf", "1e999", "infinity s", "1e308h"):
        assert _ok(parse_duration_ms, text) is None, text


@FAST
@given(text=st.text(alphabet=string.digits + "smhdu.-+e ", max_size=20) | st.text(max_size=20))
def test_timing_values(text: str) -> None:
    ms = _ok(parse_duration_ms, text)
    if ms is not None:
        assert 0 <= ms < math.inf  # finite: a wait that ends
    try:  # documented: ValueError, which the CLI turns into a UsageError (cli/options.py)
        level = parse_level(text)
    except ValueError:
        return
    assert 0 <= level <= 5


TOMLISH = st.text(alphabet=string.printable, max_size=300)
SPEC_PIECES = st.lists(
    st.sampled_from(
        ['[lab]\n', 'subnet = "198.18.0.0/24"\n', '[hosts.a]\n', 'address = "198.18.0.10"\n',
         'tcp = "1-70000"\n', 'udp = { 53 = "dns" }\n', 'rules = [{ proto = "udp", ports = "0-5",'
         ' action = "drop" }]\n', 'loss = 2\n', 'silent = true\n', '[scan]\n',
         'tcp_ports = "-"\n', 'udp_ports = [1, 99999]\n', 'icmp_ratelimit = "yes"\n',
         '[hosts.b]\n', 'address = "10.0.0.1"\n', 'bounce_relay = "a"\n']
    ),
    max_size=12,
).map("".join)  # fmt: skip


@FAST
@given(text=TOMLISH | SPEC_PIECES)
def test_lab_specs(text: str) -> None:
    _ok(parse_spec, text)


POLICY_PIECES = st.lists(
    st.sampled_from(
        ['[[rule]]\n', 'hosts = "198.18.0.0/24"\n', 'ports = "1-70000"\n', 'state = "open"\n',
         'allow = true\n', 'technique = "syn"\n', 'ports = "x"\n', '[policy]\n', 'name = 3\n',
         'hosts = ["a", 1]\n']
    ),
    max_size=10,
).map("".join)  # fmt: skip


@FAST
@given(text=TOMLISH | POLICY_PIECES)
def test_audit_policies(text: str) -> None:
    _ok(parse_policy, text)


@FAST
@given(data=st.binary(max_size=400))
def test_captures(data: bytes) -> None:
    _ok(read_capture, data)


PCAP_HEAD = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")


@FAST
@given(tail=st.binary(max_size=200))
def test_truncated_pcap_records(tail: bytes) -> None:
    _ok(read_capture, PCAP_HEAD + tail)


XML_PIECES = st.lists(
    st.sampled_from(
        ['<nmaprun>', '</nmaprun>', '<host>', '</host>', '<address addr="198.18.0.1" addrtype="ipv4"/>',
         '<ports>', '</ports>', '<port protocol="tcp" portid="99999">', '<port protocol="x" portid="a">',
         '<state state="open" reason="syn-ack"/>', '<state state="bogus" reason="?"/>', '</port>',
         '<scaninfo type="syn" protocol="tcp" services="1-5"/>', '<scaninfo type="?" protocol="udp" services="x"/>',
         '<!DOCTYPE x [<!ENTITY a "aaaa">]>', '&a;', '<runstats><finished time="x"/></runstats>']
    ),
    max_size=14,
).map("".join)  # fmt: skip


@FAST
@given(text=XML_PIECES | st.text(max_size=200))
def test_nmap_xml(text: str) -> None:
    _ok(parse_nmap_xml, text)
