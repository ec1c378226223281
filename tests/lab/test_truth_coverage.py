"""``--truth`` scores every cell it is asked about, and says so when it cannot (issue #10 item 5).

The lab's truth covers every port of a lab host a scan asks about (a port with no listener or
rule is closed, unless the host's firewall, conntrack or silence says otherwise); cells with no
truth at all (an address that is not a lab host) are counted and named in the text and HTML.
"""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from twinscan.compare.align import compare, describe_truth_gaps
from twinscan.compare.render_html import render_html
from twinscan.compare.render_text import print_comparison
from twinscan.compare.run import lab_truth, run_compare
from twinscan.core.schema import PortVerdict, ScanMeta, ScanResult, to_frame
from twinscan.core.vocab import Engine, PortState, Reason, Technique
from twinscan.engines.nmap_engine import NmapRun
from twinscan.lab import load_spec
from twinscan.lab.truth import truth_frame
from twinscan.request.model import ScanRequest
from twinscan.request.ports import PortPlan

S, R, T = PortState, Reason, Technique
SPEC = load_spec()  # fixtures/labs/default.toml
RL = SPEC.host("rl").address
ACL = SPEC.host("acl").address


def _states(frame: object) -> dict[int, tuple[str, str]]:
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    return {
        int(p): (str(s), str(r))
        for p, s, r in zip(frame["port"], frame["state"], frame["reason"], strict=True)
    }


def test_lab_truth_covers_every_requested_port() -> None:
    """The README's example: -sU -p U:1-40 on the rate-limited host; the universe has 4 of them."""
    request = ScanRequest(targets=(RL,), ports=PortPlan((), tuple(range(1, 41))),
                          techniques=(T.UDP,))  # fmt: skip
    truth = lab_truth(request)
    assert len(truth) == 40
    states = _states(truth)
    assert sorted(states) == list(range(1, 41))
    assert states[1] == ("closed", "port-unreach")  # no service, no rule: closed
    assert states[40] == ("closed", "port-unreach")


def test_truth_frame_takes_ports_and_hosts() -> None:
    ports = PortPlan(tcp=(1, 100, 150, 555, 8080, 9999), udp=(1, 69, 500))
    frame = truth_frame(SPEC, (T.SYN, T.UDP, T.FTP_BOUNCE), ports=ports, hosts=[ACL, "198.18.0.77"])
    assert set(frame["host"]) == {ACL}  # 198.18.0.77 is no lab host: no truth
    syn = _states(frame[frame["technique"].astype(str) == "syn"])
    assert syn == {
        1: ("closed", "reset"),  # outside the spec's universe, still known
        100: ("filtered", "no-response"),  # drop rule
        150: ("closed", "reset"),
        555: ("closed", "reset"),
        8080: ("closed", "reset"),  # tcp-reset rule in front of a listener
        9999: ("closed", "reset"),
    }
    udp = _states(frame[frame["technique"].astype(str) == "udp"])
    assert udp == {1: ("closed", "port-unreach"), 69: ("closed", "port-unreach"),
                   500: ("closed", "port-unreach")}  # fmt: skip
    bounce = frame[frame["technique"].astype(str) == "ftp-bounce"]
    assert sorted(int(p) for p in bounce["port"]) == sorted(ports.tcp)
    # Without ports: the spec's universe, as before.
    assert len(truth_frame(SPEC, (T.SYN,))) == len(SPEC.hosts) * len(SPEC.tcp_universe())


def test_silent_and_firewalled_hosts_have_a_truth_for_any_port() -> None:
    dark, fw = SPEC.host("dark").address, SPEC.host("fw").address
    ports = PortPlan(tcp=(4242,), udp=(4242,))
    frame = truth_frame(SPEC, (T.SYN, T.ACK, T.UDP), ports=ports, hosts=[dark, fw])
    got = {
        (str(h), str(t)): str(s)
        for h, t, s in zip(frame["host"], frame["technique"], frame["state"], strict=True)
    }
    assert got == {
        (dark, "syn"): "filtered",
        (dark, "ack"): "filtered",
        (dark, "udp"): "open|filtered",
        (fw, "syn"): "closed",
        (fw, "ack"): "filtered",  # conntrack drops the lone ACK
        (fw, "udp"): "closed",
    }


def _result(
    engine: Engine, technique: Technique, host: str, states: dict[int, PortState]
) -> ScanResult:
    import datetime as dt

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    frame = to_frame(
        PortVerdict(engine, technique, host, technique.proto, p, s, Reason.NO_RESPONSE)
        for p, s in states.items()
    )
    return ScanResult(frame, ScanMeta(engine, now, now, "x", "x", (technique,)))


def test_rate_limited_udp_example_is_scored_on_every_port() -> None:
    """Native says closed everywhere, nmap open|filtered on 24 of 40: nmap is not 100% right."""
    request = ScanRequest(targets=(RL,), ports=PortPlan((), tuple(range(1, 41))),
                          techniques=(T.UDP,))  # fmt: skip
    nmap_states = {p: (S.OPEN_FILTERED if p % 5 < 3 else S.CLOSED) for p in range(1, 41)}

    def native(req: ScanRequest, tech: Technique, progress: object) -> ScanResult:
        return _result(Engine.NATIVE, tech, RL, dict.fromkeys(req.ports_for(tech), S.CLOSED))

    def nmap(req: ScanRequest, tech: Technique, progress: object) -> NmapRun:
        return NmapRun(_result(Engine.NMAP, tech, RL, nmap_states), b"", ("nmap",))

    result = run_compare(request, truth=lab_truth(request), native=native, nmap=nmap)  # type: ignore[arg-type]
    rec = result.summary.iloc[0]
    assert rec["truth_ports"] == 40
    assert rec["native_accuracy_pct"] == 100.0
    assert rec["nmap_accuracy_pct"] == 40.0
    assert result.truth_gaps() == []


def _partial() -> object:
    native = to_frame(
        PortVerdict(Engine.NATIVE, T.UDP, RL, T.UDP.proto, p, S.CLOSED, R.PORT_UNREACH)
        for p in range(1, 41)
    )
    nmap = native.assign(engine="nmap")
    truth = native.assign(engine="truth").iloc[:3]
    return compare(native, nmap, truth=truth)


def test_partial_truth_is_counted_and_said() -> None:
    comparison = _partial()
    assert comparison.truth_gaps() == [("udp", 3, 40)]  # type: ignore[attr-defined]
    line = describe_truth_gaps([("udp", 3, 40)])
    assert line is not None and "udp: 3 of 40 ports" in line
    console = Console(width=100, record=True)
    print_comparison(comparison, console)  # type: ignore[arg-type]
    text = console.export_text()
    assert "truth known for udp: 3 of 40 ports" in text
    assert re.search(r"udp\s+40\s+100\.0%.*100\.0%\s+100\.0%\s+3\s*$", text, re.M)
    html = render_html(comparison)  # type: ignore[arg-type]
    assert "id='truth-gaps'" in html and "udp: 3 of 40 ports" in html


def test_full_truth_says_nothing_more() -> None:
    native = to_frame(
        PortVerdict(Engine.NATIVE, T.UDP, RL, T.UDP.proto, p, S.CLOSED, R.PORT_UNREACH)
        for p in range(1, 4)
    )
    comparison = compare(native, native.assign(engine="nmap"), truth=native.assign(engine="truth"))
    assert comparison.truth_gaps() == []
    console = Console(width=100, record=True)
    print_comparison(comparison, console)
    text = console.export_text()
    assert "truth known" not in text and "scored" not in text
    assert "truth-gaps" not in render_html(comparison)


@pytest.mark.parametrize("truth", [False, True])
def test_compare_table_fits_80_columns_without_cutting_a_header(truth: bool) -> None:
    techniques = [T.CONNECT, T.SYN, T.UDP, T.FTP_BOUNCE, T.MAIMON]
    native, nmap = [], []
    for tech in techniques:
        for port in range(1, 65536, 331):
            native.append(PortVerdict(Engine.NATIVE, tech, "fe80::1234:5678:9abc:def0",
                                      tech.proto, port, S.CLOSED, R.RESET))  # fmt: skip
            nmap.append(PortVerdict(Engine.NMAP, tech, "fe80::1234:5678:9abc:def0", tech.proto,
                                    port, S.OPEN_FILTERED if port % 2 else S.CLOSED,
                                    R.NO_RESPONSE))  # fmt: skip
    a, b = to_frame(native), to_frame(nmap)
    timings = {(e, t): 1234.56 for e in Engine for t in techniques}
    comparison = compare(a, b, truth=a.assign(engine="truth").iloc[:-3] if truth else None,
                         timings=timings)  # fmt: skip
    console = Console(width=80, record=True)
    print_comparison(comparison, console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for head in ("technique", "ports", "agree", "native", "nmap", "native/", "s", "host", "port"):
        assert re.search(rf"(^|\s){re.escape(head)}(\s|$)", text, re.M), head
    if truth:
        for head in ("acc", "scored", "truth"):
            assert re.search(rf"(^|\s){head}(\s|$)", text, re.M), head


@pytest.mark.lab
def test_truth_beyond_the_universe_matches_the_live_lab(lab) -> None:  # type: ignore[no-untyped-def]
    """Ports outside the spec's universe (101-300 on plain and acl) read as the truth says."""
    import io
    import sys

    from twinscan.formats.csv import read_csv

    hosts = [lab.address("plain"), lab.address("acl")]
    out = lab.run(
        [
            sys.executable,
            "-m",
            "twinscan",
            "scan",
            "-sS",
            "-T4",
            "-p",
            "95-300,8080",
            *hosts,
            "--csv",
            "-",
        ]
    )
    assert out.returncode == 0, out.stderr
    scan = read_csv(io.StringIO(out.stdout))
    request = ScanRequest(targets=tuple(hosts), ports=PortPlan((*range(95, 301), 8080), ()),
                          techniques=(T.SYN,))  # fmt: skip
    truth = lab_truth(request, str(lab.spec_path))
    got = {(str(h), int(p)): str(s) for h, p, s in zip(scan["host"], scan["port"], scan["state"],
                                                       strict=True)}  # fmt: skip
    want = {(str(h), int(p)): str(s) for h, p, s in zip(truth["host"], truth["port"],
                                                        truth["state"], strict=True)}  # fmt: skip
    assert len(want) == 2 * 207
    assert got == want
