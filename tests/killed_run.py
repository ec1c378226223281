"""A Python script run as its own process and killed from inside (SIGTERM to itself), with the
events it records: how the bench and demo tests check that a kill takes their lab down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_killed(script: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``script`` with argv[1] = the events file, argv[2] = an output directory; return the
    finished process and the events it wrote, one word each."""
    events = tmp_path / "events"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(events), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, events.read_text().split() if events.exists() else []
