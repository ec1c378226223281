"""How a scan stops early: Ctrl-C (SIGINT) and SIGTERM, in this process and in forked workers.

Three regimes, all for the main thread only (signal handlers live there):

- ``terminate_as_interrupt()``: SIGTERM raises ``KeyboardInterrupt`` as SIGINT does, so a
  scan stopped by ``kill`` or a service manager keeps its finished verdicts like one stopped
  by Ctrl-C. The engines' I/O loops catch ``KeyboardInterrupt`` and return what they know.
- ``deferred(forward)``: SIGINT and SIGTERM raise nothing; they set a flag (``requested()``)
  and call ``forward(signum)``. Used where an exception at an arbitrary bytecode would lose
  results: the parent of forked workers (it forwards the stop to them and collects what they
  send back) and the workers themselves (``check()`` turns the flag into a
  ``KeyboardInterrupt`` at a point inside the engine loop chosen by the caller).
- anything else: Python's defaults.

A signal that was ignored when a section began (``nohup``, a background job) stays ignored.
Deferred sections nest; the flag stays set until ``clear()`` so the caller can tell that a
stop was asked for even when every worker had finished by then.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

Forward = Callable[[int], None]

#: the signals that stop a scan.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)

_requested = False
_forwarders: list[Forward] = []
_depth = 0


def requested() -> bool:
    """Whether a stop signal arrived in a deferred section since the last ``clear()``."""
    return _requested


def clear() -> None:
    global _requested
    _requested = False


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested (deferred sections poll with it)."""
    if _requested:
        raise KeyboardInterrupt


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    for forward in list(_forwarders):
        forward(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deferred(forward: Forward | None = None) -> Iterator[None]:
    """For the duration, SIGINT/SIGTERM set the flag and call ``forward`` instead of raising."""
    global _depth
    if not _main_thread():
        yield
        return
    if forward is not None:
        _forwarders.append(forward)
    saved: dict[signal.Signals, object] = {}
    try:
        if _depth == 0:
            for sig in STOP_SIGNALS:
                current = signal.getsignal(sig)
                if current is not signal.SIG_IGN:
                    saved[sig] = current
                    signal.signal(sig, _on_stop_signal)
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        if forward is not None:
            _forwarders.remove(forward)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the duration, SIGTERM raises ``KeyboardInterrupt`` (when nobody else handles it)."""
    if not _main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def enter_worker() -> None:
    """In a freshly forked worker: forget the parent's forwarders and defer stop signals for
    the rest of the process (a stop the parent saw before the fork stays requested).

    SIGTERM is the parent's way to pass a stop on (``forked``), so a worker listens to it even
    when it was ignored: whether a stop counts is the parent's decision, taken with its own
    dispositions. An ignored SIGINT stays ignored (a background job's Ctrl-C is not its)."""
    global _depth
    _forwarders.clear()
    _depth = 1
    for sig in STOP_SIGNALS:
        if sig is signal.SIGTERM or signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_stop_signal)
