"""The text report: owners of open ports (``--owners``) and singular/plural wording (issue #10)."""

from __future__ import annotations

import datetime as dt

from twinscan.core.schema import PortVerdict, ScanMeta, ScanResult, to_frame
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.formats.text_report import render_text
from twinscan.local.owners import Socket, add_owners

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _result(states: dict[int, PortState], owners: list[Socket] | None = None) -> ScanResult:
    frame = to_frame(
        PortVerdict(Engine.NATIVE, Technique.CONNECT, "127.0.0.1", Proto.TCP, p, s,
                    Reason.SYN_ACK if s is PortState.OPEN else Reason.CONN_REFUSED)
        for p, s in states.items()
    )  # fmt: skip
    if owners is not None:
        frame = add_owners(frame, sockets=owners)
    return ScanResult(frame, ScanMeta(Engine.NATIVE, T0, T0, "x", "x", (Technique.CONNECT,)))


def test_owners_show_for_open_ports() -> None:
    import os

    import psutil

    me = psutil.Process()
    result = _result(
        {22: PortState.OPEN, 23: PortState.CLOSED, 8080: PortState.OPEN},
        owners=[Socket(Proto.TCP, "127.0.0.1", 8080, os.getpid())],
    )
    lines = render_text(result).splitlines()
    head = next(line for line in lines if line.startswith("PORT"))
    assert head.split() == ["PORT", "STATE", "SERVICE", "REASON", "PID/PROCESS"]
    row = next(line for line in lines if line.startswith("8080/tcp"))
    assert row.endswith(f"{os.getpid()}/{me.name()}")
    row22 = next(line for line in lines if line.startswith("22/tcp"))
    assert row22.split() == ["22/tcp", "open", "ssh", "syn-ack"]  # nobody we know of


def test_no_owner_column_without_owners() -> None:
    text = render_text(_result({22: PortState.OPEN}))
    assert "PID" not in text


def test_singular_and_plural() -> None:
    one = render_text(_result({22: PortState.OPEN, 23: PortState.CLOSED}))
    assert "Not shown: 1 closed tcp port (1 conn-refused)" in one
    assert "1 IP address, 2 port verdicts in" in one
    single = render_text(_result({22: PortState.OPEN}))
    assert "1 IP address, 1 port verdict in" in single
    many = render_text(_result(dict.fromkeys(range(1, 4), PortState.CLOSED)))
    assert "Not shown: 3 closed tcp ports" in many
