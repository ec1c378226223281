"""Exports: JSON lines and CSV round trips; nmap XML read back by twinscan, python-nmap and ndiff."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from strategies import verdicts
from twinscan.compare.align import compare
from twinscan.core.errors import InputFileError, UsageError
from twinscan.core.schema import (
    COLUMNS,
    PortVerdict,
    ScanMeta,
    ScanResult,
    conform,
    sort_frame,
    to_frame,
)
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.formats.jsonl import read_jsonl, write_jsonl
from twinscan.formats.nmap_xml_read import parse_nmap_xml, read_nmap_xml_file
from twinscan.formats.nmap_xml_write import (
    MAX_PER_STATE,
    nmap_xml_text,
    write_nmap_xml,
    write_nmap_xml_per_technique,
)

FIXTURES = REPO / "fixtures" / "nmap"
FIXTURE_FILES = sorted(FIXTURES.glob("*.xml"))


@settings(max_examples=60, deadline=None)
@given(st.lists(verdicts, max_size=30))
def test_jsonl_round_trip_is_lossless(rows: list[PortVerdict]) -> None:
    frame = to_frame(rows)
    buf = io.StringIO()
    write_jsonl(frame, buf)
    lines = buf.getvalue().splitlines()
    assert len(lines) == len(frame)
    back = read_jsonl(io.StringIO(buf.getvalue()))
    pd.testing.assert_frame_equal(back, frame)


def test_jsonl_lines_have_schema_keys_in_order(tmp_path: Path) -> None:
    result = read_nmap_xml_file(FIXTURES / "syn.xml")
    path = tmp_path / "syn.jsonl"
    write_jsonl(result, path)
    import json

    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == list(COLUMNS)
    assert first["reason_ip"] is None
    assert isinstance(first["port"], int)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("not json\n", "line 1: not JSON"),
        ("[1, 2]\n", "line 1: expected a JSON object"),
        ('{"engine": "native"}\n', "not twinscan JSON lines"),
    ],
)
def test_read_jsonl_rejects_bad_input(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(InputFileError, match=problem):
        read_jsonl(path)


def test_csv_header_is_the_documented_column_order() -> None:
    from twinscan.formats.csv import read_csv, write_csv

    frame = read_nmap_xml_file(FIXTURES / "syn_udp.xml").frame
    buf = io.StringIO()
    write_csv(frame, buf)
    assert buf.getvalue().splitlines()[0] == ",".join(COLUMNS)
    pd.testing.assert_frame_equal(read_csv(io.StringIO(buf.getvalue())), frame)


# --- nmap XML ------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda p: p.stem)
def test_nmap_xml_round_trip_through_the_reader(fixture: Path) -> None:
    original = read_nmap_xml_file(fixture)
    back = parse_nmap_xml(nmap_xml_text(original))
    pd.testing.assert_frame_equal(sort_frame(back.frame), sort_frame(original.frame))
    assert back.meta.techniques == original.meta.techniques
    assert back.meta.incomplete is False


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda p: p.stem)
def test_folding_matches_nmap(fixture: Path) -> None:
    """twinscan folds exactly the states nmap folded, with the same counts."""

    def extraports(xml: bytes | str) -> set[tuple[str, str]]:
        root = ET.fromstring(xml)
        return {(e.get("state", ""), e.get("count", "")) for e in root.iter("extraports")}

    original = fixture.read_bytes()
    assert extraports(nmap_xml_text(parse_nmap_xml(original))) == extraports(original)


def _result(rows: list[PortVerdict]) -> ScanResult:
    import datetime as dt

    from twinscan.core.schema import ScanMeta

    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return ScanResult(to_frame(rows), ScanMeta(Engine.NATIVE, t, t, "twinscan test", "0"))


def test_folding_threshold_and_open_ports_never_fold() -> None:
    def v(port: int, state: PortState) -> PortVerdict:
        return PortVerdict(
            Engine.NATIVE, Technique.SYN, "127.0.0.1", Proto.TCP, port, state, Reason.RESET
        )

    rows = (
        [v(p, PortState.FILTERED) for p in range(1, 1 + MAX_PER_STATE)]
        + [v(p, PortState.CLOSED) for p in range(100, 101 + MAX_PER_STATE)]
        + [v(p, PortState.OPEN) for p in range(1000, 1100)]
    )
    root = ET.fromstring(nmap_xml_text(_result(rows)))
    assert [(e.get("state"), e.get("count")) for e in root.iter("extraports")] == [
        ("closed", str(MAX_PER_STATE + 1))
    ]
    listed = [p.find("state").get("state") for p in root.iter("port")]  # type: ignore[union-attr]
    assert listed.count("filtered") == MAX_PER_STATE
    assert listed.count("open") == 100


def test_two_tcp_techniques_need_one_file_each(tmp_path: Path) -> None:
    syn = read_nmap_xml_file(FIXTURES / "syn.xml")
    fin = read_nmap_xml_file(FIXTURES / "fin.xml")
    both = ScanResult(conform(pd.concat([syn.frame, fin.frame])), syn.meta)
    with pytest.raises(UsageError, match="one tcp scan type per file"):
        write_nmap_xml(both, tmp_path / "x.xml")
    paths = write_nmap_xml_per_technique(both, tmp_path, "native")
    assert sorted(p.name for p in paths) == ["native-fin.xml", "native-syn.xml"]
    assert read_nmap_xml_file(tmp_path / "native-fin.xml").meta.techniques == (Technique.FIN,)


@pytest.mark.parametrize("fixture", ["syn_udp.xml", "udp.xml", "ack.xml"])
def test_python_nmap_accepts_the_xml(fixture: str) -> None:
    import nmap

    original = read_nmap_xml_file(FIXTURES / fixture)
    scanner = nmap.PortScanner.__new__(nmap.PortScanner)  # no nmap binary needed to analyse
    data = scanner.analyse_nmap_xml_scan(nmap_xml_text(original))
    assert list(data["scan"]) == ["127.0.0.1"]
    host = data["scan"]["127.0.0.1"]
    frame = original.frame
    for proto in ("tcp", "udp"):
        part = frame[frame["proto"] == proto]
        if part.empty:
            continue
        assert data["nmap"]["scaninfo"][proto]["method"] == str(part["technique"].iloc[0])
        listed = part[part["state"].astype(str).isin({"open", "filtered", "open|filtered"})]
        for port, state in zip(listed["port"], listed["state"], strict=True):
            assert host[proto][int(port)]["state"] == str(state)


needs_ndiff = pytest.mark.skipif(shutil.which("ndiff") is None, reason="ndiff not installed")


def _ndiff_ports(a: Path, b: Path) -> tuple[int, set[tuple[str, int, str, str]]]:
    """Run ``ndiff --xml``; return its exit code and the (host, port, state_a, state_b) diffs."""
    proc = subprocess.run(
        ["ndiff", "--xml", str(a), str(b)], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr
    root = ET.fromstring(proc.stdout)
    out: set[tuple[str, int, str, str]] = set()
    for host in root.iter("host"):
        addr = host.find("address").get("addr", "")  # type: ignore[union-attr]
        for diff in host.iter("portdiff"):
            states = []
            portid = 0
            for side in ("a", "b"):
                port = diff.find(f"{side}/port")
                assert port is not None
                portid = int(port.get("portid", "0"))
                state = port.find("state")
                states.append(state.get("state", "") if state is not None else "folded")
            out.add((addr, portid, states[0], states[1]))
    return proc.returncode, out


@needs_ndiff
@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda p: p.stem)
def test_ndiff_sees_no_difference_in_a_faithful_export(fixture: Path, tmp_path: Path) -> None:
    ours = tmp_path / "ours.xml"
    write_nmap_xml(read_nmap_xml_file(fixture), ours)
    code, ports = _ndiff_ports(fixture, ours)
    assert (code, ports) == (0, set())


@needs_ndiff
def test_ndiff_shows_exactly_the_comparator_disagreements(tmp_path: Path) -> None:
    nmap_result = read_nmap_xml_file(FIXTURES / "syn.xml")
    frame = nmap_result.frame.assign(engine="native")
    changes = {22: "filtered", 25: "open", 5: "filtered", 150: "open"}
    for port, state in changes.items():
        frame.loc[frame["port"] == port, "state"] = state
    native = ScanResult(conform(frame), nmap_result.meta)
    native_xml = tmp_path / "native.xml"
    write_nmap_xml(native, native_xml)

    comparison = compare(native.frame, nmap_result.frame)
    bad = comparison.disagreements()
    expected = set(zip(bad["host"], bad["port"].astype(int), strict=True))
    assert {p for _, p in expected} == set(changes)

    code, ports = _ndiff_ports(FIXTURES / "syn.xml", native_xml)
    assert code == 1
    assert {(h, p) for h, p, _, _ in ports} == expected
    for _host, port, state_nmap, state_native in ports:
        assert state_native == changes[port]
        folded = state_nmap == "folded"
        assert folded or state_nmap == str(
            nmap_result.frame.loc[nmap_result.frame["port"] == port, "state"].iloc[0]
        )


@needs_ndiff
@pytest.mark.nmap
@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap not installed")
def test_ndiff_of_a_real_compare_matches_the_comparator(tmp_path: Path) -> None:
    """Real scan on loopback: twinscan's connect engine vs nmap -sT, both saved as XML."""
    import socket

    from twinscan.compare.run import run_compare
    from twinscan.core.timing import resolve
    from twinscan.request.model import ScanRequest
    from twinscan.request.ports import PortPlan

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        open_port = srv.getsockname()[1]
        ports = tuple(sorted({*range(1, 41), open_port}))
        request = ScanRequest(
            targets=("127.0.0.1",),
            ports=PortPlan(ports, ()),
            techniques=(Technique.CONNECT,),
            timing=resolve(4),
        )
        result = run_compare(request, xml_dir=tmp_path)
    finally:
        srv.close()
    rows = result.rows.set_index("port")
    assert rows.loc[open_port, "native_state"] == rows.loc[open_port, "nmap_state"] == "open"
    bad = result.disagreements()
    expected = {(str(h), int(p)) for h, p in zip(bad["host"], bad["port"], strict=True)}
    code, diffs = _ndiff_ports(tmp_path / "nmap-connect.xml", tmp_path / "native-connect.xml")
    assert {(h, p) for h, p, _, _ in diffs} == expected
    assert code == (1 if expected else 0)


def test_xml_header_names_who_made_the_verdicts() -> None:
    """An nmap-made result (--engine nmap -oX) says nmap, its version and its command line;
    twinscan's own result says twinscan with the twinscan command line (issue #10)."""
    import dataclasses
    import datetime as dt

    from twinscan import __version__

    nmap_result = read_nmap_xml_file(FIXTURES / "syn.xml")
    meta = dataclasses.replace(
        nmap_result.meta,
        arguments="/usr/bin/nmap -oX - 127.0.0.1 -n -Pn --reason -sS -p T:1-200",
        engine_version="nmap 7.93",
    )
    text = nmap_xml_text(ScanResult(nmap_result.frame, meta))
    root = ET.fromstring(text.split("\n", 2)[2])
    assert root.get("scanner") == "nmap"
    assert root.get("version") == "7.93"
    assert root.get("args", "").startswith("/usr/bin/nmap ")
    assert f"written by twinscan {__version__} from the verdicts of nmap 7.93" in text
    finished = root.find("runstats/finished")
    assert finished is not None and finished.get("summary", "").startswith("Nmap done;")

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    native = ScanResult(
        nmap_result.frame.assign(engine="native"),
        ScanMeta(Engine.NATIVE, t0, t0, "twinscan scan -sS -p 1-200 127.0.0.1",
                 f"twinscan {__version__}", (Technique.SYN,)),
    )  # fmt: skip
    root = ET.fromstring(nmap_xml_text(native).split("\n", 2)[2])
    assert (root.get("scanner"), root.get("version")) == ("twinscan", __version__)
    assert root.get("args") == "twinscan scan -sS -p 1-200 127.0.0.1"
