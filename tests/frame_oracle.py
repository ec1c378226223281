"""The pandas implementations that ``formats.host_rows`` and ``formats.jsonl.jsonl_chunks``
replaced (twinscan c200bb0), kept as the oracle the new writers are compared with byte for
byte (tests/formats/test_formats_from_columns.py).

They were the writers checked against nmap's own files (fixtures/nmap, ndiff, python-nmap):
``-oX`` from ``sort_frame``'s order grouped with pandas, ``-oN``/``-oG`` from the frame's rows,
JSON lines from a dict per row. The ``-oX`` oracle builds every element with ElementTree, as
the writer did until it wrote its elements as text (``nmap_xml_write.element``); the ``-oN``
and ``-oG`` headers and footers are the writers' own.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd

from twinscan.core.schema import (
    COLUMNS,
    OWNER_COLUMNS,
    ScanMeta,
    ScanResult,
    host_sort_key,
    sort_frame,
)
from twinscan.core.vocab import PortState, Proto, Reason, Technique
from twinscan.formats import nmap_text as text_mod
from twinscan.formats import nmap_xml_write as xml_mod
from twinscan.formats.text_report import service_names
from twinscan.request.ports import ServiceNames, format_port_list

# --- -oX ------------------------------------------------------------------------------------


def _folded_states(states: pd.Series) -> list[str]:
    counts = states.astype(str).value_counts()
    order = {s.value: i for i, s in enumerate(PortState)}
    folded = [
        (int(n), str(s))
        for s, n in counts.items()
        if n > 25 and PortState(str(s)) is not PortState.OPEN
    ]
    folded.sort(key=lambda x: (-x[0], order[x[1]]))
    return [str(s) for _, s in folded]


def _cell(value: object) -> str | None:
    if value is None or value is pd.NA:
        return None
    text = str(value)
    return None if text in ("<NA>", "nan") else text


def _host_element(
    root: ET.Element, part: pd.DataFrame, host: str, start: dt.datetime, end: dt.datetime,
    services: ServiceNames,
) -> None:  # fmt: skip
    import ipaddress

    el = ET.SubElement(root, "host", {"starttime": xml_mod._ts(start), "endtime": xml_mod._ts(end)})
    ET.SubElement(el, "status", {"state": "up", "reason": "user-set", "reason_ttl": "0"})
    kind = "ipv6" if ipaddress.ip_address(host).version == 6 else "ipv4"
    ET.SubElement(el, "address", {"addr": host, "addrtype": kind})
    ET.SubElement(el, "hostnames")
    ports_el = ET.SubElement(el, "ports")
    folded = _folded_states(part["state"])
    states = part["state"].astype(str)
    for state in folded:
        rows = part[states == state]
        extra = ET.SubElement(ports_el, "extraports", {"state": state, "count": str(len(rows))})
        groups = rows.groupby([rows["reason"].astype(str), rows["proto"].astype(str)])
        for key, grp in sorted(groups, key=lambda g: (-len(g[1]), str(g[0]))):
            reason, proto = (str(k) for k in key)
            ET.SubElement(extra, "extrareasons", {
                "reason": Reason(reason).value, "count": str(len(grp)), "proto": proto,
                "ports": format_port_list(int(p) for p in grp["port"]),
            })  # fmt: skip
    listed = part[~states.isin(folded)]
    for proto, port, state, reason, ttl, rip in zip(
        listed["proto"].astype(str), listed["port"], listed["state"].astype(str),
        listed["reason"].astype(str), listed["reason_ttl"].astype("object"),
        listed["reason_ip"].astype("object"), strict=True,
    ):  # fmt: skip
        port_el = ET.SubElement(ports_el, "port", {"protocol": proto, "portid": str(int(port))})
        attrs = {"state": state, "reason": reason, "reason_ttl": _cell(ttl) or "0"}
        ip = _cell(rip)
        if ip:
            attrs["reason_ip"] = ip
        ET.SubElement(port_el, "state", attrs)
        name = services.get((int(port), proto))
        if name:
            ET.SubElement(port_el, "service", {"name": name, "method": "table", "conf": "3"})


def _scanned_ports(frame: pd.DataFrame) -> dict[Technique, list[int]]:
    out: dict[Proto, Technique] = {}
    pairs = frame[["proto", "technique"]].astype(str).drop_duplicates()
    for proto_s, tech_s in pairs.itertuples(index=False, name=None):
        out[Proto(proto_s)] = Technique(tech_s)
    protos = frame["proto"].astype(str)
    return {
        tech: sorted({int(p) for p in frame.loc[protos == proto.value, "port"]})
        for proto, tech in out.items()
    }


def _serialized(el: ET.Element) -> str:
    """One element as nmap's layout writes it: every tag on its own line, then a newline."""
    ET.indent(el, space="", level=0)
    el.tail = "\n"
    return ET.tostring(el, encoding="unicode")


def _xml_head(meta: ScanMeta, ports: dict[Technique, list[int]]) -> str:
    scanner, version = xml_mod._scanner(meta)
    root = ET.Element("nmaprun", {
        "scanner": scanner, "args": meta.arguments, "start": xml_mod._ts(meta.start),
        "startstr": xml_mod._timestr(meta.start), "version": version, "xmloutputversion": "1.05",
    })  # fmt: skip
    by_proto = {tech.proto: (tech, ports[tech]) for tech in ports}
    for proto in (Proto.TCP, Proto.UDP):
        if proto in by_proto:
            tech, numbers = by_proto[proto]
            ET.SubElement(root, "scaninfo", {
                "type": tech.scaninfo, "protocol": proto.value,
                "numservices": str(len(numbers)), "services": format_port_list(numbers),
            })  # fmt: skip
    ET.SubElement(root, "verbose", {"level": "0"})
    ET.SubElement(root, "debugging", {"level": "0"})
    return _serialized(root).removesuffix("</nmaprun>\n")


def _xml_foot(meta: ScanMeta, n: int) -> str:
    scanner, _ = xml_mod._scanner(meta)
    runstats = ET.Element("runstats")
    ET.SubElement(runstats, "finished", {
        "time": xml_mod._ts(meta.end), "timestr": xml_mod._timestr(meta.end),
        "summary": f"{'Nmap' if scanner == 'nmap' else 'twinscan'} done; {n} IP address"
        f"{'es' if n != 1 else ''} ({n} host{'s' if n != 1 else ''} up) scanned in "
        f"{meta.elapsed_s:.2f} seconds",
        "elapsed": f"{meta.elapsed_s:.2f}", "exit": "error" if meta.incomplete else "success",
    })  # fmt: skip
    ET.SubElement(runstats, "hosts", {"up": str(n), "down": "0", "total": str(n)})
    return _serialized(runstats) + "</nmaprun>\n"


def xml_text(result: ScanResult) -> str:
    frame = sort_frame(result.frame)
    meta = result.meta
    services = service_names()
    parts = [xml_mod.xml_prolog(meta), _xml_head(meta, _scanned_ports(frame))]
    hosts = frame["host"].astype(str)
    n = 0
    for host in sorted(set(hosts), key=host_sort_key):
        holder = ET.Element("nmaprun")
        _host_element(holder, frame[hosts == host], host, meta.start, meta.end, services)
        parts.append(_serialized(holder[0]))
        n += 1
    parts.append(_xml_foot(meta, n))
    return "".join(parts)


# --- -oN / -oG ------------------------------------------------------------------------------

Rows = list[tuple[int, str, str, str, str]]


def _rows_by_host(frame: pd.DataFrame) -> dict[str, Rows]:
    out: dict[str, Rows] = {}
    for host, proto, port, state, reason, t in zip(
        frame["host"].astype(str), frame["proto"].astype(str), frame["port"].astype(int),
        frame["state"].astype(str), frame["reason"].astype(str), frame["reason_ttl"], strict=True,
    ):  # fmt: skip
        ttl_s = "" if t is None or str(t) in ("<NA>", "0") else f" ttl {t}"
        out.setdefault(host, []).append((port, proto, state, reason, ttl_s))
    return dict(sorted(out.items(), key=lambda kv: host_sort_key(kv[0])))


def _shown(rows: Rows) -> tuple[set[str], Rows]:
    counts = Counter(state for _, _, state, _, _ in rows)
    folded = {s for s, n in counts.items() if n > 25 and s != PortState.OPEN.value}
    kept = [r for r in rows if r[2] not in folded]
    return folded, sorted(kept, key=lambda r: (r[1] != "tcp", r[1], r[0]))


def _normal_host(host: str, rows: Rows, names: ServiceNames) -> list[str]:
    folded, shown = _shown(rows)
    lines = [f"Nmap scan report for {host}", "Host is up, received user-set."]
    if not shown:
        lines.append(f"All {len(rows)} scanned ports on {host} are in ignored states.")
    parts = []
    for state in sorted(folded):
        for proto in ("tcp", "udp"):
            part = [r for r in rows if r[2] == state and r[1] == proto]
            if part:
                reasons = Counter(r[3] for r in part).most_common()
                why = ", ".join(r if len(reasons) == 1 else f"{n} {r}" for r, n in reasons)
                parts.append(f"{len(part)} {state} {proto} ports ({why})")
    if parts:
        lines.append("Not shown: " + ", ".join(parts))
    if shown:
        table = [("PORT", "STATE", "SERVICE", "REASON")]
        for port, proto, state, reason, ttl in shown:
            service = names.get((port, proto), "unknown")
            table.append((f"{port}/{proto}", state, service, reason + ttl))
        widths = [max(len(r[i]) for r in table) for i in range(3)]
        for r in table:
            lines.append(f"{r[0]:<{widths[0]}} {r[1]:<{widths[1]}} {r[2]:<{widths[2]}} {r[3]}")
    lines.append("")
    return lines


def _grepable_host(host: str, rows: Rows, names: ServiceNames) -> list[str]:
    folded, shown = _shown(rows)
    ports = ", ".join(
        f"{port}/{state}/{proto}//{names.get((port, proto), '')}///"
        for port, proto, state, _, _ in shown
    )
    line = f"Host: {host} ()\tPorts: {ports}"
    ignored = Counter(r[2] for r in rows if r[2] in folded)
    if ignored:
        state, n = max(ignored.items(), key=lambda kv: (kv[1], kv[0]))
        line += f"\tIgnored State: {state} ({n})"
    return [f"Host: {host} ()\tStatus: Up", line]


def nmap_text(result: ScanResult, kind: str) -> str:
    names = service_names()
    render = _normal_host if kind == "normal" else _grepable_host
    hosts = _rows_by_host(result.frame)
    lines = [text_mod.header(result.meta)]
    for host, rows in hosts.items():
        lines.extend(render(host, rows, names))
    lines.append(text_mod.footer(result.meta, len(hosts)))
    return "\n".join(lines) + "\n"


# --- JSON lines -----------------------------------------------------------------------------


def _json_value(column: str, value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if column in ("port", "reason_ttl", "pid"):
        return int(value)
    if column == "rtt_ms":
        return float(str(np.float32(value)))
    return str(value)


def jsonl_records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    columns = [c for c in (*COLUMNS, *OWNER_COLUMNS) if c in frame.columns]
    data = frame[columns].astype("object")
    for values in data.itertuples(index=False, name=None):
        yield {c: _json_value(c, v) for c, v in zip(columns, values, strict=True)}


def jsonl_text(frame: pd.DataFrame) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in jsonl_records(frame))
