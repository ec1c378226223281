"""Verdicts leaving an engine as they become final (the hook checkpoints and streaming use).

An engine loop calls ``emit(columns)`` with verdicts that will not change any more; whoever
runs the scan installs a sink with ``streaming(sink)`` (the checkpoint log, a spool, ...). In a
forked worker the sink is the pipe to the parent (``engines.forked``), which re-emits there.
Without a sink, ``emit`` does nothing and engines return every verdict at the end as before.

An engine that streams returns only the verdicts it has not emitted (``columns_left``), so a
scan's verdicts are never held twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twinscan.core.schema import ResultColumns
    from twinscan.core.vocab import Technique

Sink = Callable[["ResultColumns"], None]

#: how often an engine loop hands over what became final (the checkpoint's "last second").
EMIT_INTERVAL_S = 0.25
#: ... or as soon as this many verdicts are waiting: a forked worker's batch is built, pickled
#: and sent in one go, and at loopback speed a quarter second is ~16,000 verdicts, whose
#: transient objects stayed in the worker's heap.
EMIT_MAX_ROWS = 2048

_sink: Sink | None = None
_pickled_sink: Callable[[bytes], None] | None = None


def active() -> bool:
    """Whether verdicts are being streamed (engines then emit and return the rest only)."""
    return _sink is not None


def emit(columns: ResultColumns) -> None:
    if _sink is not None and len(columns):
        _sink(columns)


def relay_pickled(payload: bytes) -> None:
    """``emit`` for a batch that arrived from a worker, as it sent it (pickled; marks, empty
    batches, pass too): a sink installed with a ``pickled`` companion gets the bytes
    themselves (it may keep them, smaller than the objects)."""
    if _pickled_sink is not None:
        _pickled_sink(payload)
    elif _sink is not None:
        import pickle  # (here: only a worker's batches are pickled)

        _sink(pickle.loads(payload))


def emit_mark(technique: Technique) -> None:
    """Hand the sink an empty batch: a mark between verdicts (``engines.streamed`` marks the
    end of each host block with it). Engines never emit empty batches."""
    if _sink is not None:
        _sink(empty_columns(technique))


@contextlib.contextmanager
def streaming(sink: Sink | None, pickled: Callable[[bytes], None] | None = None) -> Iterator[None]:
    """For the duration, ``emit`` hands verdicts to ``sink`` (None: nobody listens), and
    ``relay_pickled`` a worker's pickled batches to ``pickled`` (default: unpickled to
    ``sink``)."""
    global _sink, _pickled_sink
    saved = _sink, _pickled_sink
    _sink, _pickled_sink = sink, pickled
    try:
        yield
    finally:
        _sink, _pickled_sink = saved


def set_worker_sink(sink: Sink | None) -> None:
    """In a freshly forked worker: verdicts go to ``sink`` (the pipe) when the parent streams."""
    global _sink, _pickled_sink
    _pickled_sink = None
    if _sink is not None:
        _sink = sink


def empty_columns(technique: Technique) -> ResultColumns:
    from twinscan.core.schema import ResultColumns
    from twinscan.core.vocab import Engine

    return ResultColumns(Engine.NATIVE, technique, technique.proto, [], [], [], [])


class ProbeDrain:
    """Emits a raw ``ScanSession``'s probes as they become final (at most every
    ``EMIT_INTERVAL_S``; ``flush`` emits the rest that are final). Does nothing unless
    streaming."""

    def __init__(self, session: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session
        self._clock = clock
        self._on = active()
        #: a columnar session (``BulkTcpSession``) says itself what became final
        self._columnar = hasattr(session, "final_columns")
        self._pending: list[Any] = list(session.probes) if self._on and not self._columnar else []
        self._last = clock()

    def poll(self) -> None:
        if self._on and self._clock() - self._last >= EMIT_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if not self._on:
            return
        self._last = self._clock()
        if self._columnar:
            emit(self._session.final_columns())
            return
        final = [p for p in self._pending if p.final]
        if not final:
            return
        emit(_probe_columns(self._session, final))  # then forget them (a repeat is harmless)
        self._pending = [p for p in self._pending if not p.final]


def _probe_columns(session: Any, probes: Sequence[Any]) -> ResultColumns:
    from twinscan.protocol.session_columns import probe_columns

    return probe_columns(probes, [h.address for h in session.hosts], session.technique)


def columns_left(session: Any) -> ResultColumns:
    """What a raw session returns at the end: every verdict, or, when streaming, none (the
    ``ProbeDrain`` emitted them)."""
    if active():
        return empty_columns(session.technique)
    cols: ResultColumns = session.columns(last=True)
    return cols
