"""Listeners on a loopback address whose verdicts are known: an open TCP port, a closed TCP port
(bound, never listening), an answering UDP port (echo) and a silent UDP port. Shared by the
raw engine's IPv4 and IPv6 loopback tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def loopback_listeners(family: socket.AddressFamily, address: str) -> Iterator[dict[str, int]]:
    socks: list[socket.socket] = []

    def bound(kind: int) -> socket.socket:
        s = socket.socket(family, kind)
        s.bind((address, 0))
        socks.append(s)
        return s

    tcp_open = bound(socket.SOCK_STREAM)
    tcp_open.listen(16)
    closed = bound(socket.SOCK_STREAM)
    udp_echo = bound(socket.SOCK_DGRAM)
    udp_silent = bound(socket.SOCK_DGRAM)
    stop = threading.Event()

    def echo() -> None:
        udp_echo.settimeout(0.1)
        for _ in range(3000):  # bounded: at most ~5 minutes
            if stop.is_set():
                return
            try:
                data, addr = udp_echo.recvfrom(2048)
            except TimeoutError:
                continue
            udp_echo.sendto(data or b"x", addr)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        yield {
            "tcp_open": tcp_open.getsockname()[1],
            "tcp_closed": closed.getsockname()[1],
            "udp_open": udp_echo.getsockname()[1],
            "udp_silent": udp_silent.getsockname()[1],
        }
    finally:
        stop.set()
        thread.join(2)
        for s in socks:
            s.close()
