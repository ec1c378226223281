"""``twinscan demo``: its compare command lines (pure) and its always-tear-down contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from killed_run import run_killed
from twinscan.core.errors import ScanFailed
from twinscan.core.vocab import Technique
from twinscan.lab import demo, load_spec
from twinscan.request.ports import parse_port_list


def _option(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_jobs_cover_the_spec_universe(tmp_path: Path) -> None:
    spec = load_spec()
    jobs = demo.demo_jobs(spec, tmp_path, [*demo.MAIN_TECHNIQUES, Technique.FTP_BOUNCE])
    assert [j.name for j in jobs] == ["all techniques", "FTP bounce", "IPv6"]
    main, bounce, six = jobs
    assert "-6" in six.argv and spec.host("plain").address6 in six.argv  # the dual-stack lab
    assert _option(six.argv, "-s") == "SU"
    assert main.argv[1:4] == ("-m", "twinscan", "compare")
    assert _option(main.argv, "-s") == "TSFXNAWMU"
    ports = _option(main.argv, "-p")
    tcp, udp = ports.split(",U:")
    assert parse_port_list(tcp.removeprefix("T:")) == list(spec.tcp_universe())
    assert parse_port_list(udp) == list(spec.udp_universe())
    for h in spec.hosts:
        assert h.address in main.argv
    for job in jobs:
        assert "--truth" in job.argv
        assert _option(job.argv, "--csv") == str(job.csv)
        assert _option(job.argv, "--html") == str(job.html)
        assert job.csv.parent == tmp_path
    relay = spec.host(spec.scan.bounce_relay or "")
    assert _option(bounce.argv, "-b") == f"{relay.address}:{relay.ftp}"
    assert _option(bounce.argv, "-s") == "b"
    assert parse_port_list(_option(bounce.argv, "-p")[2:]) == list(spec.scan.bounce_ports)


def test_tcp_only_selection_scans_no_udp(tmp_path: Path) -> None:
    job, six = demo.demo_jobs(load_spec(), tmp_path, [Technique.SYN])
    assert _option(six.argv, "-p").startswith("T:") and "U:" not in _option(six.argv, "-p")
    assert "U:" not in _option(job.argv, "-p")


class FakeLab:
    def __init__(self) -> None:
        self.events: list[str] = []

    def up(self, spec: object, prefix: str | None = None) -> dict[str, object]:
        self.events.append(f"up {prefix}")
        return {}

    def down(self, prefix: str | None = None) -> list[str]:
        self.events.append(f"down {prefix}")
        return []


@pytest.fixture
def fake_lab(monkeypatch: pytest.MonkeyPatch) -> FakeLab:
    from twinscan.lab import netns

    lab = FakeLab()
    monkeypatch.setattr(netns, "up", lab.up)
    monkeypatch.setattr(netns, "down", lab.down)
    monkeypatch.setattr(demo, "native_available", lambda t: t is not Technique.FTP_BOUNCE)
    return lab


def test_demo_runs_inside_the_lab_and_tears_it_down(fake_lab: FakeLab, tmp_path: Path) -> None:
    said: list[str] = []

    def execute(argv: list[str], prefix: str, timeout: float) -> int:
        fake_lab.events.append(f"exec {prefix} {argv[3]}")
        return 1  # some verdicts differ: still a successful demo

    jobs = demo.run_demo(tmp_path / "out", say=said.append, execute=execute)
    compare = "exec tsdemo compare"
    assert fake_lab.events == ["up tsdemo", compare, compare, "down tsdemo"]
    assert [j.name for j in jobs] == ["all techniques", "IPv6"]
    assert any("skipping ftp-bounce" in s for s in said)
    assert any(str(tmp_path / "out" / "report.html") in s for s in said)


@pytest.mark.parametrize("failure", [ScanFailed("boom"), KeyboardInterrupt()])
def test_demo_tears_the_lab_down_on_failure(
    fake_lab: FakeLab, tmp_path: Path, failure: BaseException
) -> None:
    def execute(argv: list[str], prefix: str, timeout: float) -> int:
        raise failure

    with pytest.raises(type(failure)):
        demo.run_demo(tmp_path, say=lambda s: None, execute=execute)
    assert fake_lab.events == ["up tsdemo", "down tsdemo"]


def test_a_crashed_comparison_fails_the_demo(fake_lab: FakeLab, tmp_path: Path) -> None:
    with pytest.raises(ScanFailed, match="exit 4"):
        demo.run_demo(tmp_path, say=lambda s: None, execute=lambda a, p, t: 4)
    assert fake_lab.events[-1] == "down tsdemo"


#: A demo whose first comparison is killed (SIGTERM to the process): the lab is faked, and
#: its up/down events go to the file named by argv[1].
_KILLED_DEMO = """
import os, signal, sys
from pathlib import Path
from twinscan.lab import demo, netns
events = Path(sys.argv[1])
netns.up = lambda spec, prefix: events.write_text("up\\n")
netns.down = lambda prefix: events.write_text(events.read_text() + "down\\n")
demo.native_available = lambda t: True
def execute(argv, prefix, timeout):
    os.kill(os.getpid(), signal.SIGTERM)
    return 0
demo.run_demo(Path(sys.argv[2]), say=lambda s: None, execute=execute)
"""


def test_a_killed_demo_takes_its_lab_down(tmp_path: Path) -> None:
    """``kill`` (SIGTERM) stops the demo as Ctrl-C does: its namespaces do not outlive it."""
    proc, events = run_killed(_KILLED_DEMO, tmp_path)
    assert proc.returncode != 0
    assert events == ["up", "down"], proc.stderr
