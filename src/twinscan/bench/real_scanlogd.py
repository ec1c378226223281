"""The real scanlogd (Debian package ``scanlogd``) beside ``twinscan detect``'s model of it.

One scanlogd per scan, in the target's network namespace, inside a private mount namespace
whose ``/dev/log`` is a datagram socket of ours; a thread stamps each syslog line on arrival.
It is found among the namespace's processes and stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


class RealScanlogd:
    """scanlogd in namespace ``ns``, logging to a datagram socket of ours; a thread stamps
    each syslog line with the time it arrived."""

    def __init__(self, ns: str, sock: socket.socket) -> None:
        import threading

        self.ns = ns
        self.sock = sock
        self._got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                msg = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self._got.append((time.time(), msg.decode(errors="replace")))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def messages(self) -> list[tuple[float, str]]:
        return list(self._got)


def _ns_pids(ns: str, comm: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
    pids = []
    for word in proc.stdout.split():
        with contextlib.suppress(OSError, ValueError):
            if Path(f"/proc/{int(word)}/comm").read_text().strip() == comm:
                pids.append(int(word))
    return pids


@contextlib.contextmanager
def real_scanlogd(ns: str) -> Iterator[RealScanlogd | None]:
    """The Debian scanlogd in ``ns`` for the block (None when it is not installed).

    It daemonizes and logs through syslog(3) to ``/dev/log``: it starts in a private mount
    namespace where ``/dev`` is a fresh tmpfs holding ``null`` and a bind mount of our socket
    as ``log`` (and ``/run`` one holding its empty chroot directory), so nothing of the host
    is touched. Its PID is found among the namespace's processes and killed by that PID.
    """
    exe = shutil.which("scanlogd")
    if exe is None:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="twinscan-scanlogd-"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = directory / "log"
    sock.bind(str(path))
    os.chmod(path, 0o666)
    script = (
        "set -e; mount --make-rprivate /; mount -t tmpfs tmpfs /dev; mknod -m 666 /dev/null c 1 3;"
        f" touch /dev/log; mount --bind {path} /dev/log; mount -t tmpfs tmpfs /run;"
        f" mkdir -p /run/scanlogd/empty; exec {exe}"
    )
    before = set(_ns_pids(ns, "scanlogd"))
    handle = RealScanlogd(ns, sock)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "unshare", "--mount", "sh", "-c", script],
                       capture_output=True, text=True, timeout=15, check=True)  # fmt: skip
        time.sleep(0.3)
        yield handle
    finally:
        for pid in set(_ns_pids(ns, "scanlogd")) - before:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        handle.stop()
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)
