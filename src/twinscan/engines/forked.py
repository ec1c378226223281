"""Run independent shards of a scan in forked worker processes (POSIX), one per CPU.

A Python connect loop spends most of its time in per-socket syscalls and interpreter overhead, so
one process cannot keep up with nmap on a 65535-port loopback scan; two workers on two cores can.
Each worker runs ``work(part, progress)`` and sends back, over a pipe, progress counts while it
runs and its pickled result at the end. The parent relays progress (and a Ctrl-C: the workers
then send what they have), optionally does other work meanwhile (``meanwhile``: e.g. import pandas for the result frame), and collects results in shard
order. A worker that goes quiet for ``stall_timeout_s`` is killed (by its own pid) and the scan
fails; every worker is reaped before this returns.
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

from twinscan.errors import ScanFailed, TwinscanError
from twinscan.progress import Progress

P = TypeVar("P")
R = TypeVar("R")

_HEADER = struct.Struct("!cI")
_PROGRESS, _RESULT, _ERROR = b"P", b"R", b"E"
#: a worker sends progress at most this often (and at least this often while busy).
_FLUSH_S = 0.05


class PipeProgress:
    """The ``Progress`` a worker sees: counts go to the parent in small batched messages."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = 0
        self._last = 0.0

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self._pending += n
        now = time.monotonic()
        if now - self._last >= _FLUSH_S:
            self.flush(now)

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
    """``[work(part, progress) for part in parts]``, each in its own forked process."""
    inboxes: list[_Inbox[R]] = []
    try:
        for part in parts:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which never returns
                os.close(read_fd)
                _child(part, work, write_fd)
            os.close(write_fd)
            inboxes.append(_Inbox(pid, read_fd))
        interrupted = False
        if meanwhile is not None:
            try:
                meanwhile()
            except KeyboardInterrupt:
                interrupted = True
                _interrupt(inboxes, stall_timeout_s)
        _collect(inboxes, progress, stall_timeout_s, interrupted=interrupted)
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


def _interrupt(inboxes: list[_Inbox[R]], stall_timeout_s: float) -> None:
    """Pass a Ctrl-C on to the live workers and give them a few seconds to send what they have."""
    for box in inboxes:
        if not box.eof:
            _signal(box, signal.SIGINT)
            box.last_heard = min(box.last_heard, time.monotonic() - stall_timeout_s + 5.0)


def _collect(
    inboxes: list[_Inbox[R]], progress: Progress, stall_timeout_s: float, *, interrupted: bool
) -> None:
    while True:
        live = [b for b in inboxes if not b.eof]
        if not live:
            break
        try:
            readable, _, _ = select.select([b.fd for b in live], [], [], 1.0)
        except KeyboardInterrupt:
            # A terminal's Ctrl-C reaches the workers too; a signal to us alone is passed on.
            if not interrupted:
                _interrupt(live, stall_timeout_s)
            interrupted = True
            continue
        for box in live:
            if box.fd in readable:
                box.feed(os.read(box.fd, 1 << 16), progress)
            elif time.monotonic() - box.last_heard > stall_timeout_s:
                _signal(box, signal.SIGKILL)
                box.eof = True
                box.error = ScanFailed(
                    f"scan worker {box.pid} sent nothing for {stall_timeout_s:.0f} s; stopped it"
                )


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
