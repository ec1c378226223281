"""Engine dispatch: which module scans which technique, imported only when used.

Every engine module exposes ``scan(request, technique, *, progress) -> ScanResult`` returning
one technique's verdicts in the results schema (one row per target and port).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from twinscan.progress import NoProgress, Progress
from twinscan.vocab import Engine, Technique

if TYPE_CHECKING:
    from twinscan.request import ScanRequest
    from twinscan.schema import ScanResult

Runner = Callable[..., "ScanResult"]

#: native engine modules per technique; the nmap engine handles every technique.
_NATIVE: dict[Technique, str] = {
    Technique.CONNECT: "twinscan.engines.connect",
    Technique.FTP_BOUNCE: "twinscan.engines.bounce",
    **{
        t: "twinscan.engines.raw"
        for t in Technique
        if t not in (Technique.CONNECT, Technique.FTP_BOUNCE)
    },
}
_NMAP = "twinscan.engines.nmap_engine"


def runner(engine: Engine, technique: Technique) -> Runner:
    module = _NMAP if engine is Engine.NMAP else _NATIVE[technique]
    scan: Runner = importlib.import_module(module).scan
    return scan


def run_scan(
    request: ScanRequest, engine: Engine, *, progress: Progress | None = None
) -> ScanResult:
    """Run every technique of ``request`` through ``engine``, one after the other."""
    from twinscan.schema import combine

    results: list[ScanResult] = []
    for tech in request.techniques:
        results.append(runner(engine, tech)(request, tech, progress=progress or NoProgress()))
        if results[-1].meta.incomplete:
            break  # Ctrl-C: keep what finished, run nothing more
    return combine(results)
