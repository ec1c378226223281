"""The FTP bounce dialogue (``-b``) as a pure state machine: fed reply lines and clock ticks,
it emits the commands to send and, per port, the ``rules.BounceOutcome`` that decides it.

Follows nmap's ``nmap_ftp.cc`` (``ftp_anon_connect``, ``bounce_scan``): USER/PASS (a 5xx is
fatal), then per port ``PORT h1,h2,h3,h4,p1,p2`` and ``LIST``; a 5xx to PORT is fatal for a port
above 1023 and means "skip the privileged ports" below; LIST's first reply within 12 s decides
(1xx: wait 10 s more for the final reply, else ``ABOR`` and filtered). Timers are nmap's.

One addition, so that relays which open the data connection when PORT arrives (pyftpdlib and
others reply 200 only once connected, 425/421 when the connect failed) are read correctly: right
after login the session calibrates with one ordinary active-mode ``PORT`` to a socket the
scanner itself listens on (``calibration``). A relay that connects before answering 2xx, or
answers 4xx, connects eagerly, so its PORT replies decide: 2xx -> the port accepted the
connection (open), 4xx -> closed, and no LIST is sent. Any relay's 4xx to PORT is decisive too:
the relay already failed to connect (nmap: "errors -> closed").

Pacing: every PORT makes the relay open a connection to the target, so ``--max-rate`` and
``--scan-delay`` gate PORT commands through the scan-wide ``pacing.RateLimiter`` the raw and
connect scans use (``SharedQueue.pacer``, shared by every control connection). nmap's
``bounce_scan`` ignores both (it sends one PORT at a time, as fast as the relay answers); a
connection that may not send yet waits in ``Phase.READY`` until the limiter allows. The RTT
estimator and congestion window do not apply: the relay's replies, not the target's, are what
the dialogue waits for, under nmap's fixed FTP timeouts below.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from typing import Final

from twinscan.core.errors import ScanFailed
from twinscan.core.rules import BounceOutcome

from .pacing import RateLimiter

#: nmap_ftp.cc receive timeouts, seconds.
LOGIN_TIMEOUT_S: Final = 12.0
PORT_TIMEOUT_S: Final = 15.0
LIST_TIMEOUT_S: Final = 12.0
LIST_FINAL_TIMEOUT_S: Final = 10.0
ABOR_TIMEOUT_S: Final = 10.0
#: a reply line longer than this is not FTP (RFC 959 has no limit; real servers stay far below).
MAX_LINE: Final = 8192


class ProtocolError(ScanFailed):
    """The relay does not speak FTP as expected (malformed reply, overlong line)."""


class RelayRefused(ScanFailed):
    """The relay refuses what a bounce scan needs (login, PORT): nmap gives up too."""


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def kind(self) -> int:
        """The first digit: 1 preliminary, 2 done, 3 intermediate, 4 transient, 5 permanent."""
        return self.code // 100


class ReplyReader:
    """Bytes from the control connection -> complete replies (multi-line replies folded)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._multi: int | None = None
        self._lines: list[str] = []

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        out: list[Reply] = []
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            reply = self._line(line)
            if reply is not None:
                out.append(reply)
        if len(self._buffer) > MAX_LINE:
            raise ProtocolError("reply line too long")
        return out

    def _line(self, line: str) -> Reply | None:
        code_s = line[:3]
        has_code = len(line) >= 3 and code_s.isdigit()
        if self._multi is not None:
            same = has_code and int(code_s) == self._multi
            self._lines.append(line[4:] if same else line)
            if same and line[3:4] != "-":
                reply = Reply(self._multi, "\n".join(self._lines))
                self._multi, self._lines = None, []
                return reply
            return None
        if not has_code or line[3:4] not in ("", " ", "-"):
            raise ProtocolError(f"not an FTP reply: {line[:80]!r}")
        if line[3:4] == "-":
            self._multi, self._lines = int(code_s), [line[4:]]
            return None
        return Reply(int(code_s), line[4:])


def port_command(address: str, port: int) -> str:
    """``PORT h1,h2,h3,h4,p1,p2`` for an IPv4 address (FTP's PORT cannot name IPv6)."""
    octets = address.split(".")
    if len(octets) != 4 or not all(o.isdigit() and 0 <= int(o) <= 255 for o in octets):
        raise ValueError(f"PORT needs an IPv4 address, not {address!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return f"PORT {','.join(str(int(o)) for o in octets)},{port >> 8},{port & 0xFF}"


class Phase(enum.Enum):
    GREETING = "greeting"
    USER = "user"
    PASS = "pass"
    CALIBRATE = "calibrate"
    READY = "ready"
    PORT = "port"
    LIST = "list"
    LIST_FINAL = "list-final"
    ABOR = "abor"
    DONE = "done"


#: One job: (target IPv4 address, port).
Job = tuple[str, int]


@dataclasses.dataclass(slots=True)
class SharedQueue:
    """The ports still to scan, shared by every control connection of one scan."""

    jobs: deque[Job]
    privileged_ok: bool = False
    privileged_refused: bool = False
    skipped: list[Job] = dataclasses.field(default_factory=list)
    #: --max-rate / --scan-delay over PORT commands, across all connections (None: no limit)
    pacer: RateLimiter | None = None

    def skip_privileged(self) -> None:
        """nmap: "Your FTP bounce server doesn't allow privileged ports, skipping them.\""""
        self.privileged_refused = True
        keep = deque(j for j in self.jobs if j[1] > 1023)
        self.skipped.extend(j for j in self.jobs if j[1] <= 1023)
        self.jobs = keep


class BounceSession:
    """One control connection's dialogue. Drive it with ``start``, ``on_reply`` and
    ``on_timeout``; each returns the command lines to send (without CRLF). ``deadline`` is when
    ``on_timeout`` is due. Finished ports accumulate in ``results``."""

    def __init__(
        self,
        queue: SharedQueue,
        *,
        user: str,
        password: str,
        calibration: tuple[str, int] | None = None,
    ) -> None:
        self.queue = queue
        self.user = user
        self.password = password
        #: (scanner IPv4 address, listening port) for the calibration PORT, if any.
        self.calibration = calibration
        #: set by the I/O layer before a calibration reply: did the relay connect to us?
        self.calibration_accepted = False
        self.phase = Phase.GREETING
        self.deadline: float | None = None
        self.eager: bool | None = None
        self.current: Job | None = None
        self.codes: list[int] = []
        self.results: list[tuple[Job, BounceOutcome]] = []
        #: set when the session must end early: the control connection is out of step.
        self.resync = False
        self.logged_in = False

    # --- driving -------------------------------------------------------------------------

    def start(self, now: float) -> list[str]:
        self.deadline = now + LOGIN_TIMEOUT_S
        return []

    def on_reply(self, reply: Reply, now: float) -> list[str]:
        handler = getattr(self, f"_on_{self.phase.name.lower()}")
        out: list[str] = handler(reply, now)
        return out

    def on_timeout(self, now: float) -> list[str]:
        match self.phase:
            case Phase.GREETING | Phase.USER | Phase.PASS:
                raise RelayRefused("the FTP relay did not answer in time while logging in")
            case Phase.CALIBRATE:
                self.eager = False
                self.resync = True  # a late answer would misalign the next PORT
                return self._finish()
            case Phase.PORT:
                # nmap: "recv problem"; the relay is still busy with this PORT, so its answer
                # would be read as the next port's: record filtered and reconnect.
                self._record(BounceOutcome((), timed_out=True))
                self.resync = True
                return self._finish()
            case Phase.LIST:
                self._record(BounceOutcome((), timed_out=True))
                self.resync = True
                return self._finish()
            case Phase.LIST_FINAL:
                self._record(BounceOutcome(tuple(self.codes), timed_out=True))
                return self._enter(Phase.ABOR, now + ABOR_TIMEOUT_S, ["ABOR"])
            case Phase.ABOR:
                self.resync = True
                return self._finish()
            case Phase.READY:
                return self._next(now)  # the pacer's wait is over
        return []

    def on_closed(self, now: float) -> list[str]:
        """The relay closed the control connection (or it broke)."""
        if not self.logged_in:
            raise RelayRefused("the FTP relay closed the connection during login")
        if self.phase in (Phase.LIST, Phase.LIST_FINAL) and self.current is not None:
            # nmap: LIST got 0 bytes without a timeout -> closed.
            self._record(BounceOutcome(tuple(self.codes)))
        self.resync = True
        return self._finish()  # a port still waiting for its PORT reply is retried elsewhere

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    # --- phases ----------------------------------------------------------------------------

    def _on_greeting(self, reply: Reply, now: float) -> list[str]:
        if reply.kind == 1:
            return []  # 120 service ready in nnn minutes
        if reply.kind != 2:
            raise RelayRefused(f"the FTP relay turned us away: {reply.code} {reply.text}")
        return self._enter(Phase.USER, now + LOGIN_TIMEOUT_S, [f"USER {self.user}"])

    def _on_user(self, reply: Reply, now: float) -> list[str]:
        if reply.code == 230:
            return self._logged_in(now)
        if reply.kind == 3:
            return self._enter(Phase.PASS, now + LOGIN_TIMEOUT_S, [f"PASS {self.password}"])
        raise RelayRefused(
            f'the FTP relay refused the user name "{self.user}": {reply.code} {reply.text}'
        )

    def _on_pass(self, reply: Reply, now: float) -> list[str]:
        if reply.kind == 2:
            return self._logged_in(now)
        raise RelayRefused(
            f"the FTP relay refused the login ({self.user}): {reply.code} {reply.text}"
        )

    def _logged_in(self, now: float) -> list[str]:
        self.logged_in = True
        if self.calibration is not None:
            probe = port_command(*self.calibration)
            return self._enter(Phase.CALIBRATE, now + PORT_TIMEOUT_S, [probe])
        return self._next(now)  # eagerness unknown until a PORT gets a 4xx

    def _on_calibrate(self, reply: Reply, now: float) -> list[str]:
        if reply.kind == 4:
            self.eager = True  # it tried to connect before answering, and failed
        elif reply.kind == 2:
            self.eager = self.calibration_accepted
        return self._next(now)  # 5xx: not known yet

    def _on_ready(self, reply: Reply, now: float) -> list[str]:
        return []  # a stray reply between ports (e.g. after ABOR): ignore

    def _on_port(self, reply: Reply, now: float) -> list[str]:
        assert self.current is not None
        port = self.current[1]
        if reply.kind == 5 and not self.queue.privileged_ok:
            if port > 1023:
                raise RelayRefused(
                    f"the FTP relay refuses PORT to an unprivileged port ({reply.code} "
                    f"{reply.text}): it does not allow bounce scans"
                )
            self.queue.skipped.append(self.current)
            self.current = None
            self.queue.skip_privileged()
            return self._next(now)
        if port <= 1023 and reply.kind != 5:
            self.queue.privileged_ok = True
        if reply.kind == 4 and self.eager is None:
            self.eager = True  # it tried the connection already: PORT replies decide
        if reply.kind == 4 or (self.eager and reply.kind == 2):
            self._record(BounceOutcome((reply.code,)))
            return self._next(now)
        return self._enter(Phase.LIST, now + LIST_TIMEOUT_S, ["LIST"])

    def _on_list(self, reply: Reply, now: float) -> list[str]:
        if reply.code == 500 and not self.codes:
            return []  # nmap: "FTP command misalignment detected ... correcting"
        self.codes.append(reply.code)
        if reply.kind == 1:
            return self._enter(Phase.LIST_FINAL, now + LIST_FINAL_TIMEOUT_S, [])
        self._record(BounceOutcome(tuple(self.codes)))
        return self._next(now)

    def _on_list_final(self, reply: Reply, now: float) -> list[str]:
        self.codes.append(reply.code)
        if reply.kind == 1:
            return []  # another preliminary reply: keep waiting for the final one
        self._record(BounceOutcome(tuple(self.codes)))
        return self._next(now)

    def _on_abor(self, reply: Reply, now: float) -> list[str]:
        if reply.kind == 2:  # 225/226: the abort is complete (a 426 may come first)
            return self._next(now)
        return []

    # --- helpers ---------------------------------------------------------------------------

    def _enter(self, phase: Phase, deadline: float, commands: list[str]) -> list[str]:
        self.phase = phase
        self.deadline = deadline
        return commands

    def _record(self, outcome: BounceOutcome) -> None:
        assert self.current is not None
        self.results.append((self.current, outcome))
        self.current = None
        self.codes = []

    def _next(self, now: float) -> list[str]:
        if not self.queue.jobs:
            return self._finish()
        pacer = self.queue.pacer
        if pacer is not None:
            if pacer.allowance(now) < 1:
                return self._enter(Phase.READY, max(pacer.next_time(now), now), [])
            pacer.spend(1, now)
        job = self.queue.jobs.popleft()
        self.current = job
        self.codes = []
        return self._enter(Phase.PORT, now + PORT_TIMEOUT_S, [port_command(*job)])

    def _finish(self) -> list[str]:
        if self.current is not None:  # interrupted mid-port: give it back
            self.queue.jobs.appendleft(self.current)
            self.current = None
        self.phase = Phase.DONE
        self.deadline = None
        return ["QUIT"]
