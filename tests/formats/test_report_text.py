"""The text report: owners of open ports (``--owners``), singular/plural wording (issue #10),
and the same text as the previous implementation (kept here as an oracle) for any result."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import verdicts as any_verdicts
from twinscan.core.schema import (
    PortVerdict,
    ResultColumns,
    ScanMeta,
    ScanResult,
    category_code,
    category_values,
    host_sort_key,
    to_frame,
)
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.core.wording import count, noun
from twinscan.formats.text_report import render_text, service_names
from twinscan.local.owners import Socket, add_owners

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _result(states: dict[int, PortState], owners: list[Socket] | None = None) -> ScanResult:
    frame = to_frame(
        PortVerdict(Engine.NATIVE, Technique.CONNECT, "127.0.0.1", Proto.TCP, p, s,
                    Reason.SYN_ACK if s is PortState.OPEN else Reason.CONN_REFUSED)
        for p, s in states.items()
    )  # fmt: skip
    if owners is not None:
        frame = add_owners(frame, sockets=owners)
    return ScanResult(frame, ScanMeta(Engine.NATIVE, T0, T0, "x", "x", (Technique.CONNECT,)))


def test_owners_show_for_open_ports() -> None:
    import os

    import psutil

    me = psutil.Process()
    result = _result(
        {22: PortState.OPEN, 23: PortState.CLOSED, 8080: PortState.OPEN},
        owners=[Socket(Proto.TCP, "127.0.0.1", 8080, os.getpid())],
    )
    lines = render_text(result).splitlines()
    head = next(line for line in lines if line.startswith("PORT"))
    assert head.split() == ["PORT", "STATE", "SERVICE", "REASON", "PID/PROCESS"]
    row = next(line for line in lines if line.startswith("8080/tcp"))
    assert row.endswith(f"{os.getpid()}/{me.name()}")
    row22 = next(line for line in lines if line.startswith("22/tcp"))
    assert row22.split() == ["22/tcp", "open", "ssh", "syn-ack"]  # nobody we know of


def test_no_owner_column_without_owners() -> None:
    text = render_text(_result({22: PortState.OPEN}))
    assert "PID" not in text


def test_singular_and_plural() -> None:
    one = render_text(_result({22: PortState.OPEN, 23: PortState.CLOSED}))
    assert "Not shown: 1 closed tcp port (1 conn-refused)" in one
    assert "1 IP address, 2 port verdicts in" in one
    single = render_text(_result({22: PortState.OPEN}))
    assert "1 IP address, 1 port verdict in" in single
    many = render_text(_result(dict.fromkeys(range(1, 4), PortState.CLOSED)))
    assert "Not shown: 3 closed tcp ports" in many


# --- render_text against the previous implementation (an oracle) --------------------------------


class _RefRow(NamedTuple):
    port: int
    proto: str
    state: str
    reason: str
    ttl: str
    owner: str = ""


_RefCells = tuple[int, str, str, str, str, str]
_REF_PROTO: Final = 1
_REF_STATE: Final = 2
_REF_REASON: Final = 3


def _ref_rows(runs: list[ResultColumns]) -> dict[tuple[str, str], list[_RefCells]]:
    """Every verdict as ``Row`` fields, grouped by (host, technique), in row order."""
    states, reasons = category_values("state"), category_values("reason")
    groups: dict[tuple[str, str], list[_RefCells]] = {}
    for cols in runs:
        n = len(cols)
        technique, proto = cols.technique.value, cols.proto.value
        ttls = ["" if t is None else str(t) for t in cols.reason_ttl or [None] * n]
        owners = _ref_owners(cols) if cols.has_owners else [""] * n
        names = [states[s] for s in cols.state]
        whys = [reasons[r] for r in cols.reason]
        for host, port, state, reason, ttl, owner in zip(
            cols.host, cols.port, names, whys, ttls, owners, strict=True
        ):
            row = (int(port), proto, state, reason, ttl, owner)
            groups.setdefault((host, technique), []).append(row)
    return groups


def _ref_owners(cols: ResultColumns) -> list[str]:
    """``pid/process`` per row (``?`` for what is not visible), "" where no owner is known."""
    n = len(cols)
    out = []
    for pid, process in zip(cols.pid or [None] * n, cols.process or [None] * n, strict=True):
        if pid is not None or process:
            out.append(f"{'?' if pid is None else pid}/{process or '?'}")
        else:
            out.append("")
    return out


def _reference_render_text(result: ScanResult, *, show_closed: bool = False) -> str:
    """The previous ``render_text`` (one 6-tuple per verdict), kept verbatim as an oracle: the
    current one builds rows only for the ports it shows and must give byte-identical text."""
    runs = result.column_runs()
    groups = _ref_rows(runs)
    with_owner = any(c.has_owners for c in runs)
    names = service_names()
    lines: list[str] = []
    for host, technique in sorted(groups, key=lambda g: (host_sort_key(g[0]), g[1])):
        lines.append(f"twinscan scan report for {host} ({technique} scan)")
        lines.extend(_ref_host_lines(groups[(host, technique)], names, show_closed, with_owner))
        lines.append("")
    hosts = len({host for host, _ in groups})
    verdicts = sum(len(rows) for rows in groups.values())
    elapsed = result.meta.elapsed_s
    status = " (INCOMPLETE: interrupted)" if result.meta.incomplete else ""
    lines.append(
        f"twinscan done: {count(hosts, 'IP address', 'IP addresses')}, "
        f"{count(verdicts, 'port verdict')} in {elapsed:.2f} seconds "
        f"({result.meta.engine} engine){status}"
    )
    return "\n".join(lines)


def _ref_host_lines(
    rows: list[_RefCells], names: Mapping[tuple[int, str], str], show_closed: bool, with_owner: bool
) -> list[str]:
    hidden: set[str] = set() if show_closed else {PortState.CLOSED.value}
    counts = Counter(row[_REF_STATE] for row in rows)
    # Like nmap, fold the most common state when it has more than 25 ports.
    if not show_closed and counts:
        top, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if n > 25:  # FOLD_THRESHOLD
            hidden.add(top)
    out: list[str] = []
    for folded in sorted(hidden):
        part = [row for row in rows if row[_REF_STATE] == folded]
        if part:
            reasons = ", ".join(
                f"{n} {r}" for r, n in Counter(r[_REF_REASON] for r in part).most_common()
            )
            protos = "/".join(sorted({row[_REF_PROTO] for row in part}))
            out.append(
                f"Not shown: {len(part)} {folded} {protos} {noun(len(part), 'port')} ({reasons})"
            )
    shown = sorted(
        (_RefRow._make(r) for r in rows if r[_REF_STATE] not in hidden),
        key=lambda r: (r.proto, r.port),
    )
    if not shown:
        out.append("All scanned ports are in the states above.")
        return out
    table = [("PORT", "STATE", "SERVICE", "REASON", "PID/PROCESS")]
    for row in shown:
        ttl = f" ttl {row.ttl}" if row.ttl else ""
        service = names.get((row.port, row.proto), "unknown")
        table.append((f"{row.port}/{row.proto}", row.state, service, row.reason + ttl, row.owner))
    ncols = 5 if with_owner else 4
    widths = [max(len(r[i]) for r in table) for i in range(ncols - 1)]
    for r in table:
        head = " ".join(f"{r[i]:<{widths[i]}}" for i in range(ncols - 1))
        out.append(f"{head} {r[ncols - 1]}".rstrip() if with_owner else f"{head} {r[3]}")
    return out


class _RunsResult(ScanResult):
    """A result made of several ``ResultColumns`` runs as given (``column_runs``), e.g. one
    host in runs of different techniques or engines, hosts interleaved within a run."""

    __slots__ = ("_runs",)

    def __init__(self, runs: list[ResultColumns], meta: ScanMeta) -> None:
        super().__init__(meta=meta, columns=runs[0] if runs else _columns([]))
        self._runs = runs

    def column_runs(self) -> list[ResultColumns]:
        return list(self._runs)


_STATE_CODES = {s.value: category_code("state", s.value) for s in PortState}
_REASON_COUNT = len(category_values("reason"))
#: ``::1`` and ``0::1`` share a sort key: their order is the order they first appear in.
_HOSTS = ["127.0.0.1", "127.0.0.10", "127.0.0.2", "::1", "0::1", "example.test"]
_TECHNIQUES = [Technique.SYN, Technique.CONNECT, Technique.UDP, Technique.FIN]

#: (host, port, state code, reason code); a few reasons often, so reason counts tie.
_Verdict = tuple[str, int, int, int]
_reason_codes = st.integers(0, 3) | st.integers(0, _REASON_COUNT - 1)
_verdict = st.tuples(
    st.sampled_from(_HOSTS), st.integers(1, 60), st.sampled_from(list(_STATE_CODES.values())),
    _reason_codes,
)  # fmt: skip


def _columns(
    verdicts: list[_Verdict],
    technique: Technique = Technique.SYN,
    engine: Engine = Engine.NATIVE,
    **optional: list[Any] | None,
) -> ResultColumns:
    return ResultColumns(
        engine,
        technique,
        technique.proto,
        host=[v[0] for v in verdicts],
        port=[v[1] for v in verdicts],
        state=[v[2] for v in verdicts],
        reason=[v[3] for v in verdicts],
        **optional,
    )


@st.composite
def _run(draw: st.DrawFn) -> ResultColumns:
    verdicts = draw(st.lists(_verdict, max_size=20))
    # blocks of one state for one host, big enough (or nearly) to be folded
    for _ in range(draw(st.integers(0, 2))):
        host = draw(st.sampled_from(_HOSTS))
        state = draw(st.sampled_from(list(_STATE_CODES.values())))
        n = draw(st.integers(20, 40))
        ports = draw(st.lists(st.integers(1, 1024), min_size=n, max_size=n))
        whys = draw(st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n))
        at = draw(st.integers(0, len(verdicts)))
        verdicts[at:at] = [(host, p, state, r) for p, r in zip(ports, whys, strict=True)]
    n = len(verdicts)

    def column(values: st.SearchStrategy[Any]) -> list[Any] | None:
        return draw(st.none() | st.lists(st.none() | values, min_size=n, max_size=n))

    technique = draw(st.sampled_from(_TECHNIQUES))
    return _columns(
        verdicts,
        technique,
        draw(st.sampled_from(list(Engine))),
        reason_ttl=column(st.integers(0, 255)),
        pid=column(st.integers(1, 99999)),
        process=column(st.sampled_from(["", "sshd", "nginx"])),
    )


def _meta(incomplete: bool = False, elapsed_s: float = 1.25) -> ScanMeta:
    end = T0 + dt.timedelta(seconds=elapsed_s)
    return ScanMeta(Engine.NATIVE, T0, end, "x", "x", (Technique.SYN,), incomplete)


def _assert_like_reference(result: ScanResult) -> None:
    for show_closed in (False, True):
        expected = _reference_render_text(result, show_closed=show_closed)
        assert render_text(result, show_closed=show_closed) == expected


@settings(max_examples=300, deadline=None)
@given(
    runs=st.lists(_run(), max_size=4),
    incomplete=st.booleans(),
    elapsed_s=st.floats(0, 1000, allow_nan=False),
)
def test_render_text_matches_reference(
    runs: list[ResultColumns], incomplete: bool, elapsed_s: float
) -> None:
    _assert_like_reference(_RunsResult(runs, _meta(incomplete, elapsed_s)))


@settings(max_examples=40, deadline=None)
@given(verdicts=st.lists(any_verdicts, max_size=60))
def test_render_text_of_frames_matches_reference(verdicts: list[PortVerdict]) -> None:
    """Results held as a frame, read back as runs of (engine, technique, proto); a protocol
    that does not match its technique gives a (host, technique) of both protocols."""
    _assert_like_reference(ScanResult(to_frame(verdicts), _meta()))


def _blocks(*blocks: tuple[str, str, int], host: str = "127.0.0.1") -> list[_Verdict]:
    """(state, reason, ports) blocks, one after the other, ports numbered from 1."""
    cells = [(_STATE_CODES[s], category_code("reason", r)) for s, r, n in blocks for _ in range(n)]
    return [(host, port, state, reason) for port, (state, reason) in enumerate(cells, 1)]


def test_render_text_folds_the_top_state_and_breaks_ties_by_name() -> None:
    # 30 filtered and 30 open|filtered: the tie folds open|filtered (the greater name)
    verdicts = _blocks(
        ("filtered", "no-response", 30),
        ("open|filtered", "no-response", 30),
        ("open", "syn-ack", 2),
        ("closed", "reset", 3),
    )
    result = ScanResult(meta=_meta(), columns=_columns(verdicts, reason_ttl=[64] * 65))
    text = render_text(result)
    assert "Not shown: 3 closed tcp ports (3 reset)" in text
    assert "Not shown: 30 open|filtered tcp ports (30 no-response)" in text
    assert "31/tcp filtered" not in text and text.count(" filtered ") == 30
    _assert_like_reference(result)
    # closed ties with open: open is folded too
    tie = _blocks(("closed", "reset", 26), ("open", "syn-ack", 26))
    text = render_text(ScanResult(meta=_meta(), columns=_columns(tie)))
    assert "Not shown: 26 open tcp ports (26 syn-ack)" in text
    assert "All scanned ports are in the states above." in text
    _assert_like_reference(ScanResult(meta=_meta(), columns=_columns(tie)))
    # 25 is not more than FOLD_THRESHOLD: nothing but closed is folded
    edge = _blocks(("filtered", "no-response", 25), ("closed", "reset", 1))
    text = render_text(ScanResult(meta=_meta(), columns=_columns(edge)))
    assert "Not shown: 1 closed tcp port (1 reset)" in text and text.count(" filtered ") == 25


def test_render_text_reasons_of_a_folded_state_in_first_seen_order_on_ties() -> None:
    verdicts = _blocks(
        ("filtered", "admin-prohibited", 1),
        ("filtered", "host-unreach", 14),
        ("filtered", "admin-prohibited", 13),
        ("filtered", "no-response", 15),
        ("open", "syn-ack", 1),
    )
    # the same host's filtered ports continue in a second run (another engine)
    more = _blocks(("filtered", "net-unreach", 14), ("filtered", "host-unreach", 1))
    runs = [_columns(verdicts), _columns(more, engine=Engine.NMAP)]
    result = _RunsResult(runs, _meta())
    text = render_text(result)
    assert (
        "Not shown: 58 filtered tcp ports "
        "(15 host-unreach, 15 no-response, 14 admin-prohibited, 14 net-unreach)"
    ) in text
    _assert_like_reference(result)


def test_render_text_full_port_range() -> None:
    """A ``-p-`` scan: one open port and 65534 closed ones folded into one line."""
    n = 65535
    states = [_STATE_CODES["open" if p == 22 else "closed"] for p in range(1, n + 1)]
    reset, syn_ack = category_code("reason", "reset"), category_code("reason", "syn-ack")
    cols = ResultColumns(
        Engine.NATIVE, Technique.SYN, Proto.TCP, ["127.0.0.1"] * n, list(range(1, n + 1)),
        states, [syn_ack if s == _STATE_CODES["open"] else reset for s in states], [64] * n,
    )  # fmt: skip
    result = ScanResult(meta=_meta(), columns=cols)
    service = service_names().get((22, "tcp"), "unknown")
    lines = render_text(result).splitlines()
    assert lines[:2] == [
        "twinscan scan report for 127.0.0.1 (syn scan)",
        "Not shown: 65534 closed tcp ports (65534 reset)",
    ]
    assert lines[3].split() == ["22/tcp", "open", service, "syn-ack", "ttl", "64"]
    assert (
        lines[-1]
        == "twinscan done: 1 IP address, 65535 port verdicts in 1.25 seconds (native engine)"
    )
    _assert_like_reference(result)
