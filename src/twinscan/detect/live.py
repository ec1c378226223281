"""Live capture for ``twinscan detect --live``: the one module of the package with a socket.

A Linux ``AF_PACKET`` raw socket on one interface collects frames for a fixed time and
returns them as classic pcap bytes, which then go through the same pipeline as a file. It
only listens: nothing is ever sent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from twinscan.core.errors import EnvironmentProblem, UsageError
from twinscan.detect import capture as cap

ETH_P_ALL: Final = 0x0003
PACKET_OUTGOING: Final = 4
#: ARPHRD_* (include/uapi/linux/if_arp.h) -> pcap link type of what AF_PACKET delivers.
_ARPHRD_LINKTYPE: Final = {
    1: cap.LINKTYPE_ETHERNET,
    772: cap.LINKTYPE_ETHERNET,
    65534: cap.LINKTYPE_RAW,
}
#: Bound on the frames kept, whatever the duration (memory).
MAX_FRAMES: Final = 5_000_000


def linktype_of(iface: str, sysfs: Path = Path("/sys/class/net")) -> int:
    try:
        arphrd = int((sysfs / iface / "type").read_text().strip())
    except (OSError, ValueError):
        raise UsageError(f"no network interface {iface!r} here") from None
    if arphrd not in _ARPHRD_LINKTYPE:
        raise UsageError(f"interface {iface!r} has link type {arphrd}, which detect cannot read")
    return _ARPHRD_LINKTYPE[arphrd]


def capture_live(
    iface: str,
    seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> bytes:
    """Frames seen on ``iface`` during ``seconds``, as pcap bytes (loopback: each packet once)."""
    linktype = linktype_of(iface)
    loopback = (Path("/sys/class/net") / iface / "type").read_text().strip() == "772"
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError:
        raise EnvironmentProblem("a live capture needs root (CAP_NET_RAW)") from None
    chunks = [cap.pcap_header(linktype)]
    try:
        sock.bind((iface, 0))
        sock.settimeout(0.2)
        deadline = clock() + seconds
        frames = 0
        while frames < MAX_FRAMES and clock() < deadline:
            try:
                data, info = sock.recvfrom(262144)
            except TimeoutError:
                continue
            if loopback and info[2] == PACKET_OUTGOING:
                continue  # lo delivers every packet twice: as sent and as received
            chunks.append(cap.pcap_record(wall(), data))
            frames += 1
    except OSError as exc:
        raise EnvironmentProblem(f"live capture on {iface}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    return b"".join(chunks)
