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

from twinscan.compare.align import Comparison, compare
from twinscan.core.errors import ScanFailed, UsageError
from twinscan.core.progress import NoProgress, Progress
from twinscan.core.vocab import Engine, Technique
from twinscan.engines import interrupt

if TYPE_CHECKING:
    import pandas as pd

    from twinscan.core.schema import ScanResult
    from twinscan.engines.nmap_engine import NmapRun
    from twinscan.request.model import ScanRequest

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
    lab_hosts = set(spec.addresses.values()) | {h.address6 for h in spec.hosts if h.address6}
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

    Ctrl-C (SIGINT) or SIGTERM stops it at once: the running stage returns what it has (the
    native engine) or is killed (nmap), no further stage starts, and only the techniques both
    engines finished are compared; the comparison says ``interrupted`` and which techniques
    were left out (``Comparison.interruption_note``). A native run that was cut short is still
    saved to ``xml_dir``, marked incomplete as the scan's own XML is.
    """
    from twinscan.core.schema import combine, empty_frame

    progress = progress or NoProgress()
    finished: list[tuple[Technique, ScanResult, ScanResult, float, float]] = []
    if xml_dir is not None:
        xml_dir.mkdir(parents=True, exist_ok=True)
    if not request.techniques:
        raise UsageError("no techniques to compare")
    interrupt.clear()
    interrupted = False
    with interrupt.terminate_as_interrupt():
        try:
            for technique in request.techniques:
                t0 = clock()
                mine = native(request, technique, progress)
                t1 = clock()
                if mine.meta.incomplete or interrupt.requested():
                    interrupted = True
                    _save_native_xml(xml_dir, technique, mine)
                    break
                theirs = nmap(request, technique, progress)
                t2 = clock()
                finished.append((technique, mine, theirs.result, t1 - t0, t2 - t1))
                if xml_dir is not None:
                    (xml_dir / f"nmap-{technique.value}.xml").write_bytes(theirs.xml)
                    _save_native_xml(xml_dir, technique, mine)
                if interrupt.requested():
                    interrupted = len(finished) < len(request.techniques)
                    break
        except KeyboardInterrupt:
            interrupted = True
        with interrupt.deferred():
            timings: dict[tuple[Engine, Technique], float] = {}
            for technique, _mine, _theirs, native_s, nmap_s in finished:
                timings[(Engine.NATIVE, technique)] = native_s
                timings[(Engine.NMAP, technique)] = nmap_s
            if finished:
                native_frame = combine([f[1] for f in finished]).frame
                nmap_frame = combine([f[2] for f in finished]).frame
            else:
                native_frame = nmap_frame = empty_frame()
            if truth is not None and interrupted:
                done = {f[0].value for f in finished}
                truth = truth[truth["technique"].astype(str).isin(done)]
            result = compare(native_frame, nmap_frame, truth=truth, timings=timings)
    if interrupted:
        compared = {f[0] for f in finished}
        result.interrupted = True
        result.not_compared = tuple(t for t in request.techniques if t not in compared)
    return result


def _save_native_xml(xml_dir: Path | None, technique: Technique, result: ScanResult) -> None:
    if xml_dir is not None:
        from twinscan.formats.nmap_xml_write import write_nmap_xml

        write_nmap_xml(result, xml_dir / f"native-{technique.value}.xml")
