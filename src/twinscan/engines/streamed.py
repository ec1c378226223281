"""Scans whose verdicts leave memory as they become final: host blocks, one after the other.

``run_streamed`` splits each technique's targets into host blocks of at most ``BLOCK_PROBES``
probes (one host per block at 65535 ports, 65 hosts at 1000) and runs the engine on one block
at a time, in this process (forking the engine's own workers as usual). The engine emits
verdicts as they become final (``engines.stream``); they are appended to the checkpoint log
(when there is one) and, once the scan has moved on to the next block, the finished block's
verdicts, sorted by (host address, port), go to a ``BlockConsumer`` -- the streaming writers
(``formats.streaming``) -- and are forgotten. Peak memory is about one block's, whatever the
number of hosts; blocks come in technique then host order, so the files come out in the order
a whole-result write gives.

A resumed checkpoint's verdicts are fed block by block too: a block's finished cells come
from the log, only the rest is scanned. SIGINT/SIGTERM stop as in ``run_scan``: the block in
flight is written with what finished, no further block starts, and the result is incomplete.
A stop that arrives while verdicts are being written does not cut the write short: it is
deferred (``interrupt.deferred``) and the engine stops at its next turn.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from twinscan import __version__
from twinscan.core.progress import NoProgress, Progress
from twinscan.core.schema import ResultColumns, ScanMeta
from twinscan.core.vocab import Engine, Technique
from twinscan.engines import interrupt, stream

if TYPE_CHECKING:
    from twinscan.engines.checkpoint import CheckpointLog
    from twinscan.request.model import ScanRequest

#: the most probes one host block holds (its verdicts are what the scan keeps in memory).
BLOCK_PROBES = 1 << 16


class BlockConsumer(Protocol):
    """Where finished blocks go (``formats.streaming.StreamWriters``)."""

    def block(self, columns: ResultColumns) -> None: ...


def host_blocks(request: ScanRequest, technique: Technique) -> list[tuple[str, ...]]:
    """The targets in blocks of at most ``BLOCK_PROBES`` probes of ``technique`` (at least one
    host per block), in target order."""
    per = max(1, BLOCK_PROBES // max(1, len(request.ports_for(technique))))
    t = request.targets
    return [t[i : i + per] for i in range(0, len(t), per)]


#: scans of at least this many probes (of one technique) stream.
STREAM_MIN_PROBES = 1 << 15


def streams(request: ScanRequest) -> bool:
    """Whether a scan is large enough to stream: some technique has ``STREAM_MIN_PROBES``
    probes, and the scan spans more than one host block (a scan that is one block, one host at
    all 65535 ports, holds that block in memory either way)."""
    if not any(request.probes(t) >= STREAM_MIN_PROBES for t in request.techniques):
        return False
    return sum(len(host_blocks(request, t)) for t in request.techniques) > 1


def restrict(parts: Sequence[ResultColumns], hosts: set[str]) -> list[ResultColumns]:
    """The rows of ``parts`` whose host is in ``hosts``."""
    out: list[ResultColumns] = []
    for cols in parts:
        keep = [i for i, h in enumerate(cols.host) if h in hosts]
        if not keep:
            continue
        out.append(cols if len(keep) == len(cols) else cols.take(keep))
    return out


def scan_meta(
    request: ScanRequest,
    engine: Engine,
    start: dt.datetime,
    end: dt.datetime | None = None,
    *,
    incomplete: bool = False,
) -> ScanMeta:
    """The metadata of a streamed scan of ``request`` (``end`` None: as it starts, for the
    headers written before any verdict)."""
    return ScanMeta(
        engine=engine,
        start=start,
        end=start if end is None else end,
        arguments=" ".join(request.argv),
        engine_version=f"twinscan {__version__}" if engine is Engine.NATIVE else "nmap",
        techniques=request.techniques,
        incomplete=incomplete,
    )


def scan_start(checkpoint: CheckpointLog | None) -> dt.datetime:
    """When the scan started: a resumed checkpoint's first start, else now."""
    return checkpoint.start if checkpoint is not None else dt.datetime.now(dt.UTC)


def give_back_memory() -> None:
    """Return the freed heap of the block just written to the OS (glibc's ``malloc_trim``):
    the next block's forked workers start from this process's pages, and every one of them
    counts them again in the tree's RSS."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_streamed(
    request: ScanRequest,
    engine: Engine,
    consumer: BlockConsumer,
    *,
    progress: Progress | None = None,
    checkpoint: CheckpointLog | None = None,
    start: dt.datetime | None = None,
) -> ScanMeta:
    """Scan ``request`` block by block into ``consumer``; the scan's metadata is returned
    (``start``: the start time the consumer's headers already carry, ``scan_start``).

    The verdicts arrive here as they become final: appended to the checkpoint, and each block
    written once the scan has moved past it. Blocks are scanned one after the other and a
    block is written before the next one starts, so the peak is the larger of a block's scan
    and its writing, not their sum.
    """
    progress = progress or NoProgress()
    loaded = checkpoint.loaded if checkpoint is not None else None
    earlier = loaded.parts if loaded is not None else {}
    start = start or scan_start(checkpoint)
    collector = _Collector(request, consumer, checkpoint, earlier)
    interrupt.clear()
    total = sum(request.probes(t) for t in request.techniques)
    progress.start("scan", total)
    try:
        with (
            interrupt.terminate_as_interrupt(),
            stream.streaming(collector.add, collector.add_pickled),
        ):
            try:
                stopped = _scan_blocks(request, engine, _WholeScan(progress), earlier)
            except KeyboardInterrupt:  # between blocks (the engines catch their own)
                stopped = True
    finally:
        progress.finish()
    with interrupt.deferred():
        stopped = stopped or interrupt.requested()
        collector.finish()
        if checkpoint is not None:
            checkpoint.finish(stopped=stopped)
    return scan_meta(request, engine, start, dt.datetime.now(dt.UTC), incomplete=stopped)


class _WholeScan:
    """The progress the engines see, block after block: their counts go to the whole scan's
    task; their own ``start``/``finish`` per block are not passed on (the bar stays one bar
    over every block)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self._progress.advance(n)

    def finish(self) -> None:
        pass


def _scan_blocks(
    request: ScanRequest,
    engine: Engine,
    progress: Progress,
    earlier: dict[Technique, list[ResultColumns]],
) -> bool:
    """Every block's cells without a verdict, in block order; the verdicts leave through
    ``stream.emit`` and each block ends with ``stream.emit_mark`` (the collector then writes
    it). True when stopped early."""
    from twinscan.engines import runner
    from twinscan.engines.checkpoint import remaining_parts

    for tech in request.techniques:
        for hosts in host_blocks(request, tech):
            done = restrict(earlier.get(tech, []), set(hosts))
            block = dataclasses.replace(request, targets=hosts, techniques=(tech,))
            for part in list(remaining_parts(block, tech, done)):
                try:
                    result = runner(engine, tech)(part, tech, progress=progress)
                except KeyboardInterrupt:
                    return True
                for cols in result.column_runs():
                    stream.emit(cols)  # what the engine did not stream
                if result.meta.incomplete or interrupt.requested():
                    return True
            stream.emit_mark(tech)
            if interrupt.requested():
                return True
    return False


class _Collector:
    """The parent's side: verdict batches in, whole blocks out (to the consumer), in order.

    Blocks are scanned one after the other, so a batch of a later block means every block
    before it is finished; a finished block is merged with what the checkpoint already had
    for it, sorted, handed to the consumer and forgotten."""

    def __init__(
        self,
        request: ScanRequest,
        consumer: BlockConsumer,
        checkpoint: CheckpointLog | None,
        earlier: dict[Technique, list[ResultColumns]],
    ) -> None:
        self._blocks = [
            (tech, hosts) for tech in request.techniques for hosts in host_blocks(request, tech)
        ]
        self._index = {(tech, h): i for i, (tech, hosts) in enumerate(self._blocks) for h in hosts}
        self._consumer = consumer
        self._checkpoint = checkpoint
        self._earlier = earlier
        self._current = 0
        #: the current block's batches: columns, or a worker's pickled columns
        self._collected: list[ResultColumns | bytes] = []

    def add(self, cols: ResultColumns) -> None:
        """A batch of verdicts (empty: the current block is finished). A stop signal meanwhile
        waits (``interrupt.requested()``): the engine loop stops at its next turn."""
        with interrupt.deferred():
            if not len(cols):
                self._flush()
                return
            self._keep(self._logged_block(cols), cols)

    def add_pickled(self, payload: bytes) -> None:
        """``add`` for a batch a forked worker sent: kept as those bytes until its block is
        written (a few bytes a verdict, not a few objects) while the workers still scan."""
        import pickle  # (here: a scan that does not stream never loads it)

        cols: ResultColumns = pickle.loads(payload)
        if not len(cols):
            self.add(cols)
            return
        with interrupt.deferred():
            block = self._logged_block(cols)
            del cols  # (not held while earlier blocks are written)
            self._keep(block, payload)

    def _logged_block(self, cols: ResultColumns) -> int:
        """The block of a batch (one host block's verdicts), once the checkpoint has it."""
        if self._checkpoint is not None:
            self._checkpoint.append(cols)
        return self._index[(cols.technique, cols.host[0])]

    def _keep(self, block: int, batch: ResultColumns | bytes) -> None:
        """Write every block before ``block`` (finished: the engines scan in block order),
        then keep ``batch`` for its own."""
        while self._current < block:
            self._flush()
        self._collected.append(batch)

    def _flush(self) -> None:
        import pickle

        from twinscan.engines.checkpoint import sorted_unique

        tech, hosts = self._blocks[self._current]
        collected = [pickle.loads(c) if isinstance(c, bytes) else c for c in self._collected]
        self._collected = []
        parts = restrict(self._earlier.get(tech, []), set(hosts)) + collected
        del collected
        self._current += 1
        merged = sorted_unique(parts)
        del parts
        if merged is not None:
            self._consumer.block(merged)
        del merged
        give_back_memory()

    def finish(self) -> None:
        """Every block not written yet (a stopped scan's: with what finished)."""
        while self._current < len(self._blocks):
            self._flush()
