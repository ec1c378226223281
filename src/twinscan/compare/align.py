"""The comparator: align two engines' verdicts per port and summarize them per technique (pure).

Frames in, frames out; no scanning, no clock (wall times are passed in). Verdicts are aligned on
``schema.KEY`` = (host, proto, port, technique) with an outer join, so a port only one engine
reported is a disagreement (its other side is ``missing``), never silently dropped. Like nmap's
ndiff, agreement is about the *state*; reasons are shown beside it but do not count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from twinscan.core.schema import KEY
from twinscan.core.vocab import Engine, Technique
from twinscan.core.wording import count

if TYPE_CHECKING:
    import pandas as pd

#: The label of an absent verdict in pair counts and confusion matrices.
MISSING = "missing"

#: Per-port columns, in this order (CSV ``compare --csv`` writes exactly these).
ROW_COLUMNS: tuple[str, ...] = (
    "host",
    "proto",
    "port",
    "technique",
    "native_state",
    "nmap_state",
    "native_reason",
    "nmap_reason",
    "agree",
)
#: Added when ground truth is known.
TRUTH_COLUMNS: tuple[str, ...] = ("truth_state", "native_correct", "nmap_correct")

#: Per-technique summary columns.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "technique",
    "ports",
    "agree",
    "agreement_pct",
    "disagreements",
    "pairs",
    "native_s",
    "nmap_s",
    "ratio",
    "truth_ports",
    "native_accuracy_pct",
    "nmap_accuracy_pct",
)

Timings = Mapping[tuple[Engine, Technique], float]


@dataclasses.dataclass(slots=True)
class Comparison:
    """Aligned rows, the per-technique summary and the wall times they came from."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    timings: dict[tuple[Engine, Technique], float] = dataclasses.field(default_factory=dict)
    #: Ctrl-C (or SIGTERM) stopped the run: only techniques both engines finished are here.
    interrupted: bool = False
    #: the requested techniques left out because the run was interrupted.
    not_compared: tuple[Technique, ...] = ()

    @property
    def interruption_note(self) -> str | None:
        """One line saying the run was interrupted and what it covers (None: it was not)."""
        if not self.interrupted:
            return None
        left = ", ".join(t.value for t in self.not_compared)
        if self.rows.empty:
            return "interrupted: nothing could be compared (no technique finished on both engines)"
        done = ", ".join(str(t) for t in self.summary["technique"])
        return f"interrupted: compared {done} only" + (f"; not compared: {left}" if left else "")

    @property
    def has_truth(self) -> bool:
        return "truth_state" in self.rows.columns

    @property
    def all_agree(self) -> bool:
        return bool(self.rows["agree"].all())

    def disagreements(self) -> pd.DataFrame:
        return self.rows[~self.rows["agree"]].reset_index(drop=True)

    def truth_gaps(self) -> list[tuple[str, int, int]]:
        """``(technique, scored, ports)`` for each technique where the truth is known for
        fewer ports than were compared (its accuracy covers only the ``scored`` ones)."""
        if not self.has_truth:
            return []
        return [
            (str(rec["technique"]), int(rec["truth_ports"]), int(rec["ports"]))
            for rec in self.summary.to_dict("records")
            if int(rec["truth_ports"]) < int(rec["ports"])
        ]


def describe_truth_gaps(gaps: list[tuple[str, int, int]]) -> str | None:
    """One line saying on how many ports each technique's accuracy was scored (None: all)."""
    if not gaps:
        return None
    parts = "; ".join(f"{t}: {scored} of {count(total, 'port')}" for t, scored, total in gaps)
    return f"truth known for {parts} — accuracy counts only those, the rest are not scored"


def _side(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """``frame`` reduced to the key plus ``<name>_state`` / ``<name>_reason`` as plain strings."""
    keyed = frame.loc[:, [*KEY, "state", "reason"]].copy()
    for col in ("host", "proto", "technique", "state", "reason"):
        keyed[col] = keyed[col].astype("string")
    keyed["port"] = keyed["port"].astype("int64")
    dup = keyed.duplicated(list(KEY), keep=False)
    if dup.any():
        first = keyed[dup].iloc[0]
        raise ValueError(
            f"{name}: more than one verdict for {first['host']} {first['port']}/{first['proto']} "
            f"({first['technique']})"
        )
    return keyed.rename(columns={"state": f"{name}_state", "reason": f"{name}_reason"})


def outer_join(
    left: pd.DataFrame, right: pd.DataFrame, left_name: str, right_name: str
) -> pd.DataFrame:
    """Both frames on ``KEY`` with ``<name>_state`` / ``<name>_reason`` columns (outer join:
    a key only one side has gets ``<NA>`` on the other)."""
    return _side(left, left_name).merge(
        _side(right, right_name), on=list(KEY), how="outer", sort=False
    )


def align(
    native: pd.DataFrame, nmap: pd.DataFrame, truth: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per-port rows (``ROW_COLUMNS``, plus ``TRUTH_COLUMNS`` when ``truth`` is given).

    ``native``, ``nmap`` and ``truth`` are results-schema frames. Truth cells outside the
    scanned ports are ignored; scanned ports the truth does not cover get ``<NA>`` truth.
    """
    import pandas as pd

    rows = outer_join(native, nmap, "native", "nmap")
    both = rows["native_state"].notna() & rows["nmap_state"].notna()
    same = (rows["native_state"] == rows["nmap_state"]).fillna(False).astype(bool)
    rows["agree"] = both & same
    columns = list(ROW_COLUMNS)
    if truth is not None:
        t = _side(truth, "truth").drop(columns=["truth_reason"])
        rows = rows.merge(t, on=list(KEY), how="left", sort=False)
        known = rows["truth_state"].notna()
        for engine in ("native", "nmap"):
            # NA when the truth is unknown; False when the engine has no verdict at all.
            same_as_truth = rows[f"{engine}_state"] == rows["truth_state"]
            correct = same_as_truth.fillna(False).astype("boolean")
            rows[f"{engine}_correct"] = correct.mask(~known, pd.NA)
        columns += list(TRUTH_COLUMNS)
    rows = rows[columns]
    return sort_rows(rows).reset_index(drop=True)


def sort_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Technique order of the vocabulary, then host (by address), proto, port."""
    from twinscan.core.schema import host_rank

    order = {t.value: i for i, t in enumerate(Technique)}
    return (
        rows.assign(_t=rows["technique"].astype(str).map(order), _h=host_rank(rows["host"]))
        .sort_values(["_t", "_h", "proto", "port"], kind="stable")
        .drop(columns=["_t", "_h"])
    )


def state_pairs(rows: pd.DataFrame) -> list[tuple[str, str, int]]:
    """Disagreeing (native_state, nmap_state, count), most frequent first."""
    bad = rows[~rows["agree"]]
    if bad.empty:
        return []
    native = bad["native_state"].fillna(MISSING).astype(str)
    nmap = bad["nmap_state"].fillna(MISSING).astype(str)
    counts: dict[tuple[str, str], int] = {}
    for a, b in zip(native, nmap, strict=True):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return sorted(((a, b, n) for (a, b), n in counts.items()), key=lambda x: (-x[2], x[0], x[1]))


def format_pairs(pairs: list[tuple[str, str, int]]) -> str:
    """``"open→filtered ×3, closed→missing ×1"`` (native state first)."""
    return ", ".join(f"{a}→{b} ×{n}" for a, b, n in pairs)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def summarize(rows: pd.DataFrame, timings: Timings | None = None) -> pd.DataFrame:
    """One row per technique (``SUMMARY_COLUMNS``), in the vocabulary's technique order.

    ``ratio`` is native wall time / nmap wall time (below 1: twinscan was faster). Accuracy is
    over the ports whose truth is known; ``None`` without truth.
    """
    import pandas as pd

    timings = timings or {}
    has_truth = "truth_state" in rows.columns
    out: list[dict[str, object]] = []
    for technique in Technique:
        part = rows[rows["technique"] == technique.value]
        if part.empty:
            continue
        n = len(part)
        agree = int(part["agree"].sum())
        native_s = timings.get((Engine.NATIVE, technique))
        nmap_s = timings.get((Engine.NMAP, technique))
        ratio = round(native_s / nmap_s, 3) if native_s is not None and nmap_s else None
        record: dict[str, object] = {
            "technique": technique.value,
            "ports": n,
            "agree": agree,
            "agreement_pct": _pct(agree, n),
            "disagreements": n - agree,
            "pairs": format_pairs(state_pairs(part)),
            "native_s": None if native_s is None else round(native_s, 3),
            "nmap_s": None if nmap_s is None else round(nmap_s, 3),
            "ratio": ratio,
            "truth_ports": 0,
            "native_accuracy_pct": None,
            "nmap_accuracy_pct": None,
        }
        if has_truth:
            known = part[part["truth_state"].notna()]
            record["truth_ports"] = len(known)
            record["native_accuracy_pct"] = _pct(int(known["native_correct"].sum()), len(known))
            record["nmap_accuracy_pct"] = _pct(int(known["nmap_correct"].sum()), len(known))
        out.append(record)
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def compare(
    native: pd.DataFrame,
    nmap: pd.DataFrame,
    *,
    truth: pd.DataFrame | None = None,
    timings: Timings | None = None,
) -> Comparison:
    """Align and summarize in one call."""
    rows = align(native, nmap, truth)
    return Comparison(rows=rows, summary=summarize(rows, timings), timings=dict(timings or {}))


def confusion(rows: pd.DataFrame, technique: Technique) -> pd.DataFrame:
    """Counts of (native state → index, nmap state → columns) for one technique.

    Only states that occur appear; ``missing`` stands for an absent verdict.
    """
    import pandas as pd

    part = rows[rows["technique"] == technique.value]
    native = part["native_state"].fillna(MISSING).astype(str).rename("native")
    nmap = part["nmap_state"].fillna(MISSING).astype(str).rename("nmap")
    if part.empty:
        return pd.DataFrame()
    table = pd.crosstab(native, nmap)
    labels = _state_order(set(table.index) | set(table.columns))
    return table.reindex(index=labels, columns=labels, fill_value=0)


def _state_order(labels: set[str]) -> list[str]:
    from twinscan.core.vocab import PortState

    known = [s.value for s in PortState if s.value in labels]
    rest = sorted(labels - set(known) - {MISSING})
    return known + rest + ([MISSING] if MISSING in labels else [])


def write_rows_csv(rows: pd.DataFrame, path_or_buf: object) -> None:
    """The per-port rows as CSV, columns in ``ROW_COLUMNS`` (+ ``TRUTH_COLUMNS``) order."""
    rows.to_csv(path_or_buf, index=False)  # type: ignore[call-overload]
