"""Listeners on a loopback address whose verdicts are known: an open TCP port, a closed TCP port
(bound, never listening), an answering UDP port (echo) and a silent UDP port; what each raw TCP
technique says of the two TCP ports; and the switch between the raw engine's two send/receive
paths. Shared by the raw engine's IPv4 and IPv6 loopback tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from twinscan.core.vocab import PortState, Technique

#: raw TCP technique -> (verdict of the open port, of the closed one), IPv4 and IPv6 alike.
TCP_EXPECTED = {
    Technique.SYN: (PortState.OPEN, PortState.CLOSED),
    Technique.FIN: (PortState.OPEN_FILTERED, PortState.CLOSED),
    Technique.XMAS: (PortState.OPEN_FILTERED, PortState.CLOSED),
    Technique.NULL: (PortState.OPEN_FILTERED, PortState.CLOSED),
    Technique.ACK: (PortState.UNFILTERED, PortState.UNFILTERED),
    Technique.WINDOW: (PortState.CLOSED, PortState.CLOSED),  # Linux RSTs carry window 0
    Technique.MAIMON: (PortState.CLOSED, PortState.CLOSED),  # Linux answers FIN/ACK with RST
}

#: parametrize a test over the raw engine's paths (``use_path``)
BOTH_PATHS = pytest.mark.parametrize("path", ["one-by-one", "bulk", "bulk-two-threads"])


def use_path(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One probe at a time (what a small scan does: no numpy), in bulk (numpy, mmsg) from one
    thread, or in bulk with every batch of two probes or more sent half by a second thread
    (what two CPUs get: ``raw.SPLIT_MIN``), whatever this machine's CPUs."""
    from twinscan.engines import raw

    if path == "one-by-one":
        return
    monkeypatch.setattr(raw, "BULK_MIN_PROBES", 1)
    if path == "bulk":
        monkeypatch.setattr(raw, "_cpus", lambda: 1)
    else:
        monkeypatch.setattr(raw, "_cpus", lambda: 2)
        monkeypatch.setattr(raw, "SPLIT_MIN", 2)


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
