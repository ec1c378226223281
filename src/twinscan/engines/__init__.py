"""Engine dispatch: which module scans which technique, imported only when used.

Every engine module exposes ``scan(request, technique, *, progress) -> ScanResult`` returning
one technique's verdicts in the results schema (one row per target and port).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from twinscan.core import phases
from twinscan.core.progress import NoProgress, Progress
from twinscan.core.vocab import Engine, Technique
from twinscan.engines import interrupt

if TYPE_CHECKING:
    from twinscan.core.schema import ScanResult
    from twinscan.engines.checkpoint import CheckpointLog
    from twinscan.request.model import ScanRequest

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
    request: ScanRequest,
    engine: Engine,
    *,
    progress: Progress | None = None,
    checkpoint: CheckpointLog | None = None,
) -> ScanResult:
    """Run every technique of ``request`` through ``engine``, one after the other.

    Ctrl-C (SIGINT) or SIGTERM stops the scan: the technique that was running returns the
    verdicts it has, no further technique starts, and the result is marked incomplete (a
    technique stopped before it had any verdict contributes none).

    With ``checkpoint`` every verdict is appended to that log as it becomes final, and a
    resumed log's finished cells are not scanned again (``engines.checkpoint``).
    """
    from twinscan.core.schema import combine

    if checkpoint is not None:
        from twinscan.engines.checkpoint import run_checkpointed

        return run_checkpointed(request, engine, checkpoint, progress or NoProgress())

    interrupt.clear()
    results: list[ScanResult] = []
    stopped = False
    with interrupt.terminate_as_interrupt():
        for tech in request.techniques:
            phases.mark(f"{tech.value}: engine starts")
            try:
                results.append(
                    runner(engine, tech)(request, tech, progress=progress or NoProgress())
                )
            except KeyboardInterrupt:
                results.append(empty_result(request, engine, tech))
            phases.mark(f"{tech.value}: result built")
            if results[-1].meta.incomplete or interrupt.requested():
                stopped = True
                break  # keep what finished, run nothing more
        with interrupt.deferred():
            combined = combine(results)
            if stopped and len(results) < len(request.techniques) and not combined.meta.incomplete:
                combined.meta = dataclasses.replace(combined.meta, incomplete=True)
    return combined


def empty_result(request: ScanRequest, engine: Engine, technique: Technique) -> ScanResult:
    """No verdicts for ``technique``: what a scan stopped before its first one gives back."""
    import datetime as dt

    from twinscan import __version__
    from twinscan.core.schema import ResultColumns, ScanMeta, ScanResult

    now = dt.datetime.now(dt.UTC)
    version = f"twinscan {__version__}" if engine is Engine.NATIVE else "nmap"
    meta = ScanMeta(
        engine=engine,
        start=now,
        end=now,
        arguments=" ".join(request.argv),
        engine_version=version,
        techniques=(technique,),
        incomplete=True,
    )
    columns = ResultColumns(
        engine=engine,
        technique=technique,
        proto=technique.proto,
        host=[],
        port=[],
        state=[],
        reason=[],
    )
    return ScanResult(columns=columns, meta=meta)
