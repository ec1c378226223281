"""nmap-payloads parsing, the installed file, and the hand-written fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinscan.protocol.udp_payloads import (
    FALLBACK,
    NMAP_PAYLOADS_PATHS,
    PayloadSyntaxError,
    load_payloads,
    parse_payloads,
    unescape,
)

SAMPLE = r"""
# comment
udp 7 "\x0D\x0A\x0D\x0A"
udp 53,69 "\x00\x00\x10\x00"   # trailing comment
udp 53
  "\x77\x77\x01\x00"
  "\x07version\x04bind\x00" source 53
udp 40000-40100 "rpc"
"""


def test_parse_sample() -> None:
    table = parse_payloads(SAMPLE)
    assert table(7) == (b"\r\n\r\n",)
    assert table(69) == (b"\x00\x00\x10\x00",)
    assert table(53) == (b"\x00\x00\x10\x00", b"\x77\x77\x01\x00\x07version\x04bind\x00")
    assert table(40050) == (b"rpc",)
    assert table(9) == (b"",)  # no payload: an empty datagram


@pytest.mark.parametrize(
    ("text", "line"),
    [('udp 7 "\\xZZ"', 1), ('\nudp x "a"', 2), ("udp 7", 1), ('\n\nfoo 7 "a"', 3)],
)
def test_syntax_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(PayloadSyntaxError, match=f"line {line}"):
        parse_payloads(text)


@given(st.binary(max_size=64))
def test_unescape_round_trip(data: bytes) -> None:
    assert unescape("".join(f"\\x{b:02x}" for b in data)) == data


def test_fallback_covers_the_well_known_services() -> None:
    table = load_payloads("/nonexistent/nmap-payloads")
    for port in (53, 123, 137, 161):
        assert table(port) == FALLBACK[port]
    assert table(123)[0][0] & 0x07 == 3  # NTP client mode


@pytest.mark.skipif(
    not any(Path(p).is_file() for p in NMAP_PAYLOADS_PATHS), reason="nmap-payloads not installed"
)
def test_installed_file_parses_and_has_the_services() -> None:
    table = load_payloads()
    for port in (53, 123, 137, 161):
        assert table(port) != (b"",)
    assert table(53)[0] == b"\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00"
