"""The bounce engine through a real pyftpdlib relay on loopback (no privileges needed).

The relay is configured like the lab's (``twinscan.lab.services``): anonymous, PORT to any
address and port, active data connections time out after a few seconds. Target ports: one that
accepts and closes at once (like the lab's listeners), one nobody listens on, one that drops SYNs
(a listener whose accept queue is full). Expected verdicts come from ``twinscan.lab.truth``'s
model of what that relay answers, through ``rules.classify``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from twinscan.cli import app
from twinscan.core import rules
from twinscan.core.errors import ScanFailed, TargetError
from twinscan.core.progress import NoProgress
from twinscan.core.vocab import PortState, Technique
from twinscan.engines import bounce
from twinscan.request.build import build_request
from twinscan.request.model import BounceRelay

pyftpdlib = pytest.importorskip("pyftpdlib")
pytestmark = pytest.mark.filterwarnings("ignore:The (asyncore|asynchat) module:DeprecationWarning")

ACTIVE_TIMEOUT_S = 2


@dataclasses.dataclass
class Relay:
    port: int
    server: Any


@contextlib.contextmanager
def ftp_relay(*, privileged: bool = True, port_reply: str | None = None) -> Iterator[Relay]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.handlers.ftp.dispatchers import ActiveDTP
    from pyftpdlib.servers import FTPServer

    class QuickDTP(ActiveDTP):  # type: ignore[misc]
        timeout = ACTIVE_TIMEOUT_S

    class Handler(FTPHandler):  # type: ignore[misc]
        permit_foreign_addresses = True
        permit_privileged_ports = privileged
        active_dtp = QuickDTP
        auth_failed_timeout = 0.05

        def ftp_PORT(self, line: str) -> None:  # noqa: N802 - pyftpdlib's naming
            if port_reply is not None:
                self.respond(port_reply)
            else:
                super().ftp_PORT(line)

    home = tempfile.mkdtemp(prefix="twinscan-test-ftp-")
    auth = DummyAuthorizer()
    auth.add_anonymous(home)
    auth.add_user("scan", "secret", home)
    Handler.authorizer = auth
    server = FTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    try:
        yield Relay(server.address[1], server)
    finally:
        server.close_all()
        thread.join(timeout=10)


@contextlib.contextmanager
def targets() -> Iterator[dict[str, int]]:
    """Ports on 127.0.0.1: ``open`` accepts and holds each connection (as a service would),
    ``closed`` has no listener, ``dropped`` silently drops SYNs.

    (``open`` used to close each connection at once, so the target's FIN or RST could reach
    the relay while it still handled the connect or the transfer, and a 425 or 426 would make
    the port closed. One CI run reported this test's open port closed; 40 runs under load did
    not repeat it, so that race is the suspect, not a proven cause. Holding the connection as a
    service would leaves the relay nothing to race.)"""
    acceptor = socket.socket()
    acceptor.bind(("127.0.0.1", 0))
    acceptor.listen(64)
    acceptor.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept_and_hold() -> None:
        while not stop.is_set():
            try:
                conn, _ = acceptor.accept()
            except OSError:
                continue
            held.append(conn)  # closed when the fixture ends

    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(full.getsockname())
        fillers.append(c)
    gone = socket.socket()
    gone.bind(("127.0.0.1", 0))
    closed_port = gone.getsockname()[1]
    gone.close()
    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        yield {
            "open": acceptor.getsockname()[1],
            "closed": closed_port,
            "dropped": full.getsockname()[1],
        }
    finally:
        stop.set()
        thread.join(timeout=5)
        for s in (acceptor, full, *fillers, *held):
            s.close()


def bounce_request(relay: Relay, ports: list[int], creds: str = "") -> Any:
    return build_request(
        targets=["127.0.0.1"],
        techniques=[Technique.FTP_BOUNCE],
        ports=",".join(map(str, ports)),
        bounce=f"{creds}127.0.0.1:{relay.port}",
    )


def states(frame: Any) -> dict[int, str]:
    return {int(r.port): str(r.state) for r in frame[["port", "state"]].itertuples()}


def expected_from_truth_model() -> dict[str, PortState]:
    from twinscan.lab import truth

    pick = {
        "open": truth.BOUNCE_OPEN,
        "closed": truth.BOUNCE_REFUSED,
        "dropped": truth.BOUNCE_TIMEOUT,
    }
    return {
        k: rules.classify(Technique.FTP_BOUNCE, rules.BounceOutcome(v)).state
        for k, v in pick.items()
    }


def test_bounce_verdicts_match_the_truth_model() -> None:
    with ftp_relay() as relay, targets() as ports:
        req = bounce_request(relay, list(ports.values()))
        result = bounce.scan(req, Technique.FTP_BOUNCE, progress=NoProgress())
    want = expected_from_truth_model()
    assert states(result.frame) == {ports[k]: want[k].value for k in ports}
    assert set(result.frame["technique"].astype(str)) == {"ftp-bounce"}
    assert set(result.frame["reason"].astype(str)) == {"no-response"}
    assert result.meta.techniques == (Technique.FTP_BOUNCE,)


def test_several_control_connections_agree_with_one() -> None:
    with ftp_relay() as relay, targets() as ports:
        extra = [ports["closed"]]
        for _ in range(11):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                extra.append(s.getsockname()[1])
        plist = [ports["open"], *extra]
        req = bounce_request(relay, plist)
        one = bounce.scan(req, Technique.FTP_BOUNCE, progress=NoProgress(), connections=1)
        four = bounce.scan(req, Technique.FTP_BOUNCE, progress=NoProgress(), connections=4)
    assert states(one.frame) == states(four.frame)
    assert states(four.frame)[ports["open"]] == "open"
    assert len(four.frame) == len(set(plist))


def test_refused_login_is_one_clear_error() -> None:
    with ftp_relay() as relay:
        req = bounce_request(relay, [8080], creds="scan:wrong@")
        with pytest.raises(ScanFailed, match="refused the login"):
            bounce.scan(req, Technique.FTP_BOUNCE, progress=NoProgress())
        res = CliRunner().invoke(
            app, ["scan", "-b", f"scan:wrong@127.0.0.1:{relay.port}", "-p", "8080", "127.0.0.1"]
        )
    assert res.exit_code == ScanFailed.exit_code
    assert "refused the login" in res.output and "Traceback" not in res.output


def test_relay_refusing_port_is_fatal_like_nmap() -> None:
    with ftp_relay(port_reply="502 PORT not implemented") as relay:
        req = bounce_request(relay, [8080])
        with pytest.raises(ScanFailed, match="refuses PORT"):
            bounce.scan(req, Technique.FTP_BOUNCE, progress=NoProgress())


def test_privileged_ports_are_skipped_when_the_relay_refuses_them() -> None:
    with ftp_relay(privileged=False) as relay, targets() as ports:
        req = bounce_request(relay, [22, 80, ports["open"], ports["closed"]])
        frame = bounce.scan(req, Technique.FTP_BOUNCE, progress=NoProgress()).frame
    assert states(frame) == {ports["open"]: "open", ports["closed"]: "closed"}


def test_unreachable_relay_and_ipv6_targets() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    req = build_request(
        targets=["127.0.0.1"], techniques=[Technique.FTP_BOUNCE], ports="80",
        bounce=f"127.0.0.1:{dead}",
    )  # fmt: skip
    with pytest.raises(ScanFailed, match="cannot reach the FTP relay"):
        bounce.scan(req, Technique.FTP_BOUNCE, progress=NoProgress())
    v6 = dataclasses.replace(req, targets=("::1",), bounce=BounceRelay("127.0.0.1", dead))
    with pytest.raises(TargetError, match="IPv4"):
        bounce.scan(v6, Technique.FTP_BOUNCE, progress=NoProgress())


def test_cli_bounce_alone_runs_only_the_bounce_scan() -> None:
    with ftp_relay() as relay, targets() as ports:
        res = CliRunner().invoke(
            app,
            ["scan", "-b", f"127.0.0.1:{relay.port}", "-p", str(ports["open"]), "127.0.0.1",
             "--csv", "-"],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2
    assert ",ftp-bounce,127.0.0.1,tcp," in lines[1] and ",open," in lines[1]
