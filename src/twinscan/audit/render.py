"""The audit's outputs: terminal report, CSV, JSON and a self-contained HTML page (pure text).

One row per finding, columns ``ROW_COLUMNS``; the terminal and HTML reports group the rows by
host, the worst host first, and within a host the worst finding first.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from html import escape

from twinscan.audit.advice import OwnerFacts, ServiceFacts, advise, fix_line
from twinscan.audit.findings import Audit, CellKey, Finding, Kind, by_host
from twinscan.core.wording import count

#: Columns of the CSV (and keys of each JSON finding), in this order.
ROW_COLUMNS: tuple[str, ...] = (
    "host",
    "proto",
    "port",
    "state",
    "reason",
    "technique",
    "finding",
    "rule",
    "role",
    "baseline_state",
    "service",
    "pid",
    "process",
    "cmdline",
    "firewall",
    "advice",
)


@dataclasses.dataclass(frozen=True, slots=True)
class AuditReport:
    """An audit with the facts gathered for its advice and what was run."""

    audit: Audit
    policy: str
    targets: tuple[str, ...]
    techniques: tuple[str, ...]
    owners: Mapping[CellKey, OwnerFacts] = dataclasses.field(default_factory=dict)
    services: Mapping[CellKey, ServiceFacts] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    incomplete: bool = False

    def rows(self) -> list[dict[str, object]]:
        return [self.row(f) for f in self.audit.findings]

    def row(self, f: Finding) -> dict[str, object]:
        cell = f.cell
        owner = self.owners.get(cell.key)
        service = self.services.get(cell.key)
        return {
            "host": cell.host,
            "proto": cell.proto.value,
            "port": cell.port,
            "state": cell.state.value,
            "reason": cell.reason,
            "technique": cell.technique,
            "finding": f.kind.value,
            "rule": f.rule_label,
            "role": f.role.value,
            "baseline_state": f.baseline_state or "",
            "service": service.text if service else "",
            "pid": owner.pid if owner and owner.pid is not None else "",
            "process": (owner.process or "") if owner else "",
            "cmdline": (owner.cmdline or "") if owner else "",
            "firewall": fix_line(f),
            "advice": advise(f, owner, service),
        }

    def summary_lines(self) -> list[str]:
        a = self.audit
        lines = [
            f"policy {self.policy}: {count(len(self.targets), 'host')}, "
            f"{count(a.cells, 'port')} checked ({', '.join(self.techniques) or 'no technique'})"
        ]
        if a.compliant:
            lines.append("compliant: no findings")
        else:
            counts = a.counts()
            parts = [f"{n} {kind.value}" for kind, n in counts.items() if n]
            lines.append(f"{count(len(a.findings), 'finding')}: {', '.join(parts)}")
        if a.baseline is not None:
            b = a.baseline
            lines.append(
                f"baseline: {count(b.compared, 'port')} compared; {b.not_compared} could not be "
                f"compared ({b.only_current} not in the baseline, {b.only_baseline} not scanned "
                f"now, {b.undecided} with a state that does not say open or not)"
            )
        if a.not_checked:
            shown = ", ".join(f"{h} {p.value}/{n}" for h, p, n in a.not_checked[:6])
            more = f" and {len(a.not_checked) - 6} more" if len(a.not_checked) > 6 else ""
            n = len(a.not_checked)
            lines.append(
                f"not checked: {count(n, 'port')} the policy denies, expects or wants "
                f"firewalled {'was' if n == 1 else 'were'} not scanned ({shown}{more})"
            )
        lines.extend(self.notes)
        if self.incomplete:
            lines.append("the scan was interrupted: these findings cover only what finished")
        return lines


def text_report(report: AuditReport, *, width: int = 100) -> str:
    """Findings grouped by host, worst host first; advice under each row."""
    out: list[str] = []
    for host, findings in by_host(report.audit.findings):
        out.append(f"{host}  ({count(len(findings), 'finding')})")
        for f in findings:
            row = report.row(f)
            port = f"{row['port']}/{row['proto']}"
            out.append(
                f"  {f.kind.value:<17} {port:<10} {row['state']:<14} {row['reason']:<16} "
                f"{f.rule_label}"
            )
            out.extend(_wrap(str(row["advice"]), width, "      "))
        out.append("")
    out.extend(report.summary_lines())
    return "\n".join(out) + "\n"


def _wrap(text: str, width: int, indent: str) -> list[str]:
    import textwrap

    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def csv_text(report: AuditReport) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(ROW_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in report.rows():
        writer.writerow(row)
    return buf.getvalue()


def json_text(report: AuditReport) -> str:
    a = report.audit
    doc: dict[str, object] = {
        "policy": report.policy,
        "compliant": a.compliant,
        "incomplete": report.incomplete,
        "targets": list(report.targets),
        "techniques": list(report.techniques),
        "ports_checked": a.cells,
        "counts": {kind.value: n for kind, n in a.counts().items()},
        "not_checked": [{"host": h, "proto": p.value, "port": n} for h, p, n in a.not_checked],
        "baseline": None if a.baseline is None else dataclasses.asdict(a.baseline),
        "notes": list(report.notes),
        "findings": report.rows(),
    }
    return json.dumps(doc, indent=2) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1a202c}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.4em}
table{border-collapse:collapse;margin:6px 0;font-size:.9em}
th,td{border:1px solid #cbd5e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#edf2f7}code{font-size:.85em}.muted{color:#718096}
td.k{font-weight:600;white-space:nowrap}
"""

_COLORS: Mapping[Kind, str] = {
    Kind.DENIED_OPEN: "#fed7d7",
    Kind.NOT_FIREWALLED: "#fed7d7",
    Kind.UNEXPECTED_OPEN: "#feebc8",
    Kind.MISSING_EXPECTED: "#feebc8",
    Kind.UNCONFIRMED: "#edf2f7",
    Kind.NEWLY_OPEN: "#fefcbf",
    Kind.NEWLY_CLOSED: "#fefcbf",
}

_HTML_COLUMNS: Sequence[str] = ("finding", "port", "state", "reason", "technique", "rule", "advice")


def html_text(report: AuditReport) -> str:
    """A self-contained page (no external URL): the summary, then one table per host."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>twinscan audit: {escape(report.policy)}</title><style>{_CSS}</style></head><body>",
        f"<h1>twinscan audit: {escape(report.policy)}</h1>",
        "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in report.summary_lines()) + "</ul>",
    ]
    for host, findings in by_host(report.audit.findings):
        parts.append(
            f"<h2>{escape(host)} <span class='muted'>({count(len(findings), 'finding')})</span></h2>"
        )
        parts.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in _HTML_COLUMNS) + "</tr>")
        for f in findings:
            row = report.row(f)
            cells = {**row, "port": f"{row['port']}/{row['proto']}"}
            tds = []
            for col in _HTML_COLUMNS:
                value = escape(str(cells[col]))
                if col == "finding":
                    tds.append(f"<td class='k' style='background:{_COLORS[f.kind]}'>{value}</td>")
                elif col == "advice" and row["firewall"]:
                    fw = escape(str(row["firewall"]))
                    tds.append(f"<td>{value.replace(fw, f'<code>{fw}</code>')}</td>")
                else:
                    tds.append(f"<td>{value}</td>")
            parts.append("<tr>" + "".join(tds) + "</tr>")
        parts.append("</table>")
    if report.audit.compliant:
        parts.append("<p>Compliant: every scanned port is as the policy intends.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
