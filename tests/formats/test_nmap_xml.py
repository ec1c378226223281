"""The nmap XML reader against real nmap output (fixtures/nmap, made by make_fixtures.sh)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import REPO
from twinscan.cli import app
from twinscan.core.errors import InputFileError
from twinscan.core.schema import COLUMNS
from twinscan.core.vocab import Engine, PortState, Reason, Technique
from twinscan.formats.csv import read_csv
from twinscan.formats.nmap_xml_read import NmapXmlError, parse_nmap_xml, read_nmap_xml_file

NMAP_DIR = REPO / "fixtures" / "nmap"
FIXTURES = sorted(NMAP_DIR.glob("*.xml"))

# What make_fixtures.sh set up in its namespace: the truth the XML should reflect.
TCP_OPEN = {22, 80, 8080}
TCP_DROPPED = 25
TCP_ADMIN = 110


def _numservices(path: Path) -> dict[str, int]:
    text = path.read_text()
    return {
        m.group(2): int(m.group(3))
        for m in re.finditer(r'<scaninfo type="(\w+)" protocol="(\w+)" numservices="(\d+)"', text)
    }


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_one_row_per_scanned_port(path: Path) -> None:
    result = read_nmap_xml_file(path)
    frame = result.frame
    assert list(frame.columns) == list(COLUMNS)
    counts = frame.groupby(frame["proto"].astype(str)).size().to_dict()
    assert counts == _numservices(path)
    assert not frame.duplicated(["host", "proto", "port", "technique"]).any()
    assert set(frame["engine"].astype(str)) == {"nmap"}
    assert result.meta.engine is Engine.NMAP
    assert result.meta.arguments.startswith("nmap ")
    assert not result.meta.incomplete


def _states(name: str) -> dict[int, tuple[str, str]]:
    frame = read_nmap_xml_file(NMAP_DIR / name).frame
    return {
        int(p): (str(s), str(r))
        for p, s, r in zip(frame["port"], frame["state"], frame["reason"], strict=True)
    }


def test_syn_fixture_matches_how_it_was_made() -> None:
    states = _states("syn.xml")
    for port in TCP_OPEN:
        assert states[port] == ("open", "syn-ack")
    assert states[TCP_DROPPED] == ("filtered", "no-response")
    assert states[TCP_ADMIN] == ("filtered", "admin-prohibited")
    closed = [p for p, (s, _) in states.items() if s == "closed"]
    assert len(closed) == 201 - 5
    assert all(states[p] == ("closed", "reset") for p in closed)


@pytest.mark.parametrize("name", ["fin.xml", "xmas.xml", "null.xml", "maimon.xml"])
def test_noresponse_open_scans(name: str) -> None:
    states = _states(name)
    expected_open = TCP_OPEN if name != "maimon.xml" else set()
    for port in expected_open:
        assert states[port] == ("open|filtered", "no-response")
    assert states[TCP_DROPPED] == ("open|filtered", "no-response")
    assert states[TCP_ADMIN] == ("filtered", "admin-prohibited")


def test_ack_and_window() -> None:
    ack = _states("ack.xml")
    assert ack[22] == ("unfiltered", "reset")
    assert ack[TCP_DROPPED] == ("filtered", "no-response")
    window = _states("window.xml")
    assert window[22] == ("closed", "reset")  # Linux RSTs carry window 0


def test_udp_and_mixed() -> None:
    udp = _states("udp.xml")
    assert udp[53] == ("open", "udp-response")
    assert udp[5353] == ("open|filtered", "no-response")
    assert udp[69] == ("open|filtered", "no-response")
    assert udp[161] == ("filtered", "admin-prohibited")
    assert udp[1] == ("closed", "port-unreach")
    mixed = read_nmap_xml_file(NMAP_DIR / "syn_udp.xml").frame
    by_tech = mixed.groupby(mixed["technique"].astype(str)).size().to_dict()
    assert by_tech == {"syn": 11, "udp": 21}


def test_all_ports_expanded() -> None:
    frame = read_nmap_xml_file(NMAP_DIR / "syn_allports.xml").frame
    assert len(frame) == 65535
    assert frame["port"].min() == 1 and frame["port"].max() == 65535
    assert set(frame["iana_range"].astype(str)) == {"well-known", "registered", "dynamic"}


def test_pre_792_xml_without_port_lists_is_recovered_from_services() -> None:
    text = (NMAP_DIR / "syn.xml").read_text()
    old = re.sub(r' proto="tcp" ports="[^"]*"', "", text)
    frame = parse_nmap_xml(old).frame
    assert len(frame) == 201
    assert (frame["state"].astype(str) == "closed").sum() == 196


# --- bad input -------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>
<nmaprun>&lol2;</nmaprun>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE nmaprun [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<nmaprun>&xxe;</nmaprun>"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS, "hostile"),
        (EXTERNAL_ENTITY, "hostile"),
        ("<nmaprun><host>", "malformed"),
        ("<html><body/></html>", "not nmap XML"),
        ("", "empty"),
    ],
)
def test_bad_xml_is_refused(text: str, message: str) -> None:
    with pytest.raises(NmapXmlError, match=message):
        parse_nmap_xml(text)


def test_unknown_state_is_refused() -> None:
    text = (NMAP_DIR / "syn.xml").read_text().replace('state="open"', 'state="ajar"', 1)
    with pytest.raises(NmapXmlError, match="ajar"):
        parse_nmap_xml(text)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="nope.xml: no such file"):
        read_nmap_xml_file(tmp_path / "nope.xml")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_reader_only_raises_its_own_error(data: bytes) -> None:
    try:
        parse_nmap_xml(data)
    except NmapXmlError:
        pass


# --- CLI ---------------------------------------------------------------------------------------

runner = CliRunner()


def test_import_nmap_writes_csv(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    files = [str(NMAP_DIR / "syn.xml"), str(NMAP_DIR / "udp.xml")]
    result = runner.invoke(app, ["import-nmap", *files, "--csv", str(out)])
    assert result.exit_code == 0, result.output
    frame = read_csv(out)
    assert len(frame) == 201 + 72
    assert set(frame["technique"].astype(str)) == {Technique.SYN.value, Technique.UDP.value}
    row = frame[(frame["port"] == 53) & (frame["proto"].astype(str) == "udp")].iloc[0]
    assert row["state"] == PortState.OPEN.value and row["reason"] == Reason.UDP_RESPONSE.value


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("<nmaprun", "malformed XML"),
        (BILLION_LAUGHS, "refused hostile XML"),
        (EXTERNAL_ENTITY, "refused hostile XML"),
        ("<root/>", "not nmap XML output"),
    ],
)
def test_import_nmap_bad_input_is_one_line_exit_2(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "input.xml"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["import-nmap", str(path), "--csv", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in result.output
