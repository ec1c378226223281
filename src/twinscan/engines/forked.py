"""Run independent shards of a scan in forked worker processes (POSIX), one per CPU.

A Python connect loop spends most of its time in per-socket syscalls and interpreter overhead, so
one process cannot keep up with nmap on a 65535-port loopback scan; two workers on two cores can.
Each worker runs ``work(part, progress)`` and sends back, over a pipe, progress counts while it
runs and its pickled result at the end. The parent relays progress, optionally does other work
meanwhile (``meanwhile``: e.g. load the service names for the report), and collects results in
shard order. A worker that goes quiet for ``stall_timeout_s`` is killed (by its own pid) and the
scan fails; every worker is reaped before this returns.

Verdicts a worker emits while it runs (``twinscan.engines.stream``, when the parent streams)
travel the same pipe and are emitted again in the parent as they arrive.

Stopping early (``twinscan.engines.interrupt``): while the workers run, SIGINT and SIGTERM never raise
in the parent; it passes a stop on to every live worker as SIGTERM (a signal sent to the
parent alone, as ``kill`` or ``timeout`` may do; SIGTERM because a scan started in the
background inherits SIGINT ignored) and keeps collecting. A worker defers them too, whether they
come from the parent or straight from the terminal (Ctrl-C signals the whole foreground process
group, so a worker may be told twice): the stop surfaces as one ``KeyboardInterrupt`` raised by
its progress's ``advance``, inside the engine loop, which returns the verdicts it has. A worker
that has not answered ``STOP_GRACE_S`` after the stop is killed and the scan fails.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from twinscan.core.errors import ScanFailed, TwinscanError
from twinscan.core.progress import Progress
from twinscan.engines import interrupt, stream

P = TypeVar("P")
R = TypeVar("R")

_HEADER = struct.Struct("!cI")
_PROGRESS, _RESULT, _ERROR, _VERDICTS = b"P", b"R", b"E", b"V"
#: a worker sends progress at most this often (and at least this often while busy).
_FLUSH_S = 0.05
#: how long workers get to send back what they have once told to stop.
STOP_GRACE_S = 10.0


class PipeProgress:
    """The ``Progress`` a worker sees: counts go to the parent in small batched messages.

    Also where a stop request surfaces in the worker: the first ``advance`` after SIGINT or
    SIGTERM raises ``KeyboardInterrupt`` (once), so the engine loop that reports progress is
    the one that catches it.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = 0
        self._last = 0.0
        self._stopped = False

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self._pending += n
        now = time.monotonic()
        if now - self._last >= _FLUSH_S:
            self.flush(now)
        if not self._stopped and interrupt.requested():
            self._stopped = True
            self.flush(now)
            raise KeyboardInterrupt

    def flush(self, now: float | None = None) -> None:
        _send(self._fd, _PROGRESS, struct.pack("!I", self._pending))
        self._pending = 0
        self._last = time.monotonic() if now is None else now

    def finish(self) -> None:
        self.flush()


def _send(fd: int, kind: bytes, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(kind, len(payload)) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


class _Inbox(Generic[R]):
    """Reassembles one worker's messages from the bytes its pipe delivers."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd
        self.buffer = bytearray()
        self.result: R | None = None
        self.error: BaseException | None = None
        self.has_result = False
        self.eof = False
        self.last_heard = time.monotonic()
        self.stop_deadline: float | None = None

    def feed(self, data: bytes, progress: Progress) -> None:
        self.last_heard = time.monotonic()
        if not data:
            self.eof = True
            return
        self.buffer += data
        while len(self.buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                return
            payload = bytes(self.buffer[_HEADER.size : _HEADER.size + size])
            del self.buffer[: _HEADER.size + size]
            if kind == _PROGRESS:
                (count,) = struct.unpack("!I", payload)
                if count:
                    progress.advance(count)
            elif kind == _VERDICTS:
                stream.relay_pickled(payload)
            elif kind == _RESULT:
                self.result = pickle.loads(payload)
                self.has_result = True
            else:
                self.error = pickle.loads(payload)


def run_forked(
    parts: Sequence[P],
    work: Callable[[P, Progress], R],
    *,
    progress: Progress,
    stall_timeout_s: float = 60.0,
    meanwhile: Callable[[], object] | None = None,
) -> list[R]:
    """``[work(part, progress) for part in parts]``, each in its own forked process.

    A stop signal meanwhile is passed on to the workers; their results then say what they
    finished (``interrupt.requested()`` tells the caller a stop was asked for)."""
    inboxes: list[_Inbox[R]] = []
    with interrupt.deferred(lambda signum: _interrupt(inboxes)):
        try:
            for part in parts:
                read_fd, write_fd = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the child, which never returns
                    os.close(read_fd)
                    _child(part, work, write_fd)
                os.close(write_fd)
                inboxes.append(_Inbox(pid, read_fd))
            if interrupt.requested():
                _interrupt(inboxes)  # a stop while forking: tell the workers forked before it
            if meanwhile is not None:
                meanwhile()
            _collect(inboxes, progress, stall_timeout_s)
        finally:
            for box in inboxes:
                _reap(box)
    results: list[R] = []
    for box in inboxes:
        if box.error is not None:
            raise box.error
        if not box.has_result:
            raise ScanFailed(f"scan worker {box.pid} ended without a result")
        results.append(box.result)  # type: ignore[arg-type]
    return results


def _child(part: P, work: Callable[[P, Progress], R], fd: int) -> None:  # pragma: no cover
    code = 0
    try:
        interrupt.enter_worker()
        stream.set_worker_sink(
            lambda cols: _send(fd, _VERDICTS, pickle.dumps(cols, protocol=pickle.HIGHEST_PROTOCOL))
        )
        pipe_progress = PipeProgress(fd)
        result = work(part, pipe_progress)
        pipe_progress.flush()
        _send(fd, _RESULT, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except TwinscanError as exc:
        _send(fd, _ERROR, pickle.dumps(exc))
        code = 1
    except BaseException as exc:  # noqa: BLE001 - report anything, then leave
        message = f"scan worker failed: {type(exc).__name__}: {exc}"
        try:
            _send(fd, _ERROR, pickle.dumps(ScanFailed(message)))
        except BaseException:  # noqa: BLE001
            pass
        code = 1
    finally:
        os._exit(code)


def _interrupt(inboxes: list[_Inbox[R]]) -> None:
    """Pass a stop on to the live workers (runs in the signal handler; safe to repeat)."""
    deadline = time.monotonic() + STOP_GRACE_S
    for box in inboxes:
        if not box.eof:
            _signal(box, signal.SIGTERM)  # (SIGINT may be ignored: a background job's is)
            if box.stop_deadline is None:
                box.stop_deadline = deadline


def _collect(inboxes: list[_Inbox[R]], progress: Progress, stall_timeout_s: float) -> None:
    for _ in range(1 << 40):  # bounded by the stall and stop deadlines below
        live = [b for b in inboxes if not b.eof]
        if not live:
            break
        readable, _, _ = select.select([b.fd for b in live], [], [], 0.25)
        now = time.monotonic()
        for box in live:
            if box.fd in readable:
                box.feed(os.read(box.fd, 1 << 16), progress)
            elif box.stop_deadline is not None and now > box.stop_deadline:
                _stop(box, f"scan worker {box.pid} did not stop within {STOP_GRACE_S:.0f} s")
            elif now - box.last_heard > stall_timeout_s:
                _stop(box, f"scan worker {box.pid} sent nothing for {stall_timeout_s:.0f} s")


def _stop(box: _Inbox[R], why: str) -> None:
    _signal(box, signal.SIGKILL)
    box.eof = True
    box.error = ScanFailed(f"{why}; stopped it")


def _signal(box: _Inbox[R], signum: int) -> None:
    try:
        os.kill(box.pid, signum)
    except ProcessLookupError:
        pass


def _reap(box: _Inbox[R]) -> None:
    try:
        os.close(box.fd)
    except OSError:
        pass
    killed = False
    deadline = time.monotonic() + 5.0
    for _ in range(3000):  # bounded: at most ~5 s, then SIGKILL and ~5 s more
        try:
            pid, _status = os.waitpid(box.pid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid != 0:
            return
        if time.monotonic() > deadline:
            if killed:
                return
            _signal(box, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + 5.0
        time.sleep(0.005)
