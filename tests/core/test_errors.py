"""The exception tree (``core.errors``): every project exception is in it, each maps to one
line and its exit code, and a broken nmap-payloads file is one line, not a traceback."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twinscan.cli import app
from twinscan.core import errors
from twinscan.core.errors import (
    EnvironmentProblem,
    InputFileError,
    MalformedData,
    PayloadFileError,
    PortSpecError,
    ScanFailed,
    TargetError,
    TwinscanError,
    UsageError,
)
from twinscan.core.rules import UnexpectedConnectError
from twinscan.detect.capture import NotACapture
from twinscan.formats.nmap_xml_read import NmapXmlError
from twinscan.lab.netns import LabNotUp
from twinscan.lab.spec import SpecError
from twinscan.protocol.ftp_bounce import ProtocolError, RelayRefused
from twinscan.protocol.packets import MalformedReply
from twinscan.protocol.udp_payloads import PAYLOADS_ENV, PayloadSyntaxError, load_payloads
from twinscan.request.ports import parse_port_list, parse_ports

BROKEN = 'udp 53 "\\x00"\nudp 123 nonsense\n'


def test_every_project_exception_is_in_the_tree() -> None:
    expected = {
        NotACapture: MalformedData,
        MalformedReply: MalformedData,
        PayloadSyntaxError: MalformedData,
        NmapXmlError: MalformedData,
        ProtocolError: ScanFailed,
        RelayRefused: ScanFailed,
        UnexpectedConnectError: ScanFailed,
        SpecError: InputFileError,
        LabNotUp: UsageError,
        PayloadFileError: InputFileError,
        PortSpecError: TargetError,
    }
    for cls, parent in expected.items():
        assert issubclass(cls, parent) and issubclass(cls, TwinscanError), cls
    # parsers' callers catch ValueError: the parse errors still are ones
    assert issubclass(MalformedData, ValueError) and issubclass(PortSpecError, ValueError)


def test_exit_codes() -> None:
    assert TwinscanError.exit_code == 4  # never 1: 1 means "differences", not "error"
    assert UsageError.exit_code == InputFileError.exit_code == TargetError.exit_code == 2
    assert MalformedData.exit_code == PortSpecError.exit_code == 2
    assert EnvironmentProblem.exit_code == 3 and ScanFailed.exit_code == 4
    assert errors.EXIT_INTERRUPTED == 130
    help_text = " ".join(CliRunner().invoke(app, ["--help"]).output.split())
    assert "Exit codes: 0 success" in help_text and "130 interrupted" in help_text


@pytest.mark.parametrize(
    "exc",
    [
        InputFileError("a.csv", "no such file"),
        SpecError("lab.toml", "hosts.a", 3, "bad"),
        PayloadFileError("p", "line 2: bad"),
        ScanFailed("relay refused"),
    ],
)
def test_errors_survive_pickling(exc: TwinscanError) -> None:
    # forked workers send their errors to the parent pickled
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert back.__dict__ == exc.__dict__


def test_port_lists_raise_one_error_type() -> None:
    for bad in ("6-5", "x", "70000", "5-"):
        with pytest.raises(PortSpecError):
            parse_port_list(bad)
    for bad in ("6-5", "70000", "T:", "no-such-service-name"):
        with pytest.raises(PortSpecError):
            parse_ports(bad)
    assert parse_port_list(" 1-3, 5 ") == [1, 2, 3, 5]


def test_broken_payloads_file_is_an_input_file_error(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "nmap-payloads"
    path.write_text(BROKEN)
    with pytest.raises(PayloadFileError, match=r"nmap-payloads: nmap-payloads file: line 2"):
        load_payloads(str(path))
    monkeypatch.setenv(PAYLOADS_ENV, str(path))
    with pytest.raises(PayloadFileError, match="line 2"):
        load_payloads()
    monkeypatch.setenv(PAYLOADS_ENV, str(tmp_path / "missing"))
    with pytest.raises(PayloadFileError, match="no such file"):
        load_payloads()
    good = tmp_path / "good"
    good.write_text('udp 53 "\\x01"\n')
    monkeypatch.setenv(PAYLOADS_ENV, str(good))
    assert load_payloads()(53) == (b"\x01",)


@pytest.mark.skipif(os.geteuid() != 0, reason="the raw engine needs root")
@pytest.mark.parametrize("ports", ["U:53", "U:1-5000"])  # in process; in a forked worker
def test_scan_with_a_broken_payloads_file_is_one_line(tmp_path: Path, ports: str) -> None:
    path = tmp_path / "nmap-payloads"
    path.write_text(BROKEN)
    proc = subprocess.run(
        [sys.executable, "-m", "twinscan", "scan", "-sU", "-p", ports, "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, PAYLOADS_ENV: str(path)},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"twinscan: error: {path}: nmap-payloads file: line 2: 'udp 123' has no payload"
    ]
