"""The comparator (pure) and the comparison runner with injected engines and clock."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from twinscan.compare.align import (
    MISSING,
    ROW_COLUMNS,
    SUMMARY_COLUMNS,
    TRUTH_COLUMNS,
    align,
    compare,
    confusion,
    state_pairs,
)
from twinscan.compare.run import run_compare
from twinscan.core.schema import PortVerdict, ScanMeta, ScanResult, to_frame
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.engines.nmap_engine import NmapRun
from twinscan.formats.nmap_xml_read import parse_nmap_xml, read_nmap_xml_file
from twinscan.request.model import ScanRequest
from twinscan.request.ports import PortPlan

FIXTURES = REPO / "fixtures" / "nmap"


def verdict(
    port: int,
    state: PortState,
    *,
    engine: Engine = Engine.NATIVE,
    technique: Technique = Technique.SYN,
    reason: Reason = Reason.RESET,
    host: str = "198.18.0.10",
) -> PortVerdict:
    return PortVerdict(engine, technique, host, technique.proto, port, state, reason)


def with_engine(frame: pd.DataFrame, engine: Engine) -> pd.DataFrame:
    return frame.assign(engine=engine.value)


def test_identical_frames_agree_everywhere() -> None:
    nmap = read_nmap_xml_file(FIXTURES / "syn.xml").frame
    result = compare(with_engine(nmap, Engine.NATIVE), nmap)
    assert result.all_agree
    assert list(result.rows.columns) == list(ROW_COLUMNS)
    assert len(result.rows) == len(nmap) == 201
    assert list(result.summary.columns) == list(SUMMARY_COLUMNS)
    rec = result.summary.iloc[0]
    assert (rec["technique"], rec["ports"], rec["agreement_pct"], rec["pairs"]) == (
        "syn",
        201,
        100.0,
        "",
    )


def test_changed_and_missing_ports_are_disagreements() -> None:
    native = to_frame(
        [
            verdict(22, PortState.OPEN, reason=Reason.SYN_ACK),
            verdict(23, PortState.CLOSED),
            verdict(24, PortState.CLOSED),  # nmap has no verdict for 24
        ]
    )
    nmap = to_frame(
        [
            verdict(22, PortState.FILTERED, engine=Engine.NMAP, reason=Reason.NO_RESPONSE),
            verdict(23, PortState.CLOSED, engine=Engine.NMAP),
            verdict(25, PortState.OPEN, engine=Engine.NMAP, reason=Reason.SYN_ACK),
        ]
    )
    result = compare(native, nmap)
    assert not result.all_agree
    assert len(result.rows) == 4  # the union of keys: nothing dropped
    bad = result.disagreements()
    got = {
        (int(p), str(a) if pd.notna(a) else MISSING, str(b) if pd.notna(b) else MISSING)
        for p, a, b in zip(bad["port"], bad["native_state"], bad["nmap_state"], strict=True)
    }
    assert got == {(22, "open", "filtered"), (24, "closed", MISSING), (25, MISSING, "open")}
    row22 = result.rows[result.rows["port"] == 22].iloc[0]
    assert (row22["native_reason"], row22["nmap_reason"]) == ("syn-ack", "no-response")
    assert state_pairs(result.rows) == [
        ("closed", MISSING, 1),
        (MISSING, "open", 1),
        ("open", "filtered", 1),
    ]
    summary = result.summary.iloc[0]
    assert summary["disagreements"] == 3
    assert summary["agreement_pct"] == 25.0


def test_reason_differences_alone_do_not_count() -> None:
    native = to_frame([verdict(80, PortState.FILTERED, reason=Reason.ADMIN_PROHIBITED)])
    nmap = to_frame(
        [verdict(80, PortState.FILTERED, engine=Engine.NMAP, reason=Reason.NO_RESPONSE)]
    )
    assert compare(native, nmap).all_agree


def test_keys_include_technique_and_host() -> None:
    native = to_frame(
        [
            verdict(80, PortState.OPEN, technique=Technique.SYN),
            verdict(80, PortState.CLOSED, technique=Technique.FIN),
        ]
    )
    nmap = to_frame(
        [
            verdict(80, PortState.OPEN, engine=Engine.NMAP, technique=Technique.SYN),
            verdict(80, PortState.CLOSED, engine=Engine.NMAP, technique=Technique.FIN),
            verdict(80, PortState.OPEN, engine=Engine.NMAP, host="198.18.0.11"),
        ]
    )
    result = compare(native, nmap)
    assert len(result.rows) == 3
    assert int((~result.rows["agree"]).sum()) == 1
    assert list(result.summary["technique"]) == ["syn", "fin"]


def test_duplicate_verdicts_are_rejected() -> None:
    dup = to_frame([verdict(1, PortState.OPEN), verdict(1, PortState.CLOSED)])
    with pytest.raises(ValueError, match="more than one verdict"):
        align(dup, dup)


def test_truth_columns_and_accuracy() -> None:
    truth = to_frame(
        [
            verdict(53, PortState.CLOSED, engine=Engine.TRUTH, technique=Technique.UDP),
            verdict(54, PortState.CLOSED, engine=Engine.TRUTH, technique=Technique.UDP),
            verdict(99, PortState.OPEN, engine=Engine.TRUTH, technique=Technique.UDP),
        ]
    )
    native = to_frame(
        [
            verdict(53, PortState.CLOSED, technique=Technique.UDP),
            verdict(54, PortState.CLOSED, technique=Technique.UDP),
            verdict(55, PortState.CLOSED, technique=Technique.UDP),  # truth unknown
        ]
    )
    nmap = to_frame(
        [
            verdict(53, PortState.CLOSED, engine=Engine.NMAP, technique=Technique.UDP),
            verdict(54, PortState.OPEN_FILTERED, engine=Engine.NMAP, technique=Technique.UDP),
            verdict(55, PortState.CLOSED, engine=Engine.NMAP, technique=Technique.UDP),
        ]
    )
    result = compare(native, nmap, truth=truth)
    assert result.has_truth
    assert list(result.rows.columns) == [*ROW_COLUMNS, *TRUTH_COLUMNS]
    assert len(result.rows) == 3  # truth-only port 99 is not a scanned port
    by_port = result.rows.set_index("port")
    assert by_port.loc[54, "truth_state"] == "closed"
    assert bool(by_port.loc[54, "native_correct"]) is True
    assert bool(by_port.loc[54, "nmap_correct"]) is False
    assert pd.isna(by_port.loc[55, "truth_state"])
    assert pd.isna(by_port.loc[55, "native_correct"])
    rec = result.summary.iloc[0]
    assert rec["truth_ports"] == 2
    assert rec["native_accuracy_pct"] == 100.0
    assert rec["nmap_accuracy_pct"] == 50.0


def test_missing_verdict_is_never_correct() -> None:
    truth = to_frame([verdict(1, PortState.CLOSED, engine=Engine.TRUTH)])
    native = to_frame([verdict(1, PortState.CLOSED)])
    nmap = to_frame([verdict(2, PortState.CLOSED, engine=Engine.NMAP)])
    rows = compare(native, nmap, truth=truth).rows.set_index("port")
    assert bool(rows.loc[1, "nmap_correct"]) is False
    assert bool(rows.loc[1, "native_correct"]) is True


def test_confusion_matrix_counts_pairs() -> None:
    native = to_frame(
        [verdict(p, PortState.CLOSED) for p in range(1, 11)] + [verdict(11, PortState.OPEN)]
    )
    nmap = to_frame(
        [verdict(p, PortState.CLOSED, engine=Engine.NMAP) for p in range(1, 10)]
        + [verdict(10, PortState.FILTERED, engine=Engine.NMAP)]
    )
    matrix = confusion(compare(native, nmap).rows, Technique.SYN)
    assert list(matrix.index) == ["open", "closed", "filtered", MISSING]
    assert list(matrix.columns) == list(matrix.index)
    assert matrix.loc["closed", "closed"] == 9
    assert matrix.loc["closed", "filtered"] == 1
    assert matrix.loc["open", MISSING] == 1
    assert int(matrix.to_numpy().sum()) == 11


def test_timings_give_ratio() -> None:
    frame = to_frame([verdict(1, PortState.OPEN)])
    timings = {(Engine.NATIVE, Technique.SYN): 0.5, (Engine.NMAP, Technique.SYN): 2.0}
    rec = compare(frame, with_engine(frame, Engine.NMAP), timings=timings).summary.iloc[0]
    assert (rec["native_s"], rec["nmap_s"], rec["ratio"]) == (0.5, 2.0, 0.25)


cells = st.dictionaries(
    st.tuples(st.sampled_from(["198.18.0.10", "198.18.0.11"]), st.integers(1, 40)),
    st.sampled_from([PortState.OPEN, PortState.CLOSED, PortState.FILTERED]),
    max_size=30,
)


def _frame(cells_: dict[tuple[str, int], PortState], engine: Engine) -> pd.DataFrame:
    return to_frame(verdict(p, s, engine=engine, host=h) for (h, p), s in cells_.items())


@settings(max_examples=80, deadline=None)
@given(cells, cells)
def test_alignment_properties(
    a: dict[tuple[str, int], PortState], b: dict[tuple[str, int], PortState]
) -> None:
    result = compare(_frame(a, Engine.NATIVE), _frame(b, Engine.NMAP))
    keys = set(a) | set(b)
    assert len(result.rows) == len(keys)
    expected_agree = {k for k in keys if k in a and k in b and a[k] is b[k]}
    assert int(result.rows["agree"].sum()) == len(expected_agree)
    # Swapping the engines swaps the pairs and keeps the count.
    swapped = compare(_frame(b, Engine.NATIVE), _frame(a, Engine.NMAP))
    assert sorted((y, x, n) for x, y, n in state_pairs(result.rows)) == sorted(
        state_pairs(swapped.rows)
    )
    if keys:
        matrix = confusion(result.rows, Technique.SYN)
        assert int(matrix.to_numpy().sum()) == len(keys)


# --- the runner, with fake engines and a fake clock ----------------------------------------


def _result(engine: Engine, technique: Technique, states: dict[int, PortState]) -> ScanResult:
    frame = to_frame(
        verdict(p, s, engine=engine, technique=technique, host="127.0.0.1")
        for p, s in states.items()
    )
    import datetime as dt

    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return ScanResult(frame, ScanMeta(engine, t, t, "fake", "fake", (technique,)))


def test_runner_alternates_engines_and_times_each(tmp_path: Path) -> None:
    request = ScanRequest(
        targets=("127.0.0.1",),
        ports=PortPlan(tcp=(1, 2), udp=(53,)),
        techniques=(Technique.SYN, Technique.UDP),
    )
    calls: list[str] = []
    now = [0.0]

    def clock() -> float:
        return now[0]

    def native(req: ScanRequest, tech: Technique, progress: object) -> ScanResult:
        calls.append(f"native-{tech}")
        now[0] += 1.0
        return _result(Engine.NATIVE, tech, dict.fromkeys(req.ports_for(tech), PortState.CLOSED))

    def nmap(req: ScanRequest, tech: Technique, progress: object) -> NmapRun:
        calls.append(f"nmap-{tech}")
        now[0] += 4.0
        res = _result(Engine.NMAP, tech, dict.fromkeys(req.ports_for(tech), PortState.CLOSED))
        from twinscan.formats.nmap_xml_write import nmap_xml_text

        return NmapRun(res, nmap_xml_text(res).encode(), ("nmap",))

    result = run_compare(request, native=native, nmap=nmap, clock=clock, xml_dir=tmp_path)
    assert calls == ["native-syn", "nmap-syn", "native-udp", "nmap-udp"]
    assert result.all_agree
    assert list(result.summary["ratio"]) == [0.25, 0.25]
    assert list(result.summary["nmap_s"]) == [4.0, 4.0]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["native-syn.xml", "native-udp.xml", "nmap-syn.xml", "nmap-udp.xml"]
    back = parse_nmap_xml((tmp_path / "native-udp.xml").read_bytes())
    assert set(back.frame["port"]) == {53}
    assert set(back.frame["proto"].astype(str)) == {Proto.UDP.value}


def test_runner_rejects_lab_truth_for_non_lab_targets() -> None:
    from twinscan.compare.run import lab_truth
    from twinscan.core.errors import UsageError

    request = ScanRequest(
        targets=("127.0.0.1",), ports=PortPlan((1,), ()), techniques=(Technique.SYN,)
    )
    with pytest.raises(UsageError, match="--truth needs lab targets"):
        lab_truth(request)


def test_lab_truth_is_restricted_to_the_targets() -> None:
    from twinscan.compare.run import lab_truth
    from twinscan.lab import load_spec

    spec = load_spec()
    plain = spec.host("plain").address
    request = ScanRequest(
        targets=(plain,), ports=PortPlan((22, 23), ()), techniques=(Technique.SYN,)
    )
    truth = lab_truth(request)
    assert set(truth["host"]) == {plain}
    assert set(truth["technique"].astype(str)) == {"syn"}
    states = dict(zip(truth["port"].astype(int), truth["state"].astype(str), strict=True))
    assert states[22] == "open" and states[23] == "closed"


# --- the CLI, with fake engines (no network) --------------------------------------------------


def _fake_engines(monkeypatch: pytest.MonkeyPatch, nmap_state: PortState) -> None:
    import twinscan.compare.run as rc

    real = rc.run_compare

    def native(req: ScanRequest, tech: Technique, progress: object) -> ScanResult:
        return _result(Engine.NATIVE, tech, dict.fromkeys(req.ports_for(tech), PortState.CLOSED))

    def nmap(req: ScanRequest, tech: Technique, progress: object) -> NmapRun:
        states = dict.fromkeys(req.ports_for(tech), PortState.CLOSED)
        states[req.ports_for(tech)[0]] = nmap_state
        res = _result(Engine.NMAP, tech, states)
        return NmapRun(res, b"", ("nmap",))

    def fake(request: ScanRequest, **kw: object) -> object:
        kw.pop("xml_dir", None)
        return real(request, native=native, nmap=nmap, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(rc, "run_compare", fake)


@pytest.mark.parametrize("nmap_state, code", [(PortState.CLOSED, 0), (PortState.FILTERED, 1)])
def test_cli_exit_code_is_the_verdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nmap_state: PortState, code: int
) -> None:
    from typer.testing import CliRunner

    from twinscan.cli import app

    _fake_engines(monkeypatch, nmap_state)
    out = tmp_path / "rows.csv"
    html = tmp_path / "r.html"
    res = CliRunner().invoke(
        app,
        [
            "compare",
            "127.0.0.1",
            "-sSU",
            "-p",
            "T:1-3,U:53",
            "--csv",
            str(out),
            "--html",
            str(html),
        ],
    )
    assert res.exit_code == code, res.output
    rows = pd.read_csv(out)
    assert list(rows.columns) == list(ROW_COLUMNS)
    assert len(rows) == 4
    assert int((~rows["agree"]).sum()) == (0 if code == 0 else 2)
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert ("every verdict agrees" in res.output) is (code == 0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "127.0.0.1", "-s", "Q"], "unknown scan type -sQ"),
        (["compare", "127.0.0.1", "-p", "70000"], "out of range"),
        (["compare", "-sT"], "no targets"),
        (["compare", "127.0.0.1", "-sT", "-p", "1", "--truth"], "--truth needs lab targets"),
    ],
)
def test_cli_bad_input_exits_2(
    monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    from typer.testing import CliRunner

    from twinscan.cli import app

    _fake_engines(monkeypatch, PortState.CLOSED)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
