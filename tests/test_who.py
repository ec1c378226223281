"""``twinscan who PORT[/PROTO]`` against real listeners this test starts."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import psutil
import pytest
from typer.testing import CliRunner

from twinscan.cli import app
from twinscan.cli.who import parse_port_proto
from twinscan.errors import UsageError
from twinscan.vocab import Proto


@contextlib.contextmanager
def bound(family: int, kind: int, host: str) -> Iterator[int]:
    sock = socket.socket(family, kind)
    try:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            pytest.skip(f"cannot bind {host}: {exc}")
        if kind == socket.SOCK_STREAM:
            sock.listen()
        yield sock.getsockname()[1]
    finally:
        sock.close()


CASES = [
    (socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", "tcp", "127.0.0.1:{port} (LISTEN)"),
    (socket.AF_INET6, socket.SOCK_STREAM, "::1", "tcp", "[::1]:{port} (LISTEN)"),
    (socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1", "udp", "127.0.0.1:{port}"),
    (socket.AF_INET6, socket.SOCK_DGRAM, "::1", "udp", "[::1]:{port}"),
]


@pytest.mark.parametrize(("family", "kind", "host", "proto", "endpoint"), CASES)
def test_who_names_this_process(
    family: int, kind: int, host: str, proto: str, endpoint: str
) -> None:
    with bound(family, kind, host) as port:
        res = CliRunner().invoke(app, ["who", f"{port}/{proto}"])
        bare = CliRunner().invoke(app, ["who", str(port)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["COMMAND", "PID", "USER", "PROTO", "ADDRESS", "CMDLINE"]
    assert len(lines) == 2
    fields = lines[1].split()
    assert fields[1] == str(os.getpid())
    assert fields[3] == proto.upper()
    assert endpoint.format(port=port) in lines[1]
    me = psutil.Process()
    assert fields[0] == me.name() and fields[2] == me.username()
    assert lines[1].endswith(" ".join(me.cmdline()))
    assert bare.exit_code == 0 and str(os.getpid()) in bare.stdout


def test_who_says_plainly_when_nothing_listens() -> None:
    with bound(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1") as port:
        pass  # released: nobody owns it now
    res = CliRunner().invoke(app, ["who", f"{port}/tcp"])
    assert res.exit_code == 1
    assert res.stdout.strip() == f"nothing listens on port {port}/tcp"


@pytest.mark.parametrize("bad", ["http", "70000", "80/sctp", "-1", ""])
def test_bad_port_is_a_usage_error_not_a_traceback(bad: str) -> None:
    res = CliRunner().invoke(app, ["who", bad])
    assert res.exit_code == 2
    assert "Traceback" not in res.output


def test_parse_port_proto() -> None:
    assert parse_port_proto("8080") == (8080, (Proto.TCP, Proto.UDP))
    assert parse_port_proto("53/UDP") == (53, (Proto.UDP,))
    with pytest.raises(UsageError):
        parse_port_proto("53/icmp")
