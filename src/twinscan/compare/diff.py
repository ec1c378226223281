"""Diff two saved scans — nmap XML, twinscan CSV or JSON lines, in any mix — like nmap's ndiff.

Ports are matched on ``schema.KEY`` (host, proto, port, technique). A port only the second scan
has is ``new``, one only the first has is ``vanished``, one whose state differs is ``changed``.
As in ndiff, reasons do not count unless asked (``reasons=True``, like python-libnmap).
Loading reads files; everything after that is pure.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from twinscan.compare.align import outer_join, sort_rows
from twinscan.core.errors import InputFileError, UsageError
from twinscan.core.vocab import Technique
from twinscan.core.wording import count

if TYPE_CHECKING:
    import pandas as pd

NEW, VANISHED, CHANGED = "new", "vanished", "changed"

#: Columns of a diff, in this order.
DIFF_COLUMNS: tuple[str, ...] = (
    "host",
    "proto",
    "port",
    "technique",
    "change",
    "a_state",
    "b_state",
    "a_reason",
    "b_reason",
)


def sniff_format(head: bytes) -> str:
    """``xml``, ``jsonl``, ``parquet`` or ``csv`` from the first bytes of a file."""
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "xml"
    if text.startswith(b"{"):
        return "jsonl"
    return "csv"


def load_scan(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A saved scan as a results-schema frame, whatever its format (CSV, JSON lines, nmap
    XML, a Parquet file or a ``--parquet`` directory)."""
    from twinscan.formats.csv import read_csv
    from twinscan.formats.jsonl import read_jsonl
    from twinscan.formats.nmap_xml_read import read_nmap_xml_file

    name = os.fspath(path)
    p = Path(path)
    from twinscan.formats.parquet import META_FILE, read_parquet

    if p.is_dir() and (p / META_FILE).exists():
        return read_parquet(p)  # a --parquet DIR
    try:
        with p.open("rb") as fh:
            head = fh.read(512)
    except FileNotFoundError:
        raise InputFileError(name, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(name, "is a directory, not a saved scan") from None
    except OSError as exc:
        raise InputFileError(name, exc.strerror or str(exc)) from None
    if not head.strip():
        raise InputFileError(name, "empty file, not a saved scan")
    kind = sniff_format(head)
    if kind == "parquet":
        return read_parquet(p)
    if kind == "xml":
        return read_nmap_xml_file(p).frame
    if kind == "jsonl":
        return read_jsonl(p)
    try:
        return read_csv(p)
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        problem = str(exc).strip("'\"").splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, KeyError):
            problem = f"missing column {problem}"
        raise InputFileError(
            name, f"not nmap XML, twinscan CSV or JSON lines ({problem})"
        ) from None


@dataclasses.dataclass(slots=True)
class ScanDiff:
    rows: pd.DataFrame  # DIFF_COLUMNS, only the differences
    compared: int  # ports present in either scan
    #: How the scans were matched when it is not plain (host, proto, port, technique).
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def same(self) -> bool:
        return self.rows.empty

    def counts(self) -> dict[str, int]:
        values = self.rows["change"].value_counts()
        return {kind: int(values.get(kind, 0)) for kind in (NEW, VANISHED, CHANGED)}


def _techniques(frame: pd.DataFrame) -> list[str]:
    """The techniques of ``frame`` in the vocabulary's order."""
    present = set(frame["technique"].astype(str))
    return [t.value for t in Technique if t.value in present]


def match_techniques(
    a: pd.DataFrame, b: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``a`` and ``b`` made comparable, and the notes that say how (pure).

    Same single technique, or the same set: matched on (host, proto, port, technique). One
    technique each, but different ones (a SYN scan against a connect scan): matched on
    (host, proto, port), the technique column reads ``syn/connect``; ``UsageError`` if their
    protocols differ. Several techniques: matched by technique, those only one scan ran are
    left out (said in a note); ``UsageError`` when no technique is in both.
    """
    ta, tb = _techniques(a), _techniques(b)
    if ta == tb or not ta or not tb:
        return a, b, []
    if len(ta) == 1 and len(tb) == 1:
        one, two = Technique(ta[0]), Technique(tb[0])
        if one.proto is not two.proto:
            raise UsageError(
                f"A is a {one.value} scan ({one.proto.value}) and B a {two.value} scan "
                f"({two.proto.value}): no port is in both, nothing to compare"
            )
        label = f"{one.value}/{two.value}"
        note = (
            f"A is a {one.value} scan, B a {two.value} scan: ports matched on host, proto "
            f"and port (technique {label})"
        )
        return a.assign(technique=label), b.assign(technique=label), [note]
    common = [t for t in ta if t in tb]
    if not common:
        raise UsageError(
            f"A ran {', '.join(ta)} and B ran {', '.join(tb)}: no technique in common, "
            "nothing to compare (diff scans made with the same techniques, or one technique each)"
        )
    notes = []
    for name, only in (
        ("A", [t for t in ta if t not in tb]),
        ("B", [t for t in tb if t not in ta]),
    ):
        if only:
            notes.append(f"only {name} ran {', '.join(only)}: not compared")
    notes.append(f"ports matched by technique: {', '.join(common)}")
    keep_a = a[a["technique"].astype(str).isin(common)]
    keep_b = b[b["technique"].astype(str).isin(common)]
    return keep_a, keep_b, notes


def diff_frames(a: pd.DataFrame, b: pd.DataFrame, *, reasons: bool = False) -> ScanDiff:
    """New, vanished and changed ports from scan ``a`` to scan ``b`` (pure).

    Scans made with different techniques are matched as ``match_techniques`` says.
    """
    a, b, notes = match_techniques(a, b)
    joined = outer_join(a, b, "a", "b")
    in_a, in_b = joined["a_state"].notna(), joined["b_state"].notna()
    differs = (joined["a_state"] != joined["b_state"]).fillna(False).astype(bool)
    if reasons:
        differs |= (joined["a_reason"] != joined["b_reason"]).fillna(False).astype(bool)
    joined["change"] = None
    joined.loc[in_b & ~in_a, "change"] = NEW
    joined.loc[in_a & ~in_b, "change"] = VANISHED
    joined.loc[in_a & in_b & differs, "change"] = CHANGED
    rows = joined[joined["change"].notna()][list(DIFF_COLUMNS)]
    return ScanDiff(rows=sort_rows(rows).reset_index(drop=True), compared=len(joined), notes=notes)


def diff_files(
    a: str | os.PathLike[str], b: str | os.PathLike[str], *, reasons: bool = False
) -> ScanDiff:
    return diff_frames(load_scan(a), load_scan(b), reasons=reasons)


def render_diff(diff: ScanDiff, a_name: str, b_name: str) -> str:
    """ndiff-style text: ``-`` only in A, ``+`` only in B, ``~`` changed (A -> B)."""
    lines = [f"--- {a_name}", f"+++ {b_name}", *(f"# {note}" for note in diff.notes)]
    for (host, technique), part in diff.rows.groupby(["host", "technique"], sort=False):
        one, slash, two = str(technique).partition("/")
        scan = f"{one} scan in A, {two} scan in B" if slash else f"{technique} scan"
        lines.append(f"{host} ({scan}):")
        for rec in part.to_dict("records"):
            spec = f"{rec['port']}/{rec['proto']}"
            if rec["change"] == NEW:
                lines.append(f"+ {spec:<11} {rec['b_state']:<15} {rec['b_reason']}")
            elif rec["change"] == VANISHED:
                lines.append(f"- {spec:<11} {rec['a_state']:<15} {rec['a_reason']}")
            else:
                lines.append(
                    f"~ {spec:<11} {rec['a_state']} -> {rec['b_state']}  "
                    f"({rec['a_reason']} -> {rec['b_reason']})"
                )
    c = diff.counts()
    lines.append(
        f"{count(diff.compared, 'port')} compared: {c[NEW]} new, {c[VANISHED]} vanished, "
        f"{c[CHANGED]} changed"
    )
    return "\n".join(lines)
