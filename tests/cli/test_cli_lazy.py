"""``twinscan COMMAND`` imports only that command's module; the full app has every command."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main

from twinscan.cli import COMMAND_MODULES, app


def _top_level_names() -> set[str]:
    group = typer.main.get_group(app)
    return set(group.commands)


def test_every_command_has_its_module() -> None:
    assert _top_level_names() == set(COMMAND_MODULES)


@pytest.mark.parametrize("technique", ["-sT", "-sS", "-sU"])
def test_a_small_scan_imports_no_other_command_module_nor_numpy(technique: str) -> None:
    """Nor pickle and json (only streamed scans and lab addresses need them); and the command
    leaves its objects frozen (no last collection over them at exit)."""
    code = (
        f"import gc, sys; from twinscan.cli import main; sys.argv = ['twinscan', 'scan', "
        f"'{technique}', '-p', '1-1000', '127.0.0.1']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert gc.get_freeze_count() > 0\n"
        "assert 'pickle' not in sys.modules and 'json' not in sys.modules\n"
        "mods = sorted(m for m in sys.modules if m.startswith('twinscan.cli.'))\n"
        "print(mods, 'numpy' in sys.modules, 'pandas' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("[") and "twinscan.cli.audit" not in last, last
    assert "twinscan.cli.scan" in last
    assert last.endswith("False False"), last  # a small scan needs neither numpy nor pandas


def test_help_lists_every_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twinscan", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    for name in COMMAND_MODULES:
        assert name in proc.stdout
