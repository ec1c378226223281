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
from twinscan.core.errors import UsageError
from twinscan.core.vocab import Proto


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


def test_both_protocols_are_named_in_words_when_nothing_listens() -> None:
    with bound(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1") as port:
        pass
    res = CliRunner().invoke(app, ["who", str(port)])
    assert res.exit_code == 1
    assert res.stdout.strip() == f"nothing listens on port {port} (tcp or udp)"
    assert "/tcp/udp" not in res.stdout


def test_multi_line_command_line_stays_on_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import twinscan.local.owners as owners

    found = [
        owners.Owner(Proto.TCP, "127.0.0.1", 8080, 41, "py\nthon", "root",
                     "python3 -c 'import x\n\tx.serve()'\r\n--flag \x1b[31mred"),
        owners.Owner(Proto.UDP, "::", 8080, 42, "dns", "nobody", "dnsd\n--port 8080"),
    ]  # fmt: skip
    monkeypatch.setattr(owners, "listeners", lambda port, protos: found)
    res = CliRunner().invoke(app, ["who", "8080"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("py thon ") and lines[1].endswith(
        "python3 -c 'import x x.serve()' --flag [31mred"
    )
    assert lines[2].endswith("dnsd --port 8080")
    assert not any(ch in res.stdout for ch in "\t\r\x1b")
    # The columns line up: every row's PID starts where the header's does.
    col = lines[0].index("PID")
    assert lines[1][col:].split()[0] == "41" and lines[2][col:].split()[0] == "42"
