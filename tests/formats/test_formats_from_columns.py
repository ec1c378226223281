"""nmap's formats and JSON lines written from ``ResultColumns`` equal, byte for byte, what the
pandas writers they replaced wrote (``frame_oracle``), and a plain native scan's ``-oX``,
``-oN``, ``-oG`` and ``--json`` import neither pandas nor numpy."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import frame_oracle
from twinscan.core.schema import ResultColumns, ScanMeta, ScanResult, category_code, conform
from twinscan.core.vocab import Engine, PortState, Reason, Technique
from twinscan.formats import nmap_text
from twinscan.formats.jsonl import write_jsonl
from twinscan.formats.nmap_xml_write import nmap_xml_text

META = ScanMeta(
    Engine.NATIVE, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, 0, 0, 2, tzinfo=dt.UTC),
    "twinscan scan -sS -p- 127.0.0.1", "twinscan test", (Technique.SYN,),
)  # fmt: skip
HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.10", "198.18.0.10", "::1"]
#: TCP techniques whose names sort before and after "udp" (sort_frame orders by technique)
TCP = [Technique.SYN, Technique.CONNECT, Technique.WINDOW, Technique.XMAS]
_rtt = (
    st.none()
    | st.integers(0, 5_000_000).map(lambda k: round(k / 1000, 3))
    | st.floats(0, 1e6, allow_nan=False, width=32)
)
_text = st.none() | st.text(max_size=6)


@st.composite
def run(draw: st.DrawFn, tech: Technique, owners: bool) -> ResultColumns:
    """Rows of one technique, mostly one state (so that some hosts fold it), hosts in any order."""
    n = draw(st.integers(0, 70))
    # (one host in a run, as in a scan of one target, takes the writers' one-host path)
    hosts = draw(st.lists(st.sampled_from(HOSTS), min_size=1, max_size=3, unique=True))
    main = draw(st.sampled_from(list(PortState)))
    states = draw(
        st.lists(st.sampled_from(list(PortState)) | st.just(main), min_size=n, max_size=n)
    )
    rows = {
        "host": draw(st.lists(st.sampled_from(hosts), min_size=n, max_size=n)),
        "port": draw(st.lists(st.integers(0, 65535) | st.integers(20, 30), min_size=n, max_size=n)),
        "state": [category_code("state", s.value) for s in states],
        "reason": [
            category_code("reason", r.value)
            for r in draw(st.lists(st.sampled_from(list(Reason)[:6]), min_size=n, max_size=n))
        ],
    }
    optional = {
        "reason_ttl": st.none() | st.integers(0, 255),
        "reason_ip": st.none() | st.sampled_from(["198.18.0.1", "::1"]),
        "rtt_ms": _rtt,
    }
    if owners:
        optional |= {"pid": st.none() | st.integers(1, 1 << 22), "process": _text, "user": _text,
                     "cmdline": _text}  # fmt: skip
    for name, values in optional.items():
        rows[name] = draw(st.none() | st.lists(values, min_size=n, max_size=n))
    if owners and rows["pid"] is None:
        rows["pid"] = [None] * n  # (an owners frame has every owner column)
    if draw(st.booleans()):  # each host's rows together, as an engine's block gives them
        order = sorted(range(n), key=rows["host"].__getitem__)
        rows = {k: None if v is None else [v[i] for i in order] for k, v in rows.items()}
    return ResultColumns(Engine.NATIVE, tech, tech.proto, **rows)  # type: ignore[arg-type]


@st.composite
def results(
    draw: st.DrawFn, one_per_proto: bool, owners: bool = False
) -> tuple[ScanResult, ScanResult]:
    """The same verdicts as a result that holds its columns (one run) or its frame (several),
    and as a result built from the frame: (new writers' input, oracle's input)."""
    techs = [draw(st.sampled_from(TCP))]
    if draw(st.booleans()):
        techs.append(Technique.UDP)
    if not one_per_proto and draw(st.booleans()):
        techs.append(draw(st.sampled_from(TCP)))
    techs = draw(st.permutations(techs))
    runs = [draw(run(t, owners)) for t in techs]
    frame = conform(pd.concat([r.to_frame() for r in runs], ignore_index=True))
    lazy = (
        ScanResult(columns=runs[0], meta=META)
        if len(runs) == 1
        else ScanResult(frame=frame, meta=META)
    )
    return lazy, ScanResult(frame=frame, meta=META)


@contextlib.contextmanager
def host_rows_paths(copy: bool, spans: bool) -> Iterator[None]:
    """``copy`` False: a one-host run's rows are never taken out of a copy, as when a folded
    state leaves more than ``host_rows._FEW`` other rows. ``spans`` True: every run of several
    hosts is taken a run of one host at a time, however short (``host_rows._MIN_SPAN``)."""
    from twinscan.formats import host_rows

    saved = host_rows._FEW, host_rows._MIN_SPAN
    host_rows._FEW = saved[0] if copy else -1
    host_rows._MIN_SPAN = 1 if spans else saved[1]
    try:
        yield
    finally:
        host_rows._FEW, host_rows._MIN_SPAN = saved


@settings(max_examples=80, deadline=None)
@given(results(one_per_proto=True), st.booleans(), st.booleans())
def test_xml_equals_the_pandas_writer(
    pair: tuple[ScanResult, ScanResult], copy: bool, spans: bool
) -> None:
    lazy, built = pair
    with host_rows_paths(copy, spans):
        assert nmap_xml_text(lazy) == frame_oracle.xml_text(built)


@settings(max_examples=80, deadline=None)
@given(results(one_per_proto=False), st.sampled_from(["normal", "grepable"]), st.booleans())
def test_normal_and_grepable_equal_the_pandas_writer(
    pair: tuple[ScanResult, ScanResult], kind: str, spans: bool
) -> None:
    lazy, built = pair
    with host_rows_paths(True, spans):
        assert nmap_text.nmap_text(lazy, kind) == frame_oracle.nmap_text(built, kind)


@settings(max_examples=60, deadline=None)
@given(st.booleans().flatmap(lambda owners: results(one_per_proto=False, owners=owners)))
def test_jsonl_equals_the_pandas_writer(pair: tuple[ScanResult, ScanResult]) -> None:
    lazy, built = pair
    out = io.StringIO()
    write_jsonl(lazy, out)
    assert out.getvalue() == frame_oracle.jsonl_text(built.frame)


def test_nmap_formats_and_json_of_a_columns_result_import_neither_pandas_nor_numpy(
    tmp_path: Path,
) -> None:
    """A plain native scan's result holds columns: writing it in every nmap format and as JSON
    lines needs no frame (a -p- scan's -oX took 0.9 s through pandas, its CSV 0.06 s)."""
    code = (
        "import sys, datetime as dt\n"
        "from twinscan.core.schema import ResultColumns, ScanMeta, ScanResult\n"
        "from twinscan.core.vocab import Engine, Proto, Technique\n"
        "from twinscan.engines.job import Outputs, write_outputs\n"
        "from pathlib import Path\n"
        "n = 3000\n"
        "c = ResultColumns(Engine.NATIVE, Technique.SYN, Proto.TCP, ['127.0.0.1'] * n,\n"
        "    list(range(1, n + 1)), [1] * (n - 1) + [0], [1] * (n - 1) + [0], [64] * n,\n"
        "    None, [0.125] * n)\n"
        "now = dt.datetime.now(dt.UTC)\n"
        "r = ScanResult(columns=c, meta=ScanMeta(Engine.NATIVE, now, now, '', 'twinscan 1'))\n"
        f"d = Path({str(tmp_path)!r})\n"
        "write_outputs(r, Outputs(json=d / 'o.json', xml=d / 'o.xml', normal=d / 'o.nmap',\n"
        "    grepable=d / 'o.gnmap'))\n"
        "print('pandas' in sys.modules, 'numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
    assert len((tmp_path / "o.json").read_text().splitlines()) == 3000
    assert 'count="2999"' in (tmp_path / "o.xml").read_text()
    assert "Not shown: 2999 " in (tmp_path / "o.nmap").read_text()
    assert "Ignored State: " in (tmp_path / "o.gnmap").read_text()
