"""``twinscan diff``: saved scans in any format mix, ndiff-like changes, exit codes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import REPO
from twinscan.cli import app
from twinscan.compare.diff import CHANGED, NEW, VANISHED, diff_files, diff_frames, sniff_format
from twinscan.core.errors import InputFileError
from twinscan.core.schema import ScanResult, conform
from twinscan.formats.csv import write_csv
from twinscan.formats.jsonl import write_jsonl
from twinscan.formats.nmap_xml_read import read_nmap_xml_file
from twinscan.formats.nmap_xml_write import write_nmap_xml

FIXTURES = REPO / "fixtures" / "nmap"


@pytest.fixture
def scans(tmp_path: Path) -> dict[str, Path]:
    """The syn fixture as XML/CSV/JSONL, and a modified copy (22 filtered, 7 gone, 9999 new)."""
    original = read_nmap_xml_file(FIXTURES / "syn.xml")
    frame = original.frame.copy()
    frame.loc[frame["port"] == 22, ["state", "reason"]] = ["filtered", "no-response"]
    frame.loc[frame["port"] == 30, "reason"] = "admin-prohibited"  # reason-only change
    extra = frame[frame["port"] == 80].assign(port=9999)
    frame = conform(pd.concat([frame[frame["port"] != 7], extra]))
    changed = ScanResult(frame, original.meta)
    out = {"xml": FIXTURES / "syn.xml"}
    write_csv(original.frame, tmp_path / "same.csv")
    out["csv"] = tmp_path / "same.csv"
    write_jsonl(original, tmp_path / "same.jsonl")
    out["jsonl"] = tmp_path / "same.jsonl"
    write_nmap_xml(changed, tmp_path / "changed.xml")
    out["changed_xml"] = tmp_path / "changed.xml"
    write_jsonl(changed, tmp_path / "changed.jsonl")
    out["changed_jsonl"] = tmp_path / "changed.jsonl"
    write_csv(changed.frame, tmp_path / "changed.csv")
    out["changed_csv"] = tmp_path / "changed.csv"
    return out


@pytest.mark.parametrize("a", ["xml", "csv", "jsonl"])
@pytest.mark.parametrize("b", ["xml", "csv", "jsonl"])
def test_same_scan_in_any_format_pair_has_no_difference(
    scans: dict[str, Path], a: str, b: str
) -> None:
    result = diff_files(scans[a], scans[b])
    assert result.same
    assert result.compared == 201


@pytest.mark.parametrize("b", ["changed_xml", "changed_csv", "changed_jsonl"])
def test_new_vanished_changed(scans: dict[str, Path], b: str) -> None:
    result = diff_files(scans["xml"], scans[b])
    got = {(int(p), c) for p, c in zip(result.rows["port"], result.rows["change"], strict=True)}
    assert got == {(22, CHANGED), (7, VANISHED), (9999, NEW)}
    assert result.counts() == {NEW: 1, VANISHED: 1, CHANGED: 1}
    row = result.rows[result.rows["port"] == 22].iloc[0]
    assert (row["a_state"], row["b_state"], row["b_reason"]) == ("open", "filtered", "no-response")


def test_reason_changes_count_only_when_asked(scans: dict[str, Path]) -> None:
    with_reasons = diff_files(scans["xml"], scans["changed_jsonl"], reasons=True)
    assert (30, CHANGED) in {
        (int(p), c)
        for p, c in zip(with_reasons.rows["port"], with_reasons.rows["change"], strict=True)
    }


def test_diff_is_antisymmetric(scans: dict[str, Path]) -> None:
    a = read_nmap_xml_file(scans["xml"]).frame
    b = read_nmap_xml_file(scans["changed_xml"]).frame
    forward, backward = diff_frames(a, b), diff_frames(b, a)
    swap = {NEW: VANISHED, VANISHED: NEW, CHANGED: CHANGED}
    assert {
        (int(p), swap[c]) for p, c in zip(forward.rows["port"], forward.rows["change"], strict=True)
    } == {(int(p), c) for p, c in zip(backward.rows["port"], backward.rows["change"], strict=True)}


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"<?xml", "xml"),
        (b"\xef\xbb\xbf  <nmaprun", "xml"),
        (b'{"engine"', "jsonl"),
        (b"engine,", "csv"),
    ],
)
def test_sniff_format(head: bytes, kind: str) -> None:
    assert sniff_format(head) == kind


def test_garbage_is_a_one_line_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("hello,world\n1,2\n")
    with pytest.raises(InputFileError, match="bad.csv: not nmap XML, twinscan CSV or JSON lines"):
        diff_files(bad, bad)


runner = CliRunner()


def test_cli_exit_codes_and_output(scans: dict[str, Path], tmp_path: Path) -> None:
    same = runner.invoke(app, ["diff", str(scans["xml"]), str(scans["jsonl"])])
    assert same.exit_code == 0, same.output
    assert "0 new, 0 vanished, 0 changed" in same.output

    out_csv = tmp_path / "d.csv"
    changed = runner.invoke(
        app, ["diff", str(scans["xml"]), str(scans["changed_csv"]), "--csv", str(out_csv)]
    )
    assert changed.exit_code == 1
    assert "~ 22/tcp      open -> filtered" in changed.output
    assert "+ 9999/tcp" in changed.output and "- 7/tcp" in changed.output
    assert pd.read_csv(out_csv)["change"].tolist().count("changed") == 1

    missing = runner.invoke(app, ["diff", str(scans["xml"]), str(tmp_path / "nope.xml")])
    assert missing.exit_code == 2
    assert "no such file" in missing.output
    assert "Traceback" not in missing.output


# --- scans made with different techniques (issue #10) -----------------------------------------


def _scan(technique: str, states: dict[int, str], host: str = "127.0.0.1") -> pd.DataFrame:
    from twinscan.core.schema import PortVerdict, to_frame
    from twinscan.core.vocab import Engine, PortState, Reason, Technique

    tech = Technique(technique)
    return to_frame(
        PortVerdict(Engine.NATIVE, tech, host, tech.proto, p, PortState(s),
                    Reason.SYN_ACK if s == "open" else Reason.RESET)
        for p, s in states.items()
    )  # fmt: skip


def test_syn_against_connect_matches_on_host_proto_port() -> None:
    from twinscan.compare.diff import render_diff

    a = _scan("syn", {22: "open", 23: "closed", 24: "closed"})
    b = _scan("connect", {22: "open", 23: "open", 24: "closed"})
    result = diff_frames(a, b)
    assert result.compared == 3
    assert result.counts() == {NEW: 0, VANISHED: 0, CHANGED: 1}
    assert list(result.rows["technique"]) == ["syn/connect"]
    text = render_diff(result, "a.csv", "b.xml")
    assert "# A is a syn scan, B a connect scan: ports matched on host, proto and port" in text
    assert "127.0.0.1 (syn scan in A, connect scan in B):" in text
    assert text.splitlines()[-1] == "3 ports compared: 0 new, 0 vanished, 1 changed"


def test_single_port_count_is_singular() -> None:
    from twinscan.compare.diff import render_diff

    a = _scan("syn", {22: "open"})
    text = render_diff(diff_frames(a, _scan("syn", {22: "closed"})), "a", "b")
    assert text.splitlines()[-1] == "1 port compared: 0 new, 0 vanished, 1 changed"


def test_several_techniques_match_by_technique_and_say_what_is_left_out() -> None:
    a = pd.concat([_scan("syn", {22: "open"}), _scan("fin", {22: "open|filtered"})])
    b = pd.concat([_scan("syn", {22: "open"}), _scan("udp", {53: "open"})])
    result = diff_frames(conform(a), conform(b))
    assert result.same and result.compared == 1
    assert result.notes == [
        "only A ran fin: not compared",
        "only B ran udp: not compared",
        "ports matched by technique: syn",
    ]


def test_nothing_in_common_is_refused_with_the_reason(tmp_path: Path) -> None:
    from twinscan.core.errors import UsageError

    a = pd.concat([_scan("syn", {22: "open"}), _scan("fin", {22: "open|filtered"})])
    b = pd.concat([_scan("connect", {22: "open"}), _scan("udp", {53: "open"})])
    with pytest.raises(UsageError, match="no technique in common"):
        diff_frames(conform(a), conform(b))
    with pytest.raises(UsageError, match="syn scan .tcp. and B a udp scan"):
        diff_frames(_scan("syn", {22: "open"}), _scan("udp", {22: "open"}))
    write_csv(conform(a), tmp_path / "a.csv")
    write_csv(conform(b), tmp_path / "b.csv")
    res = CliRunner().invoke(app, ["diff", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert res.exit_code == 2 and "no technique in common" in res.output
