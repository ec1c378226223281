"""``sendmmsg(2)``/``recvmmsg(2)`` through ctypes: many datagrams per system call.

The raw engine's bulk TCP path (``twinscan.engines.raw``): ``BatchSender`` sends a numpy array
of probes, one per row, in one call with the GIL released; ``BatchReceiver`` reads what a
socket holds into a numpy buffer, one datagram per row. The message headers are numpy views,
filled without per-datagram Python.

On loopback and veth the kernel answers each probe inside ``sendmmsg`` itself (the reply is
made and queued on the sending CPU), so sending is most of a large scan's time. With two CPUs
``BatchSender`` sends the first part of a large batch itself and hands the rest to a second
thread: the two parts are in the kernel at once, on two CPUs, and while the second thread
still sends, the caller goes on to read and account the replies to the first part. The next
``send`` (or ``flush``, ``close``) waits until the rest is out.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from twinscan.core.errors import ScanFailed

_MSG_DONTWAIT = 0x40
#: How long ``flush`` waits for the second thread's part before it gives up on the scan.
_HELPER_WAIT_S = 60.0
#: The part of a split batch the calling thread sends itself. A 65535-port loopback SYN scan
#: (probing time, 15 alternating runs each) measured the same with 0.15, 0.3 and 0.4, and
#: slower with 0.5, where the caller spends longer sending before it reads a reply.
FIRST_PART = 0.3


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


def _sockaddr_in(dst: str) -> bytes:
    """A ``struct sockaddr_in`` for ``dst`` (port 0: IP_HDRINCL carries the real header)."""
    return struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(dst))


def _sockaddr_in6(dst: str) -> bytes:
    """A ``struct sockaddr_in6`` for ``dst`` (28 bytes; port 0: the datagram has its header)."""
    return struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, socket.inet_pton(socket.AF_INET6, dst), 0)


class BatchSender:
    """``sendmmsg(2)`` of many equal-length datagrams in one call (the GIL released).

    ``send(rows, dst_index)``: ``rows`` a C-contiguous ``uint8`` array, one datagram per row;
    ``dst_index[i]`` the index of row *i*'s destination in ``destinations``. The message headers
    are filled with numpy, so a batch costs no per-datagram Python.

    ``split_min``: a batch of at least this many rows is split: this thread sends its first
    ``FIRST_PART`` and a second thread the rest, which may still be leaving when ``send``
    returns (None: every row from this thread, before ``send`` returns). ``flush`` waits for
    the rest; ``close`` ends the second thread.
    """

    def __init__(
        self, sock: socket.socket, destinations: Sequence[str], *, split_min: int | None = None
    ) -> None:
        import numpy as np

        libc = ctypes.CDLL(None, use_errno=True)
        self._sendmmsg = libc.sendmmsg
        self._sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        self._sendmmsg.restype = ctypes.c_int
        self._fd = sock.fileno()
        v6 = sock.family == socket.AF_INET6
        sockaddr = _sockaddr_in6 if v6 else _sockaddr_in
        self._namelen = 28 if v6 else 16
        self._names = np.frombuffer(b"".join(sockaddr(d) for d in destinations), np.uint8)
        self._np = np
        self._capacity = 0
        self._split_min = split_min
        self._helper: _Helper | None = None
        #: the rows the second thread is sending (kept alive until they are out), or None
        self._leaving: Any = None
        self.refused = 0  # datagrams the kernel refused (firewall, no route, full buffers)
        self.split_batches = 0  # batches sent by two threads

    def _grow(self, n: int) -> None:
        np = self._np
        self._capacity = max(n, 2 * self._capacity)
        self._msgs = np.zeros(self._capacity * ctypes.sizeof(_Mmsghdr), np.uint8)
        self._iovs = np.zeros(self._capacity * ctypes.sizeof(_Iovec), np.uint8)
        self._msgs64 = self._msgs.view(np.uint64).reshape(self._capacity, -1)
        self._iovs64 = self._iovs.view(np.uint64).reshape(self._capacity, -1)
        word = 8
        m = _Msghdr
        self._at = {f: getattr(m, f).offset // word for f in ("name", "iov", "iovlen")}
        self._msgs64[:, self._at["iovlen"]] = 1
        namelen = self._msgs.view(np.uint32).reshape(self._capacity, -1)
        namelen[:, _Msghdr.namelen.offset // 4] = self._namelen
        step = ctypes.sizeof(_Iovec)
        self._msgs64[:, self._at["iov"]] = self._iovs.ctypes.data + step * np.arange(
            self._capacity, dtype=np.uint64
        )

    def send(self, rows: Any, dst_index: Sequence[int]) -> None:
        """Send every row (a split batch's last part may still be leaving: ``flush``)."""
        np = self._np
        self.flush()  # (the message headers are about to be rewritten)
        n, length = (int(x) for x in rows.shape)
        if n == 0:
            return
        if n > self._capacity:
            self._grow(n)
        rows = np.ascontiguousarray(rows)
        base = rows.ctypes.data
        self._iovs64[:n, 0] = base + length * np.arange(n, dtype=np.uint64)
        self._iovs64[:n, 1] = length
        names = self._names.ctypes.data + self._namelen * np.asarray(dst_index, dtype=np.uint64)
        self._msgs64[:n, self._at["name"]] = names
        if self._split_min is None or n < max(2, self._split_min):
            self.refused += self._send_range(0, n)
            return
        first = min(n - 1, max(1, round(n * FIRST_PART)))
        helper = self._helper
        if helper is None:
            helper = self._helper = _Helper()
        self._leaving = rows
        helper.start(lambda: self._send_range(first, n))
        self.split_batches += 1
        self.refused += self._send_range(0, first)

    def flush(self) -> None:
        """Wait until the rows the second thread is sending are out; raises what it raised."""
        if self._leaving is None:
            return
        assert self._helper is not None
        outcome = self._helper.wait()  # (ScanFailed if it never ends: the rows stay referenced)
        self._leaving = None  # (only now: the kernel reads the rows while they leave)
        if isinstance(outcome, BaseException):
            raise outcome
        self.refused += outcome

    def _send_range(self, start: int, stop: int) -> int:
        """Send the prepared messages ``start:stop``; returns how many the kernel refused."""
        msgs = self._msgs.ctypes.data
        size = ctypes.sizeof(_Mmsghdr)
        off, retries, refused = start, 0, 0
        while off < stop:
            done = self._sendmmsg(self._fd, msgs + off * size, stop - off, 0)
            if done > 0:
                off += done
                continue
            err = ctypes.get_errno()  # (ctypes keeps errno per thread)
            if err in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR) and retries < 50:
                retries += 1
                time.sleep(0.001)
                continue
            if err in (
                errno.ENOBUFS,
                errno.EAGAIN,
                errno.EPERM,
                errno.EACCES,
                errno.ENETUNREACH,
                errno.EHOSTUNREACH,
            ):
                off += 1  # this datagram is lost; the session retransmits it
                refused += 1
                continue
            raise ScanFailed(f"cannot send probes: {os.strerror(err)}")
        return refused

    def close(self) -> None:
        """Wait for the rows still leaving (``flush``), then end the second thread."""
        try:
            self.flush()
        finally:
            helper, self._helper = self._helper, None
            if helper is not None:
                helper.close()


class _Helper:
    """A second thread that runs ``BatchSender``'s jobs one at a time: ``start`` hands it one,
    ``wait`` returns its result (or what it raised). It waits on a lock between jobs, so
    it holds no CPU and no GIL; ``close`` ends it."""

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        #: the job handed over and not yet waited for (None: none; also ``close``'s signal)
        self._job: Callable[[], int] | None = None
        self._outcome: int | BaseException = 0
        self._thread = threading.Thread(target=self._serve, name="twinscan-sendmmsg", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:  # until ``close`` hands it no job (a daemon: it never outlives the process)
            self._go.acquire()
            job = self._job
            if job is None:
                return
            try:
                self._outcome = job()
            except BaseException as exc:  # (``BatchSender.flush`` raises it in the scan's thread)
                self._outcome = exc
            self._done.release()

    def start(self, job: Callable[[], int]) -> None:
        self._job = job
        self._go.release()

    def wait(self) -> int | BaseException:
        """The job's result, or what it raised; ``ScanFailed`` if it does not end in time."""
        if not self._done.acquire(timeout=_HELPER_WAIT_S):
            raise ScanFailed("the second sending thread stopped answering")
        outcome, self._outcome, self._job = self._outcome, 0, None
        return outcome

    def close(self) -> None:
        if self._job is not None:  # (a Ctrl-C while it was sending: its part ends first)
            self._done.acquire(timeout=_HELPER_WAIT_S)
        self._job = None
        self._go.release()
        self._thread.join(timeout=_HELPER_WAIT_S)


#: Per message of an IPv6 receive: a ``sockaddr_in6`` (the sender) and room for one
#: ``IPV6_HOPLIMIT`` control message (``CMSG_SPACE(4)``).
_NAME6 = 28
_CONTROL6 = socket.CMSG_SPACE(4)
#: Where the hop limit sits in that control buffer: after the ``cmsghdr`` (len, level, type).
_HOPLIMIT_AT = socket.CMSG_LEN(0)


class BatchReceiver:
    """``recvmmsg(2)`` into a numpy buffer: up to ``capacity`` datagrams per call, each
    truncated to ``slot`` bytes (enough for any IPv4 + TCP header).

    ``v6``: an ``AF_INET6`` raw socket (``IPV6_RECVHOPLIMIT`` on), which delivers no IPv6
    header: ``receive6`` also returns each datagram's sender (16 bytes) and hop limit."""

    def __init__(
        self, sock: socket.socket, capacity: int = 1024, slot: int = 128, *, v6: bool = False
    ) -> None:
        import numpy as np

        libc = ctypes.CDLL(None, use_errno=True)
        self._recvmmsg = libc.recvmmsg
        self._recvmmsg.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_void_p,
        ]
        self._recvmmsg.restype = ctypes.c_int
        self._fd = sock.fileno()
        self.capacity, self.slot = capacity, slot
        self.rows = np.zeros((capacity, slot), np.uint8)
        self._iovs = (_Iovec * capacity)()
        self._msgs = (_Mmsghdr * capacity)()
        base = self.rows.ctypes.data
        for i in range(capacity):
            self._iovs[i].base = base + i * slot
            self._iovs[i].len = slot
            self._msgs[i].hdr.iov = ctypes.addressof(self._iovs[i])
            self._msgs[i].hdr.iovlen = 1
        self._lens = np.frombuffer(memoryview(self._msgs).cast("B"), np.uint32).reshape(
            capacity, -1
        )
        self._len_at = _Mmsghdr.len.offset // 4
        self.v6 = v6
        if v6:
            self.names = np.zeros((capacity, _NAME6), np.uint8)
            self.control = np.zeros((capacity, _CONTROL6), np.uint8)
            words = np.frombuffer(memoryview(self._msgs).cast("B"), np.uint64).reshape(capacity, -1)
            words[:, _Msghdr.name.offset // 8] = self.names.ctypes.data + _NAME6 * np.arange(
                capacity, dtype=np.uint64
            )
            words[:, _Msghdr.control.offset // 8] = self.control.ctypes.data + (
                _CONTROL6 * np.arange(capacity, dtype=np.uint64)
            )
            self._words = words
            self._namelen_at = _Msghdr.namelen.offset // 4
            self._controllen_at = _Msghdr.controllen.offset // 8

    def receive(self) -> tuple[Any, Any]:
        """What the socket holds now (at most ``capacity``): (rows, lengths), copies."""
        n = self._recvmmsg(
            self._fd, ctypes.addressof(self._msgs), self.capacity, _MSG_DONTWAIT, None
        )
        if n <= 0:
            err = ctypes.get_errno()
            if n < 0 and err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                raise ScanFailed(f"cannot receive replies: {os.strerror(err)}")
            return self.rows[:0], self._lens[:0, self._len_at]
        return self.rows[:n].copy(), self._lens[:n, self._len_at].copy()

    def receive6(self) -> tuple[Any, Any, Any, Any]:
        """``receive`` for IPv6: (rows, lengths, senders as ``S16``, hop limits), copies."""
        np = self._np6()
        # namelen and controllen are value-result: reset them before every call.
        self._lens[:, self._namelen_at] = _NAME6
        self._words[:, self._controllen_at] = _CONTROL6
        rows, lengths = self.receive()
        n = len(rows)
        senders = np.ascontiguousarray(self.names[:n, 8:24]).view("S16").reshape(n)
        hlims = self.control[:n, _HOPLIMIT_AT : _HOPLIMIT_AT + 4].copy().view("<u4").reshape(n)
        return rows, lengths, senders.copy(), hlims

    @staticmethod
    def _np6() -> Any:
        import numpy as np

        return np
