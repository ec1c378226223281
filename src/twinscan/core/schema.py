"""The one results schema: column names, order and dtypes shared by every engine and export.

A scan result is one row per (engine, technique, host, proto, port). Enum-valued columns are
pandas categoricals whose categories are the enum values, so frames from different engines
concatenate without upcasting and compare cell by cell.

One columns type, ``ResultColumns``, carries verdicts from an engine to the frame and to every
writer (``ScanResult.column_runs`` gives any result, built or not, as ``ResultColumns``);
``iana_codes`` is the one place the ``iana_range`` column is computed. File formats live in
``twinscan.formats`` (CSV: ``formats.csv``).

Longer than twinscan's ~400-line guideline on purpose: the dtypes, the columns type and the two
conversions between columns and frames (``frame_from_columns``, ``columns_from_frame``) must
agree cell for cell, and keeping them in one module keeps that contract in one place.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from twinscan.core.vocab import Engine, IanaRange, PortState, Proto, Reason, Technique

if TYPE_CHECKING:
    import pandas as pd

#: Stable column order of every results frame and every CSV twinscan writes.
COLUMNS: tuple[str, ...] = (
    "engine",
    "technique",
    "host",
    "proto",
    "port",
    "state",
    "reason",
    "reason_ttl",
    "reason_ip",
    "rtt_ms",
    "iana_range",
)

#: Optional columns added by ``--owners`` for local targets (issue: who owns a port).
OWNER_COLUMNS: tuple[str, ...] = ("pid", "process", "user", "cmdline")

#: Key that identifies one verdict across engines.
KEY: tuple[str, ...] = ("host", "proto", "port", "technique")

_CATEGORIES: dict[str, list[str]] = {
    "engine": [e.value for e in Engine],
    "technique": [t.value for t in Technique],
    "proto": [p.value for p in Proto],
    "state": [s.value for s in PortState],
    "reason": [r.value for r in Reason],
    "iana_range": [r.value for r in IanaRange],
}

_SCALAR_DTYPES: dict[str, str] = {
    "host": "string",
    "port": "uint16",
    "reason_ttl": "UInt8",
    "reason_ip": "string",
    "rtt_ms": "Float32",
    "pid": "Int32",
    "process": "string",
    "user": "string",
    "cmdline": "string",
}


def dtypes() -> dict[str, Any]:
    """The dtype of each column (categoricals built lazily so importing this module stays cheap)."""
    import pandas as pd

    out: dict[str, Any] = {}
    for col in COLUMNS + OWNER_COLUMNS:
        if col in _CATEGORIES:
            out[col] = pd.CategoricalDtype(_CATEGORIES[col], ordered=False)
        else:
            out[col] = _SCALAR_DTYPES[col]
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class PortVerdict:
    """One port's verdict as an engine saw it (the row before it becomes a DataFrame row)."""

    engine: Engine
    technique: Technique
    host: str
    proto: Proto
    port: int
    state: PortState
    reason: Reason
    reason_ttl: int | None = None
    reason_ip: str | None = None
    rtt_ms: float | None = None

    def as_row(self) -> dict[str, object]:
        return {
            "engine": self.engine.value,
            "technique": self.technique.value,
            "host": self.host,
            "proto": self.proto.value,
            "port": self.port,
            "state": self.state.value,
            "reason": self.reason.value,
            "reason_ttl": self.reason_ttl,
            "reason_ip": self.reason_ip,
            "rtt_ms": self.rtt_ms,
        }  # iana_range: derived by ``conform`` (``iana_codes``)


@dataclasses.dataclass(frozen=True, slots=True)
class ScanMeta:
    """What ran: enough to reproduce or label a scan."""

    engine: Engine
    start: dt.datetime
    end: dt.datetime
    arguments: str
    engine_version: str
    techniques: tuple[Technique, ...] = ()
    incomplete: bool = False

    @property
    def elapsed_s(self) -> float:
        return (self.end - self.start).total_seconds()


#: the highest port of each ``IanaRange``, in its order (well-known, registered, dynamic).
_IANA_UPPERS: tuple[int, ...] = tuple(r.bounds[1] for r in IanaRange)


def iana_codes(ports: Sequence[int] | Any) -> Any:
    """The ``iana_range`` category code of each port (numpy int8 array): the one place the
    column is computed (``IanaRange`` order: well-known, registered, dynamic);
    ``iana_codes_plain`` is the same without numpy."""
    import numpy as np

    uppers = np.array(_IANA_UPPERS)
    return np.searchsorted(uppers, np.asarray(ports, dtype=np.int64)).astype(np.int8)


def iana_codes_plain(ports: Iterable[int]) -> list[int]:
    """``iana_codes`` as a list, without numpy (its import costs more than a small result)."""
    return [bisect.bisect_left(_IANA_UPPERS, p) for p in ports]


@functools.cache
def iana_code_table() -> tuple[int, ...]:
    """The ``iana_range`` code of every port 0-65535, indexed by port (built once, ~1.5 ms:
    for a large result a read per port is cheaper than a bisect per port, ~8 ms for 65535)."""
    table: list[int] = []
    for code, upper in enumerate(_IANA_UPPERS):
        table += [code] * (upper + 1 - len(table))
    return tuple(table)


@dataclasses.dataclass(frozen=True, slots=True)
class ResultColumns:
    """Verdicts of one (engine, technique, proto) as columns: the one columns type.

    Engines hand these over so that a plain ``twinscan scan --csv`` never needs pandas: the CSV
    (``formats.csv``) and the text report are written from the columns, and the frame is built
    only when something asks for it (``to_frame``). ``state`` and ``reason`` are categorical
    codes (``category_code``); the optional columns are None when absent. The owner columns
    (``--owners``) are set only when a frame that has them is turned back into columns.
    """

    engine: Engine
    technique: Technique
    proto: Proto
    host: Sequence[str]
    port: Sequence[int]
    state: Sequence[int]
    reason: Sequence[int]
    reason_ttl: Sequence[int | None] | None = None
    reason_ip: Sequence[str | None] | None = None
    rtt_ms: Sequence[float | None] | None = None
    pid: Sequence[int | None] | None = None
    process: Sequence[str | None] | None = None
    user: Sequence[str | None] | None = None
    cmdline: Sequence[str | None] | None = None

    def __len__(self) -> int:
        return len(self.port)

    @property
    def has_owners(self) -> bool:
        return any(getattr(self, c) is not None for c in OWNER_COLUMNS)

    def span(self, lo: int, hi: int) -> ResultColumns:
        """Rows ``lo`` to ``hi`` (each column sliced: a C-speed copy, where ``take`` indexes)."""
        if lo == 0 and hi >= len(self):
            return self
        return self._each_column(lambda col: col[lo:hi])

    def take(self, rows: Sequence[int]) -> ResultColumns:
        """The rows numbered ``rows``, in that order."""
        return self._each_column(lambda col: [col[i] for i in rows])

    def _each_column(self, pick: Callable[[Sequence[Any]], Sequence[Any]]) -> ResultColumns:
        """The same run with ``pick`` applied to every column it holds (the row columns)."""
        values = {}
        for f in dataclasses.fields(ResultColumns)[3:]:
            col = getattr(self, f.name)
            values[f.name] = None if col is None else pick(col)
        return ResultColumns(self.engine, self.technique, self.proto, **values)  # type: ignore[arg-type]

    def to_frame(self) -> pd.DataFrame:
        return frame_from_columns(
            engine=self.engine,
            technique=self.technique,
            proto=self.proto,
            host=self.host,
            port=self.port,
            state=self.state,
            reason=self.reason,
            reason_ttl=self.reason_ttl,
            reason_ip=self.reason_ip,
            rtt_ms=self.rtt_ms,
            owners={c: getattr(self, c) for c in OWNER_COLUMNS if getattr(self, c) is not None},
        )


def verdict_columns(verdicts: Sequence[PortVerdict]) -> ResultColumns | None:
    """``verdicts`` as one ``ResultColumns`` in the same order (``to_frame`` of them equals its
    frame), or None when they are not all of one (engine, technique, proto) -- or none at all.

    A parsed nmap ``-oX`` of one technique becomes columns this way, so that writing it (the
    ``--engine nmap`` scan, ``import-nmap``) needs no pandas."""
    if not verdicts:
        return None
    first = verdicts[0]
    key = (first.engine, first.technique, first.proto)
    if any((v.engine, v.technique, v.proto) != key for v in verdicts):
        return None
    states = {s: category_code("state", s.value) for s in PortState}
    reasons = {r: category_code("reason", r.value) for r in Reason}
    return ResultColumns(
        engine=first.engine,
        technique=first.technique,
        proto=first.proto,
        host=[v.host for v in verdicts],
        port=[v.port for v in verdicts],
        state=[states[v.state] for v in verdicts],
        reason=[reasons[v.reason] for v in verdicts],
        reason_ttl=[v.reason_ttl for v in verdicts],
        reason_ip=[v.reason_ip for v in verdicts],
        rtt_ms=[v.rtt_ms for v in verdicts],
    )


def columns_from_frame(frame: pd.DataFrame) -> list[ResultColumns]:
    """A schema frame as ``ResultColumns``, one per run of rows sharing (engine, technique,
    proto), in row order (the inverse of ``to_frame``; owner columns kept)."""
    import numpy as np
    import pandas as pd

    n = len(frame)
    if n == 0:
        return []
    types = dtypes()
    keys = [frame[c].astype(str).to_numpy() for c in ("engine", "technique", "proto")]
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(change).tolist() + [n]

    def codes(col: str) -> list[int]:
        return pd.Categorical(frame[col].astype(str), dtype=types[col]).codes.tolist()

    def values(col: str) -> list[Any] | None:
        if col not in frame.columns:
            return None
        return [None if pd.isna(v) else v for v in frame[col].astype("object")]

    state, reason = codes("state"), codes("reason")
    host = frame["host"].astype(str).tolist()
    port = frame["port"].astype("int64").tolist()
    ttl = [None if v is None else int(v) for v in values("reason_ttl") or []]
    rtt = [None if v is None else float(v) for v in values("rtt_ms") or []]
    rip = values("reason_ip") or []
    pid = values("pid")
    owners = {c: values(c) for c in OWNER_COLUMNS[1:]}
    out: list[ResultColumns] = []
    for lo, hi in zip(starts, starts[1:], strict=False):
        out.append(
            ResultColumns(
                engine=Engine(keys[0][lo]),
                technique=Technique(keys[1][lo]),
                proto=Proto(keys[2][lo]),
                host=host[lo:hi],
                port=port[lo:hi],
                state=state[lo:hi],
                reason=reason[lo:hi],
                reason_ttl=ttl[lo:hi],
                reason_ip=[None if v is None else str(v) for v in rip[lo:hi]],
                rtt_ms=rtt[lo:hi],
                pid=None if pid is None else [None if v is None else int(v) for v in pid[lo:hi]],
                **{c: None if v is None else v[lo:hi] for c, v in owners.items()},
            )
        )
    return out


class ScanResult:
    """A results frame in the schema, plus how it was made.

    Made from a frame, or from ``ResultColumns`` whose frame is built on first use.
    """

    __slots__ = ("_columns", "_frame", "meta")

    def __init__(
        self,
        frame: pd.DataFrame | None = None,
        meta: ScanMeta | None = None,
        *,
        columns: ResultColumns | None = None,
    ) -> None:
        if meta is None or (frame is None) == (columns is None):
            raise TypeError("ScanResult takes meta and exactly one of frame or columns")
        self._frame = frame
        self._columns = columns
        self.meta = meta

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            assert self._columns is not None
            self._frame = self._columns.to_frame()
        return self._frame

    @frame.setter
    def frame(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._columns = None

    @property
    def unbuilt_columns(self) -> ResultColumns | None:
        """The columns when no frame has been built from them yet (the cheap path)."""
        return self._columns if self._frame is None else None

    def column_runs(self) -> list[ResultColumns]:
        """The result as ``ResultColumns`` (its own columns, or runs of its frame's rows):
        how writers that work on columns read any result."""
        columns = self.unbuilt_columns
        return [columns] if columns is not None else columns_from_frame(self.frame)

    def __repr__(self) -> str:
        rows = len(self._columns) if self._frame is None and self._columns else len(self.frame)
        return f"ScanResult({rows} rows, {self.meta!r})"


def to_frame(verdicts: Iterable[PortVerdict]) -> pd.DataFrame:
    """Build a schema-conformant frame from verdicts."""
    import pandas as pd

    rows = [v.as_row() for v in verdicts]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return conform(frame)


def category_values(column: str) -> list[str]:
    """The categories of ``column`` in code order (code ``i`` means ``category_values[i]``)."""
    return list(_CATEGORIES[column])


def category_code(column: str, value: str) -> int:
    """The categorical code of ``value`` in ``column`` (for ``frame_from_columns``)."""
    return _CATEGORIES[column].index(value)


def frame_from_columns(
    *,
    engine: Engine,
    technique: Technique,
    proto: Proto,
    host: Sequence[str],
    port: Sequence[int],
    state: Sequence[int],
    reason: Sequence[int],
    reason_ttl: Sequence[int | None] | None = None,
    reason_ip: Sequence[str | None] | None = None,
    rtt_ms: Sequence[float | None] | None = None,
    owners: Mapping[str, Sequence[Any]] | None = None,
) -> pd.DataFrame:
    """A schema frame built column by column, without a Python object per row.

    One (engine, technique, proto) per call; ``state`` and ``reason`` are categorical codes
    (``category_code``), the other columns plain values (None: missing); ``owners`` adds the
    owner columns it names (``OWNER_COLUMNS`` order). The frame equals
    ``to_frame`` of the same verdicts (same columns, dtypes and row order) at a fraction of
    the cost for 65535 rows.
    """
    import numpy as np
    import pandas as pd

    n = len(port)
    types = dtypes()
    ports = np.asarray(port, dtype=np.int64)
    if n and (ports.min() < 0 or ports.max() > 65535):
        raise ValueError("column port: value outside 0-65535")
    for name, values in (("host", host), ("state", state), ("reason", reason)):
        if len(values) != n:
            raise ValueError(f"column {name}: {len(values)} values for {n} rows")

    def const(col: str, value: str) -> pd.Categorical:
        codes = np.full(n, category_code(col, value), dtype=np.int8)
        return pd.Categorical.from_codes(codes, dtype=types[col])

    def codes(col: str, values: Sequence[int]) -> pd.Categorical:
        arr = np.asarray(values, dtype=np.int8)
        if n and (arr.min() < 0 or arr.max() >= len(_CATEGORIES[col])):
            raise ValueError(f"column {col}: code outside its categories")
        return pd.Categorical.from_codes(arr, dtype=types[col])

    def optional(values: Sequence[Any] | None, dtype: str) -> pd.Series:
        return pd.Series([None] * n if values is None else list(values), dtype=dtype)

    frame = pd.DataFrame(
        {
            "engine": const("engine", engine.value),
            "technique": const("technique", technique.value),
            "host": pd.array(list(host), dtype="string"),
            "proto": const("proto", proto.value),
            "port": ports.astype(np.uint16),
            "state": codes("state", state),
            "reason": codes("reason", reason),
            "reason_ttl": optional(reason_ttl, "UInt8"),
            "reason_ip": optional(reason_ip, "string"),
            "rtt_ms": optional(rtt_ms, "Float32"),
            "iana_range": pd.Categorical.from_codes(iana_codes(ports), dtype=types["iana_range"]),
        }
    )
    for col in OWNER_COLUMNS:
        if owners and col in owners:
            frame[col] = optional(owners[col], types[col])
    return frame


def empty_frame() -> pd.DataFrame:
    return to_frame(())


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast ``frame`` to the schema: fixed column order, schema dtypes, derived ``iana_range``.

    Owner columns are kept (in their fixed order) when present. Raises ``ValueError`` for a
    missing column or a value outside a categorical's categories.
    """
    import pandas as pd

    frame = frame.copy()
    if "iana_range" not in frame.columns or frame["iana_range"].isna().any():
        ports = pd.to_numeric(frame["port"], errors="raise")
        if ports.isna().any():
            raise ValueError("column port: missing value")
        if len(ports) and (ports.min() < 0 or ports.max() > 65535):
            raise ValueError("column port: value outside 0-65535")
        frame["iana_range"] = pd.Categorical.from_codes(
            iana_codes(ports), dtype=dtypes()["iana_range"]
        )
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s): {', '.join(missing)}")
    cols = list(COLUMNS) + [c for c in OWNER_COLUMNS if c in frame.columns]
    frame = frame[cols]
    types = dtypes()
    for col in cols:
        series = frame[col]
        if col in _CATEGORIES:
            values = series.astype("object").where(series.notna(), None)
            bad = sorted({str(v) for v in values.dropna().unique()} - set(_CATEGORIES[col]))
            if bad:
                raise ValueError(f"column {col}: unknown value(s) {', '.join(bad)}")
            frame[col] = pd.Categorical(values, dtype=types[col])
        elif col == "port":
            ports = pd.to_numeric(series, errors="raise")
            if ((ports < 0) | (ports > 65535)).any():
                raise ValueError("column port: value outside 0-65535")
            frame[col] = ports.astype("uint16")
        elif types[col] in ("UInt8", "Int32", "Float32"):
            frame[col] = pd.to_numeric(series, errors="raise").astype(types[col])
        else:
            frame[col] = series.astype(types[col])
    return frame.reset_index(drop=True)


def host_sort_key(host: str) -> tuple[int, int, str]:
    """Sort key of a target: by address, as nmap orders hosts (127.0.0.2 before 127.0.0.10).

    IPv4 addresses first, then IPv6 (each family in numeric order, a zone ``%eth0`` after the
    plain address), then anything that is not an address (a hostname) as text. Every report,
    export, diff and truth table orders hosts with this key.
    """
    import ipaddress

    addr, _, zone = host.partition("%")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return (2, 0, host)
    return (0 if ip.version == 4 else 1, int(ip), zone)


def host_rank(hosts: pd.Series) -> pd.Series:
    """Int ranks of a host column in ``host_sort_key`` order (same index), to sort a frame by."""
    text = hosts.astype(str)
    order = sorted(text.unique(), key=host_sort_key)
    ranks = {h: i for i, h in enumerate(order)}
    return text.map(ranks).astype("int64")


def sort_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical order: engine, technique, host (by address: ``host_sort_key``), proto, port."""
    ordered = frame.assign(
        _e=frame["engine"].astype(str),
        _t=frame["technique"].astype(str),
        _h=host_rank(frame["host"]),
        _p=frame["proto"].astype(str),
    ).sort_values(["_e", "_t", "_h", "_p", "port"], kind="stable")
    return ordered.drop(columns=["_e", "_t", "_h", "_p"]).reset_index(drop=True)


def meta_dict(meta: ScanMeta) -> Mapping[str, object]:
    return {
        "engine": meta.engine.value,
        "start": meta.start.isoformat(),
        "end": meta.end.isoformat(),
        "elapsed_s": round(meta.elapsed_s, 3),
        "arguments": meta.arguments,
        "engine_version": meta.engine_version,
        "techniques": [t.value for t in meta.techniques],
        "incomplete": meta.incomplete,
    }


def combine(results: list[ScanResult]) -> ScanResult:
    """Concatenate per-technique results of one engine into one result."""
    if not results:
        raise ValueError("nothing to combine")
    if len(results) == 1:
        return results[0]  # already conformed by its engine (and maybe not built yet)
    import pandas as pd

    frame = conform(pd.concat([r.frame for r in results], ignore_index=True))
    metas = [r.meta for r in results]
    techniques: list[Technique] = []
    for m in metas:
        techniques.extend(t for t in m.techniques if t not in techniques)
    meta = ScanMeta(
        engine=metas[0].engine,
        start=min(m.start for m in metas),
        end=max(m.end for m in metas),
        arguments=metas[0].arguments,
        engine_version=metas[0].engine_version,
        techniques=tuple(techniques),
        incomplete=any(m.incomplete for m in metas),
    )
    return ScanResult(frame=frame, meta=meta)
