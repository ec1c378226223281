"""Lab spec parsing: the default spec loads; every bad field is named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from twinscan.core.errors import InputFileError, UsageError
from twinscan.core.vocab import Proto
from twinscan.lab.spec import (
    Action,
    Conntrack,
    SpecError,
    UdpKind,
    default_spec_path,
    load_spec,
    locate,
    parse_spec,
)

GOOD = """\
[lab]
subnet = "198.18.9.0/24"

[scan]
tcp_ports = "1-10"
udp_ports = [53]
bounce_relay = "relay"
bounce_targets = ["a"]
bounce_ports = "20-22"

[hosts.a]
address = "198.18.9.10"
tcp = [22]
udp = { 53 = "dns", 9 = "silent" }
rules = [
  { proto = "tcp", ports = "5-6", action = "drop" },
  { proto = "udp", ports = 7, action = "admin-prohibited" },
]
conntrack = ["drop-invalid"]
loss = 0.05

[hosts.relay]
address = "198.18.9.11"
ftp = 21

[hosts.void]
address = "198.18.9.99"
silent = true
"""


def test_default_spec_loads_and_covers_every_feature() -> None:
    spec = load_spec()
    assert default_spec_path() == REPO / "fixtures" / "labs" / "default.toml"
    assert spec.subnet.network_address.packed[:2] == bytes([198, 18])
    actions = {r.action for h in spec.hosts for r in h.rules}
    assert actions == set(Action)
    kinds = {k for h in spec.hosts for _, k in h.udp}
    assert {UdpKind.DNS, UdpKind.NTP, UdpKind.SILENT} <= kinds
    assert any(h.silent for h in spec.hosts)
    assert any(h.loss == pytest.approx(0.10) and h.conntrack for h in spec.hosts)
    assert any(h.icmp_ratelimit for h in spec.hosts)
    assert any(not h.icmp_ratelimit and not h.silent for h in spec.hosts)
    assert spec.scan.bounce_relay is not None and spec.host(spec.scan.bounce_relay).ftp == 21


def test_good_spec_parses() -> None:
    spec = parse_spec(GOOD, source="good.toml")
    a = spec.host("a")
    assert a.tcp == (22,)
    assert a.udp_services == {9: UdpKind.SILENT, 53: UdpKind.DNS}
    assert a.rules[0].ports == (5, 6) and a.rules[1].proto is Proto.UDP
    assert a.conntrack == frozenset({Conntrack.DROP_INVALID})
    assert spec.scanner == "198.18.9.1" and spec.sink == "198.18.9.254"
    assert spec.tcp_universe() == (*range(1, 11), 21, 22)
    assert spec.udp_universe() == (7, 9, 53)
    assert spec.scan.bounce_ports == (20, 21, 22)
    assert spec.addresses == {"a": "198.18.9.10", "relay": "198.18.9.11", "void": "198.18.9.99"}


def _bad(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "field", "line", "words"),
    [
        (_bad('action = "drop"', 'action = "dorp"'), "hosts.a.rules[0].action", 16, "dorp"),
        (_bad('action = "admin-prohibited"', 'action = "x"'), "hosts.a.rules[1].action", 17, "x"),
        (_bad('ports = "5-6"', 'ports = "6-5"'), "hosts.a.rules[0].ports", 16, "backwards"),
        (_bad('address = "198.18.9.10"', 'address = "192.0.2.10"'), "hosts.a.address", 12, "usable"),
        (_bad('address = "198.18.9.11"', 'address = "198.18.9.10"'), "hosts.relay.address", 23,
         "already used"),
        (_bad("tcp = [22]", "tcp = [22, 70000]"), "hosts.a.tcp[1]", 13, "70000"),
        (_bad('53 = "dns"', '53 = "dhcp"'), "hosts.a.udp.53", 14, "dhcp"),
        (_bad("loss = 0.05", "loss = 2"), "hosts.a.loss", 20, "outside"),
        (_bad('"drop-invalid"', '"drop-all"'), "hosts.a.conntrack[0]", 19, "drop-all"),
        (_bad('subnet = "198.18.9.0/24"', 'subnet = "10.1.0.0/24"'), "lab.subnet", 2, "inside"),
        (_bad('bounce_relay = "relay"', 'bounce_relay = "a"'), "scan.bounce_relay", 7, "ftp"),
        (_bad('bounce_targets = ["a"]', 'bounce_targets = ["zz"]'), "scan.bounce_targets[0]", 8,
         "zz"),
        (_bad("silent = true", "silent = true\ntcp = [1]"), "hosts.void.tcp", 29, "silent"),
        (_bad("ftp = 21", "ftp = 21\nspeed = 3"), "hosts.relay.speed", 25, "unknown field"),
        (_bad('proto = "udp"', 'proto = "sctp"'), "hosts.a.rules[1].proto", 17, "sctp"),
        (_bad('{ proto = "udp", ports = 7, action = "admin-prohibited" }',
              '{ proto = "udp", ports = 7, action = "tcp-reset" }'),
         "hosts.a.rules[1].action", 17, "tcp"),
        (_bad("[hosts.void]", "[hosts.Void_1]"), "hosts.Void_1", 26, "host names"),
    ],
)  # fmt: skip
def test_bad_field_is_named_with_its_line(text: str, field: str, line: int, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="lab.toml")
    err = info.value
    assert (err.field, err.line) == (field, line)
    assert str(err).startswith(f"lab.toml: line {line}: {field}: ")
    assert words in str(err)
    assert isinstance(err, InputFileError) and isinstance(err, UsageError)  # exit code 2


def test_toml_syntax_error_keeps_tomllib_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(GOOD.replace("loss = 0.05", "loss = = 0.05"), source="x.toml")
    assert info.value.line == 20 and "line 20" in str(info.value)


def test_missing_hosts_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="hosts"):
        parse_spec('[lab]\nsubnet = "198.18.0.0/24"\n')
    with pytest.raises(InputFileError, match="no such lab spec"):
        load_spec(tmp_path / "nope.toml")


def test_locate_finds_array_of_tables_and_nested_keys() -> None:
    text = "[a]\nx = 1\n\n[[a.r]]\nk = 1\n\n[[a.r]]\nk = 2\n"
    assert locate(text, ("a", "x")) == 2
    assert locate(text, ("a", "r", 1, "k")) == 8
    assert locate(text, ("a", "r", 0)) == 4
    assert locate(text, ("zz",)) is None


def test_env_var_overrides_default_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = tmp_path / "mine.toml"
    p.write_text(GOOD)
    monkeypatch.setenv("TWINSCAN_LAB_SPEC", str(p))
    assert load_spec().source == str(p)
