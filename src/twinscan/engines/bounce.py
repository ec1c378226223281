"""FTP bounce scan (``-b``): the relay connects to each target port for us (no privileges).

The I/O half only: ``ftp_bounce_protocol.BounceSession`` decides what to send and what each
port's replies were; ``rules.classify(FTP_BOUNCE, outcome)`` turns them into nmap's verdict.
nmap keeps one control connection; twinscan opens up to ``DEFAULT_CONNECTIONS`` to the relay,
sharing one queue of ports, and carries on with fewer if the relay turns extra logins away.
A control connection that falls out of step (a timed-out PORT) is replaced by a fresh one, at
most ``MAX_RECONNECTS`` times. Every wait has a deadline; every socket is closed on the way out.
``--max-rate`` and ``--scan-delay`` pace the PORT commands (``ftp_bounce``, ``pacing``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable

from twinscan.core.errors import ScanFailed, TargetError, UsageError
from twinscan.core.progress import Progress
from twinscan.core.rules import BounceOutcome, classify
from twinscan.core.schema import ScanResult
from twinscan.core.vocab import Technique
from twinscan.protocol.ftp_bounce import (
    LOGIN_TIMEOUT_S,
    BounceSession,
    Phase,
    ProtocolError,
    RelayRefused,
    ReplyReader,
    SharedQueue,
)
from twinscan.protocol.pacing import RateLimiter
from twinscan.request.model import BounceRelay, ScanRequest

from .native_result import Row, build_result, row

DEFAULT_CONNECTIONS = 4
_LOGIN_PHASES = (Phase.GREETING, Phase.USER, Phase.PASS, Phase.CALIBRATE)
MAX_RECONNECTS = 8


class _Control:
    """One control connection: its socket, reply reader, dialogue, and the listener its
    calibration PORT points at (closed once calibration is over)."""

    def __init__(
        self, sock: socket.socket, session: BounceSession, listener: socket.socket | None
    ) -> None:
        self.sock = sock
        self.session = session
        self.reader = ReplyReader()
        self.listener = listener

    def calibration_accepted(self) -> bool:
        """Did the relay connect to our listener (before answering the calibration PORT)?"""
        if self.listener is None:
            return False
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.close_listener()
        self.sock.close()

    def close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def send(self, commands: list[str]) -> None:
        for command in commands:
            try:
                self.sock.sendall(command.encode() + b"\r\n")
            except OSError:
                if command != "QUIT":
                    raise


def scan(
    request: ScanRequest,
    technique: Technique,
    *,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
    connections: int = DEFAULT_CONNECTIONS,
) -> ScanResult:
    if technique is not Technique.FTP_BOUNCE:
        raise ValueError(f"the bounce engine cannot run a {technique} scan")
    relay = request.bounce
    if relay is None:
        raise UsageError("FTP bounce scan needs -b [user:pass@]relay[:port]")
    for target in request.targets:
        if ipaddress.ip_address(target).version != 4:
            raise TargetError(f"FTP bounce scans IPv4 targets only (PORT cannot name {target})")
    started = dt.datetime.now(dt.UTC)
    timing = request.timing
    pacer = None
    if timing.max_rate is not None or timing.scan_delay_ms > 0:
        pacer = RateLimiter.for_timing(timing, start=clock(), per_host_delay=False)
    queue = SharedQueue(
        deque((t, p) for t in request.targets for p in request.ports_for(technique)),
        pacer=pacer,
    )
    total = len(queue.jobs)
    progress.start("FTP bounce scan", total)
    incomplete = False
    outcomes: list[tuple[tuple[str, int], BounceOutcome]] = []
    try:
        run_bounce(relay, queue, outcomes, clock=clock, progress=progress, connections=connections)
    except KeyboardInterrupt:
        incomplete = True
    finally:
        progress.finish()
    rows: list[Row] = [
        row(host, port, classify(Technique.FTP_BOUNCE, outcome), None)
        for (host, port), outcome in outcomes
    ]
    return build_result(request, technique, rows, started=started, incomplete=incomplete)


def _open_control(relay: BounceRelay, queue: SharedQueue, now: float) -> _Control:
    family = socket.AF_INET6 if ":" in relay.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(LOGIN_TIMEOUT_S)
    try:
        sock.connect((relay.host, relay.port))
    except OSError as exc:
        sock.close()
        raise ScanFailed(
            f"cannot reach the FTP relay {relay.host} port {relay.port}: {exc.strerror or exc}"
        ) from None
    sock.settimeout(None)
    sock.setblocking(False)
    listener = _calibration_listener(sock)
    calibration = listener.getsockname()[:2] if listener is not None else None
    session = BounceSession(
        queue, user=relay.user, password=relay.password, calibration=calibration
    )
    control = _Control(sock, session, listener)
    control.send(session.start(now))
    return control


def _calibration_listener(control: socket.socket) -> socket.socket | None:
    """A listening socket on the address the relay sees us at (IPv4 only: PORT's limit)."""
    local = control.getsockname()[0]
    if control.family != socket.AF_INET:
        return None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((local, 0))
        listener.listen(1)
    except OSError:
        listener.close()
        return None
    listener.setblocking(False)
    return listener


def run_bounce(
    relay: BounceRelay,
    queue: SharedQueue,
    outcomes: list[tuple[tuple[str, int], BounceOutcome]],
    *,
    clock: Callable[[], float],
    progress: Progress,
    connections: int = DEFAULT_CONNECTIONS,
) -> None:
    """Scan every job of ``queue`` through ``relay``, appending to ``outcomes`` as they come."""
    sel = selectors.DefaultSelector()
    live: list[_Control] = []
    opened = 0
    wanted = max(1, connections)
    ever_logged_in = False
    try:
        while queue.jobs or live:
            # The first connection alone until it has logged in, so that a refused login fails
            # once and clearly; then up to ``wanted`` while ports remain.
            limit = wanted if ever_logged_in else 1
            while queue.jobs and len(live) < limit and opened < MAX_RECONNECTS + wanted:
                control = _open_control(relay, queue, clock())
                opened += 1
                live.append(control)
                sel.register(control.sock, selectors.EVENT_READ, control)
            if not live:
                raise ScanFailed(
                    f"the FTP relay kept dropping the control connection; "
                    f"{len(queue.jobs)} port(s) not scanned"
                )
            deadlines = [c.session.deadline for c in live if c.session.deadline is not None]
            wait = max(0.0, min(deadlines) - clock()) if deadlines else 0.0
            ready = {key.data for key, _ in sel.select(min(wait, 1.0))}
            for control in list(live):
                session = control.session
                try:
                    try:
                        if control in ready:
                            _read(control, clock())
                        elif session.deadline is not None and clock() >= session.deadline:
                            control.send(session.on_timeout(clock()))
                    except OSError:  # reset or broken pipe: as if the relay hung up
                        control.send(session.on_closed(clock()))
                except RelayRefused as exc:
                    if session.logged_in or not ever_logged_in:
                        raise ScanFailed(str(exc)) from None
                    wanted = max(1, len(live) - 1)  # an extra login turned away: use fewer
                    session.phase = Phase.DONE
                except ProtocolError as exc:
                    raise ScanFailed(
                        f"the FTP relay does not speak FTP as expected: {exc}"
                    ) from None
                ever_logged_in = ever_logged_in or session.logged_in
                while session.results:
                    outcomes.append(session.results.pop(0))
                    progress.advance()
                if session.phase not in _LOGIN_PHASES:
                    control.close_listener()
                elif not queue.jobs and session.current is None and not session.done:
                    # Still logging in but nothing left to scan: don't wait for it (a relay
                    # that is slow with an extra login must not hold the scan up).
                    control.send(["QUIT"])
                    session.phase = Phase.DONE
                if session.done:
                    sel.unregister(control.sock)
                    control.close()
                    live.remove(control)
    finally:
        for control in live:
            control.close()
        sel.close()


def _read(control: _Control, now: float) -> None:
    data = control.sock.recv(65536)
    session = control.session
    if not data:
        control.send(session.on_closed(now))
        return
    for reply in control.reader.feed(data):
        if session.phase is Phase.CALIBRATE:
            session.calibration_accepted = control.calibration_accepted()
        control.send(session.on_reply(reply, now))
        if session.done:
            return
