"""The demo's audit step: its command line (pure) and its place in the demo run (fake lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinscan.audit.policy import load_policy
from twinscan.core.errors import ScanFailed
from twinscan.core.vocab import Technique
from twinscan.lab import demo, load_spec


def test_audit_job_scans_the_policy_hosts_into_out(tmp_path: Path) -> None:
    spec = load_spec()
    job = demo.audit_job(spec, tmp_path)
    assert job is not None
    assert job.argv[1:4] == ("-m", "twinscan", "audit")
    assert job.argv[4:6] == (spec.host("plain").address, spec.host("acl").address)
    policy = job.argv[job.argv.index("--policy") + 1]
    assert Path(policy).is_file() and load_policy(policy).rules
    assert job.csv == tmp_path / "audit.csv" and job.html == tmp_path / "audit.html"
    assert job.argv[job.argv.index("--csv") + 1] == str(job.csv)


def test_a_spec_without_the_policy_hosts_has_no_audit(tmp_path: Path) -> None:
    from twinscan.lab.spec import parse_spec

    spec = parse_spec(
        '[lab]\nsubnet = "198.18.0.0/24"\nscanner = "198.18.0.1"\n'
        '[scan]\ntcp_ports = "1-10"\nudp_ports = "53"\n'
        '[hosts.one]\naddress = "198.18.0.10"\ntcp = [22]\n'
    )
    assert demo.audit_job(spec, tmp_path) is None


@pytest.mark.parametrize("code", [0, 1, 2])
def test_demo_runs_the_audit_inside_the_lab(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: int
) -> None:
    from twinscan.lab import netns

    events: list[str] = []
    monkeypatch.setattr(netns, "up", lambda spec, prefix=None: events.append("up") or {})
    monkeypatch.setattr(netns, "down", lambda prefix=None: events.append("down") or [])
    monkeypatch.setattr(demo, "native_available", lambda t: True)

    def execute(argv: list[str], prefix: str, timeout: float) -> int:
        events.append(argv[3])
        return code if argv[3] == "audit" else 0

    run = lambda: demo.run_demo(  # noqa: E731
        tmp_path, techniques=[Technique.SYN], say=lambda _: None, execute=execute, audit=True
    )
    if code == 2:
        with pytest.raises(ScanFailed, match="audit run failed"):
            run()
    else:
        jobs = run()
        assert [j.name for j in jobs] == ["all techniques", "IPv6", "audit"]
    assert events == ["up", "compare", "compare", "audit", "down"]  # the IPv6 step (#17)
