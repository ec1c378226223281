"""The native raw engine over IPv6 on ::1 (issue #17), against listeners this test starts (root)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from loopback_listeners import BOTH_PATHS, TCP_EXPECTED, loopback_listeners, use_path
from twinscan.core.errors import UsageError
from twinscan.core.timing import resolve
from twinscan.core.vocab import PortState, Technique
from twinscan.request.model import ScanRequest
from twinscan.request.ports import PortPlan

T = Technique
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")


@pytest.fixture(scope="module")
def listeners() -> Iterator[dict[str, int]]:
    """An open TCP port, a closed TCP port, an answering UDP port and a silent UDP port."""
    with loopback_listeners(socket.AF_INET6, "::1") as ports:
        yield ports


def _scan(
    tech: Technique, tcp: tuple[int, ...], udp: tuple[int, ...] = (), target: str = "::1"
) -> dict[int, tuple[str, str, object]]:
    from twinscan.engines.raw import scan

    request = ScanRequest(
        targets=(target,),
        ports=PortPlan(tcp=tcp, udp=udp),
        techniques=(tech,),
        timing=resolve(4),
    )
    result = scan(request, tech)
    assert not result.meta.incomplete
    frame = result.frame
    assert set(frame["host"].astype(str)) == {target}
    return {
        int(p): (str(s), str(r), t)
        for p, s, r, t in zip(
            frame["port"], frame["state"], frame["reason"], frame["reason_ttl"], strict=True
        )
    }


@BOTH_PATHS
@pytest.mark.parametrize("tech", list(TCP_EXPECTED))
def test_tcp_techniques_on_ipv6_loopback(
    tech: Technique, path: str, listeners: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_path(path, monkeypatch)
    ports = (listeners["tcp_open"], listeners["tcp_closed"], *range(1, 200))
    got = _scan(tech, tuple(dict.fromkeys(ports)))
    want_open, want_closed = TCP_EXPECTED[tech]
    assert got[listeners["tcp_open"]][0] == want_open.value
    assert got[listeners["tcp_closed"]][0] == want_closed.value
    assert got[listeners["tcp_closed"]][1] == "reset"
    assert int(str(got[listeners["tcp_closed"]][2])) == 64  # the hop limit, from recvmsg
    assert len(got) == len(set(ports))


def test_udp_on_ipv6_loopback(listeners: dict[str, int]) -> None:
    closed = 19
    got = _scan(T.UDP, (), (listeners["udp_open"], listeners["udp_silent"], closed))
    assert {p: s for p, (s, _, _) in got.items()} == {
        listeners["udp_open"]: PortState.OPEN.value,
        listeners["udp_silent"]: PortState.OPEN_FILTERED.value,
        closed: PortState.CLOSED.value,  # ICMPv6 port unreachable from the target itself
    }
    assert got[closed][1] == "port-unreach"


def test_full_range_on_ipv6_loopback_runs_in_a_worker(listeners: dict[str, int]) -> None:
    got = _scan(T.SYN, tuple(range(1, 65536)))
    assert len(got) == 65535
    assert got[listeners["tcp_open"]][0] == "open"
    assert sum(s == "closed" for s, _, _ in got.values()) >= 65535 - 64


def test_one_family_per_raw_scan() -> None:
    from twinscan.engines.raw import scan

    request = ScanRequest(
        targets=("127.0.0.1", "::1"),
        ports=PortPlan(tcp=(1,), udp=()),
        techniques=(T.SYN,),
        timing=resolve(4),
    )
    with pytest.raises(UsageError, match="IPv4 or IPv6"):
        scan(request, T.SYN)
