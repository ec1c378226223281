"""CLI start-up cost and the basic commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from twinscan import __version__
from twinscan.cli import app


def test_help_imports_no_heavy_modules() -> None:
    code = (
        "import sys, twinscan.cli\n"
        "heavy = [m for m in ('pandas', 'scapy', 'nmap', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert f"twinscan {__version__}" in result.output


def test_python_dash_m_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "twinscan", "--help"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0
    assert "scan" in out.stdout


def test_scan_refuses_foreign_targets_without_sending() -> None:
    result = CliRunner().invoke(app, ["scan", "-sT", "-p", "80", "203.0.113.9"])
    assert result.exit_code == 2
    assert "refusing to scan 203.0.113.9" in result.stderr


def test_xml_output_with_two_tcp_techniques_is_refused_before_scanning(tmp_path: Path) -> None:
    out = tmp_path / "x.xml"
    result = CliRunner().invoke(
        app, ["scan", "-sT", "-sS", "-p", "1", "-oX", str(out), "127.0.0.1"]
    )
    assert result.exit_code == 2
    assert "one TCP technique per file" in result.stderr
    assert not out.exists()
