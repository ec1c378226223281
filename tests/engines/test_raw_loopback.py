"""The native raw engine end to end on loopback, against listeners this test starts (root)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from loopback_listeners import BOTH_PATHS, TCP_EXPECTED, loopback_listeners, use_path
from twinscan.core.errors import EnvironmentProblem
from twinscan.core.timing import resolve
from twinscan.core.vocab import PortState, Technique
from twinscan.request.model import ScanRequest
from twinscan.request.ports import PortPlan

T = Technique
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")


@pytest.fixture(scope="module")
def listeners() -> Iterator[dict[str, int]]:
    """An open TCP port, a closed TCP port, an answering UDP port and a silent UDP port."""
    with loopback_listeners(socket.AF_INET, "127.0.0.1") as ports:
        yield ports


def _scan(tech: Technique, tcp: tuple[int, ...], udp: tuple[int, ...] = ()) -> dict[int, str]:
    from twinscan.engines.raw import scan

    request = ScanRequest(
        targets=("127.0.0.1",),
        ports=PortPlan(tcp=tcp, udp=udp),
        techniques=(tech,),
        timing=resolve(4),
    )
    result = scan(request, tech)
    assert not result.meta.incomplete
    frame = result.frame
    assert set(frame["technique"].astype(str)) == {tech.value}
    return {int(p): str(s) for p, s in zip(frame["port"], frame["state"], strict=True)}


@BOTH_PATHS
@pytest.mark.parametrize("tech", list(TCP_EXPECTED))
def test_tcp_techniques_on_loopback(
    tech: Technique, path: str, listeners: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_path(path, monkeypatch)
    ports = (listeners["tcp_open"], listeners["tcp_closed"], *range(1, 200))
    got = _scan(tech, tuple(dict.fromkeys(ports)))
    want_open, want_closed = TCP_EXPECTED[tech]
    assert got[listeners["tcp_open"]] == want_open.value
    assert got[listeners["tcp_closed"]] == want_closed.value
    assert len(got) == len(set(ports))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
@pytest.mark.parametrize("tech", [T.SYN, T.FIN])
def test_prebuilt_first_tries_give_the_same_verdicts(
    tech: Technique, chunk: int, listeners: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One target on the bulk path: its first tries come from chunks built ahead (batches
    straddle chunks when they are small); the verdicts are those of the per-batch build."""
    from twinscan.engines import raw

    use_path("bulk", monkeypatch)
    monkeypatch.setattr(raw, "FIRST_TRIES_CHUNK", chunk)
    prebuilt = []
    real = raw._BulkIO._first_tries

    def counted(self, *args):  # type: ignore[no-untyped-def]
        rows = real(self, *args)
        prebuilt.append(0 if rows is None else len(rows))
        return rows

    monkeypatch.setattr(raw._BulkIO, "_first_tries", counted)
    ports = tuple(dict.fromkeys((listeners["tcp_open"], listeners["tcp_closed"], *range(1, 600))))
    got = _scan(tech, ports)
    assert sum(prebuilt) == len(ports)  # every first try came prebuilt
    monkeypatch.setattr(raw._BulkIO, "_first_tries", lambda *_: None)
    assert _scan(tech, ports) == got
    want_open, want_closed = TCP_EXPECTED[tech]
    assert got[listeners["tcp_open"]] == want_open.value
    assert got[listeners["tcp_closed"]] == want_closed.value


def test_udp_on_loopback(listeners: dict[str, int]) -> None:
    closed = 19
    got = _scan(T.UDP, (), (listeners["udp_open"], listeners["udp_silent"], closed))
    assert got == {
        listeners["udp_open"]: PortState.OPEN.value,
        listeners["udp_silent"]: PortState.OPEN_FILTERED.value,
        closed: PortState.CLOSED.value,
    }


def test_without_raw_sockets_the_error_suggests_connect_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from twinscan.engines import raw

    def refuse(*_args: object, **_kw: object) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(raw.socket, "socket", refuse)
    with pytest.raises(EnvironmentProblem, match="-sT"):
        raw.RawNetwork(T.SYN, 40000)


class CountingProgress:
    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.finished = False

    def start(self, description: str, total: int) -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n

    def finish(self) -> None:
        self.finished = True


@pytest.mark.parametrize("tech", [T.SYN, T.ACK])
def test_large_tcp_scan_runs_on_the_columnar_session_with_batched_io(
    tech: Technique, listeners: dict[str, int]
) -> None:
    from twinscan.engines import raw

    ports = tuple(dict.fromkeys((listeners["tcp_open"], *range(1, raw.FORK_MIN_PROBES + 500))))
    request = ScanRequest(
        targets=("127.0.0.1",),
        ports=PortPlan(tcp=ports, udp=()),
        techniques=(tech,),
        timing=resolve(4),
    )
    progress = CountingProgress()
    result = raw.scan(request, tech, progress=progress)
    frame = result.frame
    assert list(frame["port"]) == sorted(ports)  # every port, sorted
    states = dict(zip(frame["port"].astype(int), frame["state"].astype(str), strict=True))
    want_open, want_closed = TCP_EXPECTED[tech]
    assert states.pop(listeners["tcp_open"]) == want_open.value
    assert set(states.values()) <= {want_closed.value, PortState.OPEN.value}  # other listeners
    assert progress.total == progress.done == len(ports) and progress.finished
    assert frame["rtt_ms"].notna().all()


def test_worker_errors_reach_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    from twinscan.engines import raw

    def refuse(*_args: object, **_kw: object) -> None:
        raise EnvironmentProblem("-sS needs raw sockets; use -sT")

    monkeypatch.setattr(raw, "RawNetwork", refuse)
    request = ScanRequest(
        targets=("127.0.0.1",),
        ports=PortPlan(tcp=(), udp=tuple(range(1, raw.FORK_MIN_PROBES + 1))),
        techniques=(T.UDP,),
        timing=resolve(4),
    )
    assert raw.shard_count(request, T.UDP) == 1  # a large UDP scan runs in a worker
    with pytest.raises(EnvironmentProblem, match="-sT"):
        raw.scan(request, T.UDP)


@BOTH_PATHS
def test_a_stop_left_from_an_earlier_scan_does_not_stop_the_next(
    path: str, listeners: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that arrived in a deferred section of an earlier scan leaves the flag set until
    someone clears it: a later scan in the same process still runs to its end."""
    import signal

    from twinscan.engines import interrupt

    use_path(path, monkeypatch)
    with interrupt.deferred():
        os.kill(os.getpid(), signal.SIGINT)
    assert interrupt.requested()
    try:
        ports = tuple(dict.fromkeys((listeners["tcp_open"], *range(1, 300))))
        got = _scan(Technique.SYN, ports)
        assert got[listeners["tcp_open"]] == PortState.OPEN.value and len(got) == len(ports)
    finally:
        interrupt.clear()
