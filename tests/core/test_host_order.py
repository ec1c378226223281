"""Hosts sort by address everywhere (127.0.0.2 before 127.0.0.10), IPv4 before IPv6, as nmap."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import re
from xml.etree import ElementTree as ET

import pandas as pd

from twinscan.compare.align import compare
from twinscan.compare.diff import diff_frames, render_diff
from twinscan.compare.render_html import render_html
from twinscan.core.rules import Verdict
from twinscan.core.schema import (
    PortVerdict,
    ScanMeta,
    ScanResult,
    host_sort_key,
    sort_frame,
    to_frame,
)
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.engines.native_result import build_result, row
from twinscan.formats.csv import write_csv
from twinscan.formats.jsonl import write_jsonl
from twinscan.formats.nmap_xml_write import nmap_xml_text
from twinscan.formats.text_report import render_text
from twinscan.lab.spec import parse_spec
from twinscan.lab.truth import truth_frame
from twinscan.request.model import ScanRequest
from twinscan.request.ports import PortPlan

#: Given in text order (the bug) and in address order (the fix).
TEXT_ORDER = ["127.0.0.1", "127.0.0.10", "127.0.0.11", "127.0.0.2", "::1"]
ADDRESS_ORDER = ["127.0.0.1", "127.0.0.2", "127.0.0.10", "127.0.0.11", "::1"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _frame(engine: Engine = Engine.NATIVE, state: PortState = PortState.OPEN) -> pd.DataFrame:
    reason = Reason.SYN_ACK if state is PortState.OPEN else Reason.RESET
    return to_frame(
        PortVerdict(engine, Technique.SYN, h, Proto.TCP, 22, state, reason) for h in TEXT_ORDER
    )


def _result(frame: pd.DataFrame) -> ScanResult:
    meta = ScanMeta(Engine.NATIVE, T0, T0, "twinscan scan", "twinscan 0", (Technique.SYN,))
    return ScanResult(frame, meta)


def _hosts_in(text: str) -> list[str]:
    found = re.findall(r"(127\.0\.0\.\d+|::1)\b", text)
    return list(dict.fromkeys(found))


def test_sort_key_orders_by_address_ipv4_first_names_last() -> None:
    hosts = ["::1", "127.0.0.10", "example.test", "127.0.0.2", "10.0.0.1", "fe80::1%eth0", "::2"]
    assert sorted(hosts, key=host_sort_key) == [
        "10.0.0.1",
        "127.0.0.2",
        "127.0.0.10",
        "::1",
        "::2",
        "fe80::1%eth0",
        "example.test",
    ]
    v4 = [str(ipaddress.ip_address(i)) for i in (2**32 - 1, 1, 256, 65536, 2**24)]
    assert sorted(v4, key=host_sort_key) == [str(ipaddress.ip_address(a)) for a in sorted(
        int(ipaddress.ip_address(h)) for h in v4)]  # fmt: skip


def test_sort_frame_and_csv_json_exports() -> None:
    frame = sort_frame(_frame())
    assert list(frame["host"]) == ADDRESS_ORDER
    buf = io.StringIO()
    write_csv(frame, buf)
    assert _hosts_in(buf.getvalue()) == ADDRESS_ORDER
    buf = io.StringIO()
    write_jsonl(frame, buf)
    assert _hosts_in(buf.getvalue()) == ADDRESS_ORDER


def test_text_report() -> None:
    text = render_text(_result(_frame()))
    heads = re.findall(r"scan report for (\S+)", text)
    assert heads == ADDRESS_ORDER


def test_xml_export() -> None:
    root = ET.fromstring(nmap_xml_text(_result(_frame())).split("\n", 2)[2])
    assert [a.get("addr") for a in root.iter("address")] == ADDRESS_ORDER


def test_compare_rows_text_and_html() -> None:
    from rich.console import Console

    from twinscan.compare.render_text import print_comparison

    comparison = compare(_frame(), _frame(Engine.NMAP, PortState.CLOSED))
    assert list(comparison.rows["host"]) == ADDRESS_ORDER
    console = Console(width=120, record=True)
    print_comparison(comparison, console)
    assert _hosts_in(console.export_text()) == ADDRESS_ORDER
    html = render_html(comparison)
    assert _hosts_in(html.split("id='disagreements'", 1)[1]) == ADDRESS_ORDER


def test_diff() -> None:
    diff = diff_frames(_frame(), _frame(state=PortState.CLOSED))
    assert list(diff.rows["host"]) == ADDRESS_ORDER
    assert _hosts_in(render_diff(diff, "a", "b")) == ADDRESS_ORDER


def test_native_result_columns() -> None:
    request = ScanRequest(
        targets=tuple(TEXT_ORDER), ports=PortPlan((22,), ()), techniques=(Technique.CONNECT,)
    )
    verdict = Verdict(PortState.OPEN, Reason.SYN_ACK)
    rows = [row(h, p, verdict, None) for h in reversed(TEXT_ORDER) for p in (80, 22)]
    result = build_result(request, Technique.CONNECT, rows, started=T0)
    assert list(dict.fromkeys(result.frame["host"])) == ADDRESS_ORDER
    assert list(result.frame["port"][:2]) == [22, 80]


def test_lab_truth() -> None:
    spec = parse_spec(
        '[scan]\ntcp_ports = "1"\nudp_ports = "1"\n'
        '[hosts.b]\naddress = "198.18.0.10"\n[hosts.a]\naddress = "198.18.0.9"\n'
    )
    frame = truth_frame(spec, (Technique.SYN,))
    assert list(frame["host"]) == ["198.18.0.9", "198.18.0.10"]
