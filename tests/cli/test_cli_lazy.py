"""``twinscan COMMAND`` imports only that command's module; the full app has every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from twinscan.cli import COMMAND_MODULES, app


def _top_level_names() -> set[str]:
    group = typer.main.get_group(app)
    return set(group.commands)


def test_every_command_has_its_module() -> None:
    assert _top_level_names() == set(COMMAND_MODULES)


@pytest.mark.parametrize("technique", ["-sT", "-sS", "-sU"])
def test_a_small_scan_imports_no_other_command_module_nor_numpy(
    technique: str, tmp_path: Path
) -> None:
    """Nor typer (a common command line is parsed without it: ``cli.scan_fast``), nor pickle
    and json (only streamed scans and lab addresses need them), nor scapy once
    the probe templates are cached; and the command leaves its objects frozen (no last
    collection over them at exit).

    The first scan of a technique on a machine builds its templates with scapy (which imports
    pickle and json) and caches them: that run must work, the second is the one measured. A
    fresh cache directory makes both runs the same on a fresh machine and on a used one.
    """
    code = (
        f"import gc, sys; from twinscan.cli import main; sys.argv = ['twinscan', 'scan', "
        f"'{technique}', '-p', '1-1000', '127.0.0.1']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert gc.get_freeze_count() > 0\n"
        "if sys.argv[-1] == 'measure':\n"
        "    assert 'scapy' not in sys.modules, 'scapy: the template cache was not used'\n"
        "    assert 'pickle' not in sys.modules and 'json' not in sys.modules\n"
        "mods = sorted(m for m in sys.modules if m.startswith('twinscan.cli.'))\n"
        "heavy = [m in sys.modules for m in ('typer', 'numpy', 'pandas')]\n"
        "print(mods, *heavy, file=sys.stderr)"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    for run in ("fill", "measure"):
        proc = subprocess.run(
            [sys.executable, "-c", code.replace("sys.argv[-1]", repr(run))],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
    if technique != "-sT":  # a connect scan sends no packets of its own
        assert any((tmp_path / "twinscan" / "templates").iterdir())
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("[") and "twinscan.cli.audit" not in last, last
    assert "twinscan.cli.scan_run" in last  # the command ran, parsed without typer
    assert "twinscan.cli.scan'" not in last  # (typer's declaration of it was not needed)
    assert last.endswith("False False False"), last  # neither typer, numpy nor pandas


def test_help_lists_every_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twinscan", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    for name in COMMAND_MODULES:
        assert name in proc.stdout
