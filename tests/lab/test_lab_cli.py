"""``twinscan lab`` through typer's CliRunner: truth, errors, and (as root) the live commands."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import lab_unavailable
from twinscan.cli import app
from twinscan.formats.csv import read_csv
from twinscan.lab import load_spec
from twinscan.lab.truth import truth_frame

runner = CliRunner()
needs_root = pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable()))


def test_truth_csv_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    result = runner.invoke(app, ["lab", "truth", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    frame = read_csv(out)
    assert frame.equals(truth_frame(load_spec()))


def test_truth_to_stdout_with_spec(tmp_path: Path) -> None:
    spec = tmp_path / "one.toml"
    spec.write_text('[scan]\ntcp_ports = "80"\n[hosts.a]\naddress = "198.18.0.5"\ntcp = [80]\n')
    result = runner.invoke(app, ["lab", "truth", "--spec", str(spec), "--csv", "-"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("engine,technique,host,proto,port,state,reason")
    assert "truth,syn,198.18.0.5,tcp,80,open,syn-ack,,,,well-known" in lines
    assert len(lines) == 1 + 8  # eight TCP techniques x one port (no UDP ports, no bounce)


def test_bad_spec_is_one_line_with_field_and_line(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('[hosts.a]\naddress = "198.18.0.5"\nloss = "lots"\n')
    result = runner.invoke(app, ["lab", "truth", "--spec", str(spec), "--csv", "-"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"twinscan: error: {spec}: line 3: hosts.a.loss: must be a number between 0 and 0.5"
    ]


def test_missing_spec_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lab", "up", "--spec", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert "no such lab spec" in result.output


def test_not_root_is_a_clear_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    for argv in (["lab", "up"], ["lab", "down"], ["lab", "exec", "--", "true"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 3, (argv, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "needs root" in lines[0]


def test_bad_prefix_option() -> None:
    result = runner.invoke(app, ["lab", "status", "--prefix", "no-dashes"])
    assert result.exit_code == 2 and "prefix" in result.output


def test_help_does_not_import_pandas() -> None:
    code = "import sys; from twinscan.cli import app; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_root
def test_exec_and_status_without_a_lab() -> None:
    prefix = "tsN" + secrets.token_hex(2)
    result = runner.invoke(app, ["lab", "exec", "--prefix", prefix, "--", "true"])
    assert result.exit_code == 2 and "not up" in result.output
    result = runner.invoke(app, ["lab", "status", "--prefix", prefix])
    assert result.exit_code == 0 and "down" in result.output
    result = runner.invoke(app, ["lab", "down", "--prefix", prefix])
    assert result.exit_code == 0 and "was not up" in result.output


@needs_root
def test_down_cleans_up_after_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A half-built lab (namespaces, a process in one, a stale state file) is fully removed."""
    monkeypatch.setenv("TWINSCAN_LAB_STATE_DIR", str(tmp_path))
    prefix = "tsC" + secrets.token_hex(2)
    ns = [f"{prefix}-scan", f"{prefix}-h-x"]
    for name in ns:
        subprocess.run(["ip", "netns", "add", name], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", ns[1], "sleep", "60"])
    (tmp_path / f"{prefix}.json").write_text('{"status": "building", "pids": [1]}')
    try:
        result = runner.invoke(app, ["lab", "down", "--prefix", prefix])
        assert result.exit_code == 0, result.output
        assert sleeper.wait(timeout=10) is not None
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(name in listed for name in ns)
        assert not (tmp_path / f"{prefix}.json").exists()
    finally:
        sleeper.kill()
        for name in ns:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.lab
def test_live_commands(lab) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["lab", "status", "--prefix", lab.prefix])
    assert result.exit_code == 0 and f"lab {lab.prefix!r}: up" in result.output
    result = runner.invoke(app, ["lab", "up", "--prefix", lab.prefix])
    assert result.exit_code == 0 and "already up" in result.output  # idempotent
    result = runner.invoke(app, ["lab", "exec", "--prefix", lab.prefix, "--", "sh", "-c", "exit 3"])
    assert result.exit_code == 3
