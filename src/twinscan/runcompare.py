"""Run a comparison: each technique through the native engine, then through nmap, never at once.

The engines and the clock are injected (defaults: the real engines and ``time.monotonic``), so
the orchestration (order, timing, XML files, truth alignment) is tested without a network.
Both engines are timed the same way: wall time around the engine call, process start included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from twinscan.compare import Comparison, compare
from twinscan.errors import ScanFailed, UsageError
from twinscan.progress import NoProgress, Progress
from twinscan.vocab import Engine, Technique

if TYPE_CHECKING:
    import pandas as pd

    from twinscan.engines.nmap_engine import NmapRun
    from twinscan.request import ScanRequest
    from twinscan.schema import ScanResult

NativeRunner = Callable[["ScanRequest", Technique, Progress], "ScanResult"]
NmapRunner = Callable[["ScanRequest", Technique, Progress], "NmapRun"]


def _native(request: ScanRequest, technique: Technique, progress: Progress) -> ScanResult:
    from twinscan.engines import runner

    try:
        scan = runner(Engine.NATIVE, technique)
    except ModuleNotFoundError as exc:
        raise ScanFailed(f"twinscan's native {technique} engine is not available ({exc})") from None
    return scan(request, technique, progress=progress)


def _nmap(request: ScanRequest, technique: Technique, progress: Progress) -> NmapRun:
    from twinscan.engines.nmap_engine import run_nmap

    return run_nmap(request, technique, progress=progress)


def lab_truth(request: ScanRequest, spec_path: str | None = None) -> pd.DataFrame:
    """Ground truth for the request's lab targets (``UsageError`` if none is a lab host)."""
    from twinscan.lab import load_spec
    from twinscan.lab.truth import truth_frame

    spec = load_spec(spec_path)
    lab_hosts = set(spec.addresses.values())
    if not any(t in lab_hosts for t in request.targets):
        raise UsageError(
            "--truth needs lab targets: none of "
            f"{', '.join(request.targets[:3])}{'...' if len(request.targets) > 3 else ''} "
            f"is a host of the lab spec {spec.source}"
        )
    # Every cell the request asks about: its ports, not just the spec's universe (a port with
    # no listener or rule has a truth too), on the request's lab hosts.
    return truth_frame(
        spec, tuple(request.techniques), ports=request.ports, hosts=request.targets
    ).reset_index(drop=True)


def run_compare(
    request: ScanRequest,
    *,
    truth: pd.DataFrame | None = None,
    xml_dir: Path | None = None,
    progress: Progress | None = None,
    native: NativeRunner = _native,
    nmap: NmapRunner = _nmap,
    clock: Callable[[], float] = time.monotonic,
) -> Comparison:
    """Scan every technique of ``request`` with both engines, one after the other, and compare.

    With ``xml_dir``, both sides are saved per technique as ``nmap-<technique>.xml`` (nmap's
    own output) and ``native-<technique>.xml`` (twinscan's export), ready for ``ndiff``.
    """
    from twinscan.schema import combine

    progress = progress or NoProgress()
    native_results: list[ScanResult] = []
    nmap_results: list[ScanResult] = []
    timings: dict[tuple[Engine, Technique], float] = {}
    if xml_dir is not None:
        xml_dir.mkdir(parents=True, exist_ok=True)
    for technique in request.techniques:
        t0 = clock()
        mine = native(request, technique, progress)
        t1 = clock()
        theirs = nmap(request, technique, progress)
        t2 = clock()
        timings[(Engine.NATIVE, technique)] = t1 - t0
        timings[(Engine.NMAP, technique)] = t2 - t1
        native_results.append(mine)
        nmap_results.append(theirs.result)
        if xml_dir is not None:
            from twinscan.exports import write_nmap_xml

            (xml_dir / f"nmap-{technique.value}.xml").write_bytes(theirs.xml)
            write_nmap_xml(mine, xml_dir / f"native-{technique.value}.xml")
    if not native_results:
        raise UsageError("no techniques to compare")
    native_frame = combine(native_results).frame
    nmap_frame = combine(nmap_results).frame
    return compare(native_frame, nmap_frame, truth=truth, timings=timings)
