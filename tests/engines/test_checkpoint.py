"""Checkpoint and resume (``--checkpoint FILE``, ``--resume FILE``).

Units: the log's format (plan round trip, torn last line, damage, another version) and the
split of what is left. Loopback: a real scan stopped by SIGKILL and resumed equals the
uninterrupted one. Lab: real scans in the scanner namespace stopped by SIGINT, SIGTERM and
SIGKILL at several points, resumed, and checked against the lab's truth.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twinscan import __version__
from twinscan.core.errors import UsageError
from twinscan.core.schema import ResultColumns, category_code
from twinscan.core.vocab import Engine, Technique
from twinscan.engines import checkpoint as ck
from twinscan.formats.csv import read_csv
from twinscan.request.build import build_request

TWINSCAN = [sys.executable, "-m", "twinscan"]


def _request(targets: tuple[str, ...] = ("127.0.0.1", "127.0.0.2"), ports: str = "1-20"):  # type: ignore[no-untyped-def]
    return build_request(
        targets=list(targets), techniques=(Technique.SYN, Technique.UDP), ports=f"T:{ports},U:53"
    )


def _cols(host: str, ports: list[int], tech: Technique = Technique.SYN) -> ResultColumns:
    closed, reset = category_code("state", "closed"), category_code("reason", "reset")
    return ResultColumns(
        Engine.NATIVE,
        tech,
        tech.proto,
        host=[host] * len(ports),
        port=ports,
        state=[closed] * len(ports),
        reason=[reset] * len(ports),
        rtt_ms=[0.5] * len(ports),
    )


def test_request_round_trips() -> None:
    request = _request()
    assert ck.decode_request(json.loads(json.dumps(ck.encode_request(request)))) == request


def test_log_keeps_verdicts_and_drops_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "scan.ckpt"
    log = ck.CheckpointLog.create(path, _request(), Engine.NATIVE)
    log.append(_cols("127.0.0.2", [3, 1]))
    log.append(_cols("127.0.0.1", [2]))
    log.close()
    with path.open("a") as f:
        f.write('{"t":"syn","hi":[0],"p":[5')  # SIGKILL mid-write
    loaded = ck.load(path)
    merged = ck.sorted_unique(loaded.parts[Technique.SYN])
    assert merged is not None
    assert list(zip(merged.host, merged.port, strict=True)) == [
        ("127.0.0.1", 2),
        ("127.0.0.2", 1),
        ("127.0.0.2", 3),
    ]
    resumed = ck.CheckpointLog.resume(path)  # cuts the torn line before appending
    resumed.append(_cols("127.0.0.1", [4]))
    resumed.close()
    assert sum(len(c) for c in ck.load(path).parts[Technique.SYN]) == 4


def test_remaining_groups_hosts_missing_the_same_ports() -> None:
    request = _request(("127.0.0.1", "127.0.0.2", "127.0.0.3"), "1-4")
    finished = [_cols("127.0.0.1", [1, 2]), _cols("127.0.0.2", [1, 2, 3, 4])]
    parts = list(ck.remaining_parts(request, Technique.SYN, finished))
    got = sorted((p.targets, p.ports.tcp, p.techniques) for p in parts)
    assert got == [
        (("127.0.0.1",), (3, 4), (Technique.SYN,)),
        (("127.0.0.3",), (1, 2, 3, 4), (Technique.SYN,)),
    ]
    assert [p.targets for p in ck.remaining_parts(request, Technique.UDP, finished)] == [
        ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a twinscan checkpoint"),
        ("hello\n", "not a twinscan checkpoint"),
        ("HEADER\nnot json\n{}\n", "damaged checkpoint (line 2"),
        ("HEADER\n{}\n", "damaged checkpoint (line 2"),
    ],
)
def test_damaged_checkpoint_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c"
    log = ck.CheckpointLog.create(tmp_path / "h", _request(), Engine.NATIVE)
    log.close()
    header = (tmp_path / "h").read_text().splitlines()[0]
    path.write_text(text.replace("HEADER", header))
    with pytest.raises(ck.CheckpointError, match=message.replace("(", r"\(")) as info:
        ck.load(path)
    assert "\n" not in str(info.value)


def test_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c"
    ck.CheckpointLog.create(path, _request(), Engine.NATIVE).close()
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["version"] = "0.0.1"
    path.write_text(json.dumps(header) + "\n")
    with pytest.raises(ck.CheckpointError, match=f"twinscan 0.0.1.*this is twinscan {__version__}"):
        ck.load(path)


def test_existing_checkpoint_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "c"
    ck.CheckpointLog.create(path, _request(), Engine.NATIVE).close()
    with pytest.raises(UsageError, match="--resume"):
        ck.CheckpointLog.create(path, _request(), Engine.NATIVE)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("garbage\n")
    proc = subprocess.run(
        [*TWINSCAN, "scan", "--resume", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not a twinscan checkpoint" in proc.stderr
    proc = subprocess.run(
        [*TWINSCAN, "scan", "--resume", str(bad), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "give no targets" in proc.stderr


# --- real processes ------------------------------------------------------------------------------


def _cells(frame) -> list[tuple[str, str, int, str, str]]:  # type: ignore[no-untyped-def]
    cols = [frame[c].astype(str).tolist() for c in ("technique", "host", "state", "reason")]
    return sorted(
        (t, h, int(p), s, r)
        for t, h, p, s, r in zip(cols[0], cols[1], frame["port"].tolist(), cols[2], cols[3], strict=True)
    )  # fmt: skip


def _logged_rows(path: Path) -> int:
    return sum(len(c) for parts in ck.load(path).parts.values() for c in parts)


def _stopped_run(
    prefix: list[str], argv: list[str], sig: int, after_s: float
) -> subprocess.CompletedProcess[str]:
    """Start ``argv`` (through ``prefix``), send ``sig`` after ``after_s``, wait for it."""
    proc = subprocess.Popen(
        [*prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(after_s)
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # pragma: no cover - a hang: clean up, then fail
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_loopback_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    scan = ["scan", "-sT", "-p", "1-6000", "127.0.0.1-2", "--max-rate", "3000"]
    ckpt = tmp_path / "scan.ckpt"
    run = _stopped_run(TWINSCAN, [*scan, "--checkpoint", str(ckpt)], signal.SIGKILL, 1.5)
    assert run.returncode == -signal.SIGKILL
    saved = _logged_rows(ckpt)
    assert 0 < saved < 12000  # stopped mid-scan, with progress saved
    resumed = subprocess.run(
        [*TWINSCAN, "scan", "--resume", str(ckpt), "--csv", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run(
        [*TWINSCAN, *scan[:-2], "--csv", "-"], capture_output=True, text=True, timeout=120
    )
    assert _cells(read_csv(io.StringIO(resumed.stdout))) == _cells(
        read_csv(io.StringIO(whole.stdout))
    )
    assert _logged_rows(ckpt) == 12000  # nothing finished was scanned twice


@dataclasses.dataclass(frozen=True)
class Stop:
    sig: signal.Signals
    after_s: float
    technique: str = "S"


#: each signal at an early and a late point of a SYN scan, and through forked connect workers.
STOPS = [
    Stop(signal.SIGINT, 0.8),
    Stop(signal.SIGTERM, 2.5),
    Stop(signal.SIGKILL, 1.0),
    Stop(signal.SIGKILL, 3.0),
    Stop(signal.SIGTERM, 1.5, "T"),
    Stop(signal.SIGINT, 2.0, "T"),
]


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.parametrize("stop", STOPS, ids=lambda s: f"{s.sig.name}-{s.after_s}s-s{s.technique}")
def test_lab_scan_stopped_and_resumed_matches_truth(lab, tmp_path: Path, stop: Stop) -> None:  # type: ignore[no-untyped-def]
    from twinscan.lab.verify import compare
    from twinscan.request.ports import format_port_list

    targets = [h.address for h in lab.spec.hosts]
    universe = format_port_list(lab.spec.tcp_universe())
    if stop.technique == "T":  # large enough for forked workers; the truth checks the universe
        ports, rate = f"1-1500,{universe}", "3000"
    else:  # the silent host costs a SYN sub-scan ~13 s of timeouts: the connect runs cover it
        targets = [h.address for h in lab.spec.hosts if h.name != "dark"]
        ports, rate = universe, "120"
    n_ports = len(
        set(lab.spec.tcp_universe()) | (set(range(1, 1501)) if stop.technique == "T" else set())
    )
    total = n_ports * len(targets)
    ckpt = tmp_path / "lab.ckpt"
    first = tmp_path / "first.csv"
    argv = [*TWINSCAN, "scan", f"-s{stop.technique}", "-T4", "-p", ports, *targets]
    argv += ["--max-rate", rate, "--checkpoint", str(ckpt), "--csv", str(first)]
    run = _stopped_run(["ip", "netns", "exec", lab.scanner_ns], argv, stop.sig, stop.after_s)
    saved = _logged_rows(ckpt)
    assert saved < total
    if stop.sig is signal.SIGKILL:
        assert run.returncode == -signal.SIGKILL
    else:
        assert run.returncode == 130, run.stderr
        assert os.path.exists(first)
        written = read_csv(first)
        assert len(written) == saved  # every finished port is in the checkpoint
    resumed = lab.run([*TWINSCAN, "scan", "--resume", str(ckpt), "--csv", "-"], timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    frame = read_csv(io.StringIO(resumed.stdout))
    assert len(frame) == total
    assert len(set(zip(frame["host"].astype(str), frame["port"].tolist(), strict=True))) == total
    tech = "syn" if stop.technique == "S" else "connect"
    truth = lab.truth[
        (lab.truth["technique"].astype(str) == tech) & lab.truth["host"].isin(targets)
    ]
    mismatches = compare(lab.spec, truth, frame)
    assert not mismatches, "\n".join(map(str, mismatches))
    assert _logged_rows(ckpt) == total  # the resume rescanned nothing that had finished


def test_checkpoint_with_xml_output_streams_and_resumes(tmp_path: Path) -> None:
    """-oX with a checkpoint streams host by host: the checkpoint is kept, complete, and a
    resume of the complete checkpoint writes the same XML."""
    ckpt = tmp_path / "scan.ckpt"
    xml = tmp_path / "scan.xml"
    proc = subprocess.run(
        [*TWINSCAN, "scan", "-sT", "-p", "1-300", "127.0.0.1", "--checkpoint", str(ckpt)]
        + ["-oX", str(xml)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = ck.load(ckpt)
    assert loaded.complete and _logged_rows(ckpt) == 300
    again = subprocess.run(
        [*TWINSCAN, "scan", "--resume", str(ckpt), "-oX", str(tmp_path / "again.xml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    from twinscan.formats.nmap_xml_read import read_nmap_xml_file

    first = read_nmap_xml_file(xml).frame
    second = read_nmap_xml_file(tmp_path / "again.xml").frame
    assert _cells(first) == _cells(second) and len(first) == 300
    assert _logged_rows(ckpt) == 300  # a complete checkpoint: nothing scanned again


# --- hostile checkpoints (issue #14: every parser, any input) ------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from twinscan.core.errors import TwinscanError  # noqa: E402


def _real_checkpoint(tmp_path: Path) -> bytes:
    path = tmp_path / "real.ckpt"
    path.unlink(missing_ok=True)  # create() never overwrites; hypothesis reuses tmp_path
    log = ck.CheckpointLog.create(path, _request(), Engine.NATIVE)
    log.append(_cols("127.0.0.2", [3, 1]))
    log.append(_cols("127.0.0.1", [2], Technique.SYN))
    log.close()
    return path.read_bytes()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_damaged_checkpoint_loads_or_is_one_project_error(
    tmp_path: Path, data: st.DataObject
) -> None:
    """Truncated, flipped, spliced or random bytes: ``load`` returns or raises a TwinscanError."""
    good = _real_checkpoint(tmp_path)
    how = data.draw(st.sampled_from(["truncate", "flip", "splice", "random", "json"]))
    if how == "truncate":
        blob = good[: data.draw(st.integers(0, len(good)))]
    elif how == "flip":
        at = data.draw(st.integers(0, len(good) - 1))
        blob = good[:at] + bytes([good[at] ^ data.draw(st.integers(1, 255))]) + good[at + 1 :]
    elif how == "splice":
        at = data.draw(st.integers(0, len(good)))
        blob = good[:at] + data.draw(st.binary(max_size=64)) + good[at:]
    elif how == "random":
        blob = data.draw(st.binary(max_size=512))
    else:
        value = data.draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                lambda kids: (
                    st.lists(kids, max_size=3)
                    | st.dictionaries(st.text(max_size=6), kids, max_size=3)
                ),
                max_leaves=8,
            )
        )
        blob = good.split(b"\n", 1)[0] + b"\n" + json.dumps(value).encode() + b"\n{}\n"
    path = tmp_path / "hostile.ckpt"
    path.write_bytes(blob)
    try:
        ck.load(path)
    except TwinscanError as exc:
        assert "\n" not in str(exc)
