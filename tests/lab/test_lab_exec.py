"""``twinscan lab exec``: a command that cannot run exits like a shell says (127, 126)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twinscan.cli import app
from twinscan.lab.netns import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, exec_problem


def test_missing_command_is_127(tmp_path: Path) -> None:
    assert exec_problem("twinscan-no-such-command-x", path=str(tmp_path)) == (
        EXIT_NOT_FOUND,
        "command not found",
    )
    assert exec_problem(str(tmp_path / "nope")) == (EXIT_NOT_FOUND, "No such file or directory")
    assert EXIT_NOT_FOUND == 127 and EXIT_NOT_EXECUTABLE == 126


def test_not_executable_is_126(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    if os.access(script, os.X_OK):
        pytest.skip("this user may execute anything")
    assert exec_problem(str(script)) == (EXIT_NOT_EXECUTABLE, "Permission denied")
    assert exec_problem("script", path=str(tmp_path)) == (EXIT_NOT_EXECUTABLE, "Permission denied")
    assert exec_problem(str(tmp_path)) == (EXIT_NOT_EXECUTABLE, "Is a directory")


def test_runnable_commands_have_no_problem(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    assert exec_problem(str(script)) is None
    assert exec_problem("script", path=str(tmp_path)) is None
    assert exec_problem("sh") is None


@pytest.mark.lab
def test_lab_exec_exit_codes_like_a_shell(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    base = ["lab", "exec", "--prefix", lab.prefix, "--"]
    result = runner.invoke(app, [*base, "twinscan-no-such-command-x"])
    assert result.exit_code == 127, result.output
    assert "command not found" in result.output
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    result = runner.invoke(app, [*base, str(script)])
    assert result.exit_code == (0 if os.access(script, os.X_OK) else 126), result.output
    result = runner.invoke(app, [*base, "sh", "-c", "exit 5"])
    assert result.exit_code == 5
