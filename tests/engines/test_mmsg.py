"""``mmsg.BatchSender`` on loopback (root): a batch leaves whole and once, whether this thread
sends it or two threads send a part each; the second thread's rows stay alive until they are
out; an error in its part reaches the caller; ``close`` ends that thread."""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from twinscan.core.errors import ScanFailed
from twinscan.core.vocab import Technique

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")

TARGET = "127.0.0.1"


@pytest.fixture()
def wire() -> Iterator[tuple[socket.socket, socket.socket, int]]:
    """A raw sending socket, a raw TCP socket that sees every TCP datagram on loopback (our
    probes included), and a source port nobody else uses."""
    from twinscan.engines.raw import pick_source_port

    send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    see = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    see.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    see.setblocking(False)
    try:
        yield send, see, pick_source_port(random.Random(), range(1, 2000))
    finally:
        send.close()
        see.close()


def _rows(sport: int, ports: list[int]):  # type: ignore[no-untyped-def]
    import numpy as np

    from twinscan.engines.template_cache import cached_template
    from twinscan.protocol.packets import ProbeBuilder

    builder = ProbeBuilder(Technique.SYN, TARGET, sport, os.urandom(16), template=cached_template)
    zeros = np.zeros(len(ports), dtype=np.int64)
    table = builder.host_table([TARGET])
    return builder.tcp_rows(table, zeros, np.asarray(ports, dtype=np.int64), zeros), zeros


def _probes_seen(see: socket.socket, sport: int, want: int) -> Counter[int]:
    """The destination ports of our SYNs that crossed loopback (each one's count)."""
    seen: Counter[int] = Counter()
    deadline = time.monotonic() + 5
    while sum(seen.values()) < want and time.monotonic() < deadline:
        try:
            data = see.recv(256)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        ihl = (data[0] & 0x0F) * 4
        src_port = int.from_bytes(data[ihl : ihl + 2], "big")
        flags = data[ihl + 13]
        if src_port == sport and flags == 0x02:  # our SYN, not a reply
            seen[int.from_bytes(data[ihl + 2 : ihl + 4], "big")] += 1
    return seen


@pytest.mark.parametrize("split_min", [None, 2, 64, 10_000], ids=lambda v: f"split_min={v}")
def test_every_row_leaves_once(
    split_min: int | None, wire: tuple[socket.socket, socket.socket, int]
) -> None:
    from twinscan.engines.mmsg import BatchSender

    send, see, sport = wire
    ports = random.sample(range(1, 2000), 300)
    rows, hosts = _rows(sport, ports)
    sender = BatchSender(send, [TARGET], split_min=split_min)
    try:
        sizes = (1, 3, 63, 64, 169)  # batches below and above the split
        start = 0
        for size in sizes:
            sender.send(rows[start : start + size], hosts[:size])
            start += size
        assert start == len(ports)
        sender.flush()
    finally:
        sender.close()
    assert _probes_seen(see, sport, len(ports)) == Counter(ports)
    split = sum(split_min is not None and size >= max(2, split_min) for size in sizes)
    assert sender.split_batches == split
    assert sender.refused == 0


def test_an_error_in_the_second_part_reaches_the_caller(
    wire: tuple[socket.socket, socket.socket, int],
) -> None:
    from twinscan.engines.mmsg import BatchSender

    send, _see, sport = wire
    rows, hosts = _rows(sport, list(range(1000, 1100)))
    threads = threading.active_count()
    sender = BatchSender(send, [TARGET], split_min=2)
    real = sender._sendmmsg
    main = threading.get_ident()

    def broken_elsewhere(fd: int, msgs: int, n: int, flags: int) -> int:
        if threading.get_ident() == main:
            return int(real(fd, msgs, n, flags))
        ctypes.set_errno(errno.EBADF)  # (ctypes' errno is the calling thread's)
        return -1

    sender._sendmmsg = broken_elsewhere
    try:
        sender.send(rows, hosts)
        with pytest.raises(ScanFailed, match="cannot send probes"):
            sender.flush()
        sender._sendmmsg = real  # the thread still serves the next batch
        sender.send(rows, hosts)
        sender.flush()
        assert sender.refused == 0
        sender._sendmmsg = broken_elsewhere  # a last batch whose part fails: close says so
        sender.send(rows, hosts)
        with pytest.raises(ScanFailed, match="cannot send probes"):
            sender.close()
        assert threading.active_count() == threads  # (and the second thread has ended)
    finally:
        sender.close()


def test_the_second_threads_rows_stay_alive_until_they_are_out(
    wire: tuple[socket.socket, socket.socket, int],
) -> None:
    """The caller may drop its rows as soon as ``send`` returns: the sender keeps them until
    the second thread has sent its part (here slowed down, and the rows in their own mapping,
    which freeing would unmap: the kernel would refuse to read them, EFAULT)."""
    import numpy as np

    from twinscan.engines.heap import unmap_large_frees
    from twinscan.engines.mmsg import BatchSender

    send, see, sport = wire
    unmap_large_frees()
    ports = list(range(1000, 1200))
    built, hosts = _rows(sport, ports)
    big = np.zeros(8 << 20, np.uint8)
    rows = big[: built.size].reshape(built.shape)
    rows[:] = built
    del big, built
    sender = BatchSender(send, [TARGET], split_min=2)
    real = sender._sendmmsg
    main = threading.get_ident()

    def slow_elsewhere(fd: int, msgs: int, n: int, flags: int) -> int:
        if threading.get_ident() != main:
            time.sleep(0.2)
        return int(real(fd, msgs, n, flags))

    sender._sendmmsg = slow_elsewhere
    try:
        sender.send(rows, hosts)
        del rows
        gc.collect()
        sender.flush()
    finally:
        sender.close()
    assert _probes_seen(see, sport, len(ports)) == Counter(ports)


def test_close_ends_the_second_thread(wire: tuple[socket.socket, socket.socket, int]) -> None:
    from twinscan.engines.mmsg import BatchSender

    send, _see, sport = wire
    rows, hosts = _rows(sport, list(range(1000, 1010)))
    before = threading.active_count()
    sender = BatchSender(send, [TARGET], split_min=2)
    sender.send(rows, hosts)
    assert threading.active_count() == before + 1
    sender.close()  # (after the rows still leaving)
    assert sender.split_batches == 1 and sender.refused == 0
    assert threading.active_count() == before
    sender.close()  # (twice: nothing left to end)
