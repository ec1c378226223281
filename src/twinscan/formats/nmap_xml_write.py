"""nmap-compatible XML (``-oX``) from a scan result.

The XML follows nmap's ``-oX`` layout closely enough that nmap's own ``ndiff``, python-nmap's
``analyse_nmap_xml_scan`` and twinscan's reader (``formats.nmap_xml_read``) accept it: one
``<scaninfo>`` per protocol, a ``<host>`` per address and, as nmap does (portlist.cc
``isIgnoredState``), every non-open state with more than 25 ports of a host folded into
``<extraports>`` whose ``<extrareasons>`` list the ports (nmap >= 7.92 style), so ndiff sees the
same folding in both files. nmap XML holds one scan type per protocol, so a result with two TCP
techniques needs one file per technique (``write_nmap_xml_per_technique``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from twinscan.core.errors import UsageError
from twinscan.core.schema import ResultColumns, ScanMeta, ScanResult, conform
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.formats.host_rows import FOLD_ABOVE, HostRows, host_rows
from twinscan.formats.outpaths import Dest, text_out
from twinscan.request.ports import format_port_list

if TYPE_CHECKING:
    from xml.etree import ElementTree as ET

    from twinscan.request.ports import ServiceNames

#: nmap folds a state into <extraports> when a host has more ports than this in it (and the
#: state is not open: ``host_rows``).
MAX_PER_STATE = FOLD_ABOVE


def techniques_by_proto(runs: Iterable[ResultColumns]) -> dict[Proto, Technique]:
    """The one technique per protocol in ``runs``; ``UsageError`` if a protocol has two."""
    out: dict[Proto, Technique] = {}
    for cols in runs:
        if not len(cols):
            continue
        proto, tech = cols.proto, cols.technique
        if proto in out and out[proto] is not tech:
            raise UsageError(
                f"nmap XML holds one {proto} scan type per file, this result has "
                f"{out[proto]} and {tech}: write one file per technique"
            )
        out[proto] = tech
    return out


def _services() -> ServiceNames:
    from twinscan.formats.text_report import service_names

    return service_names()


def _ts(value: dt.datetime) -> str:
    return str(int(value.timestamp()))


def _timestr(value: dt.datetime) -> str:
    return value.astimezone().strftime("%a %b %d %H:%M:%S %Y")


def _folded_states(rows: HostRows) -> list[str]:
    """The states folded for one host, in nmap's order (most ports first)."""
    order = {s.value: i for i, s in enumerate(PortState)}
    return sorted(rows.folded, key=lambda s: (-rows.counts[s], order[s]))


def _scanner(meta: ScanMeta) -> tuple[str, str]:
    """``(scanner, version)`` of the ``<nmaprun>`` header: who really made the verdicts.

    A result from the nmap engine (or read from nmap's XML) names nmap, its version and the
    nmap command line it ran (``meta.arguments``); anything else names twinscan, its version
    and the twinscan command line.
    """
    from twinscan import __version__

    if meta.engine is Engine.NMAP:
        name, _, version = meta.engine_version.partition(" ")
        if name == "nmap" and version:
            return "nmap", version
        return "nmap", meta.engine_version or "?"
    return "twinscan", __version__


def scanned_ports(runs: Sequence[ResultColumns]) -> dict[Technique, list[int]]:
    """The ports of each protocol's technique that have a verdict in ``runs`` (its
    ``<scaninfo>``); ``UsageError`` if a protocol has two techniques."""
    by_proto = techniques_by_proto(runs)
    ports: dict[Proto, set[int]] = {proto: set() for proto in by_proto}
    for cols in runs:
        if len(cols):
            ports[cols.proto].update(cols.port)  # (ints: ``ResultColumns.port``)
    return {tech: sorted(ports[proto]) for proto, tech in by_proto.items()}


#: What ElementTree's serializer writes for each character an attribute value may not hold.
_ATTR_ESCAPES = (
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ('"', "&quot;"),
    ("\r", "&#13;"),
    ("\n", "&#10;"),
    ("\t", "&#09;"),
)


def attr_text(value: str) -> str:
    """``value`` escaped for a double-quoted XML attribute, as ``xml.etree.ElementTree``
    writes it (``&`` first, so no entity is escaped twice)."""
    for char, entity in _ATTR_ESCAPES:
        if char in value:
            value = value.replace(char, entity)
    return value


def element(tag: str, attrs: Mapping[str, str] | None = None, children: Sequence[str] = ()) -> str:
    """One element as nmap's layout writes it: every tag on its own line (``children`` are
    elements made by this function), then a newline. It is what ``ElementTree.indent(el,
    space="")`` and ``ElementTree.tostring`` give (tests/formats: held to them), without
    importing ElementTree and its parser: a 1000-port scan writes its ``-oX`` in 4-5 ms, not 7-9."""
    head = tag + "".join(f' {k}="{attr_text(v)}"' for k, v in (attrs or {}).items())
    if not children:
        return f"<{head} />\n"
    return f"<{head}>\n{''.join(children)}</{tag}>\n"


def xml_prolog(meta: ScanMeta) -> str:
    """The XML declaration and doctype (and, for nmap's verdicts, who wrote the file)."""
    from twinscan import __version__

    text = '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
    scanner, version = _scanner(meta)
    if scanner != "twinscan":
        made_by = f"{scanner} {version}".replace("--", "- -")
        text += f"<!-- written by twinscan {__version__} from the verdicts of {made_by} -->\n"
    return text


def xml_head(meta: ScanMeta, ports: Mapping[Technique, Sequence[int]]) -> str:
    """``<nmaprun>``'s start tag, one ``<scaninfo>`` per protocol (TCP, then UDP) and the
    verbosity: everything before the first ``<host>``."""
    scanner, version = _scanner(meta)
    attrs = {
        "scanner": scanner,
        "args": meta.arguments,
        "start": _ts(meta.start),
        "startstr": _timestr(meta.start),
        "version": version,
        "xmloutputversion": "1.05",
    }
    children = []
    by_proto = {tech.proto: (tech, ports[tech]) for tech in ports}
    for proto in (Proto.TCP, Proto.UDP):
        if proto not in by_proto:
            continue
        tech, numbers = by_proto[proto]
        info = {
            "type": tech.scaninfo,
            "protocol": proto.value,
            "numservices": str(len(numbers)),
            "services": format_port_list(numbers),
        }
        children.append(element("scaninfo", info))
    children.append(element("verbose", {"level": "0"}))
    children.append(element("debugging", {"level": "0"}))
    text = element("nmaprun", attrs, children)
    closing = "</nmaprun>\n"
    assert text.endswith(closing)  # the root has children: it is never written as <nmaprun/>
    return text[: -len(closing)]


def host_xml(
    rows: HostRows,
    host: str,
    start: dt.datetime,
    end: dt.datetime,
    services: ServiceNames,
) -> str:
    """One host's ``<host>`` element (``rows``: its listed rows in ``sort_frame`` order) as text."""
    ports: list[str] = []
    for state in _folded_states(rows):
        groups = rows.folded[state]
        reasons = [
            element(
                "extrareasons",
                {
                    "reason": Reason(reason).value,
                    "count": str(len(numbers)),
                    "proto": proto,
                    "ports": format_port_list(numbers),
                },
            )
            for (reason, proto), numbers in sorted(
                groups.items(), key=lambda g: (-len(g[1]), str(g[0]))
            )
        ]
        count = str(rows.counts[state])
        ports.append(element("extraports", {"state": state, "count": count}, reasons))
    for port, proto, state, reason, ttl, ip in rows.listed:
        attrs = {"state": state, "reason": reason, "reason_ttl": str(ttl or 0)}
        if ip:
            attrs["reason_ip"] = ip
        inner = [element("state", attrs)]
        name = services.get((port, proto))
        if name:
            inner.append(element("service", {"name": name, "method": "table", "conf": "3"}))
        ports.append(element("port", {"protocol": proto, "portid": str(port)}, inner))
    kind = "ipv6" if ":" in host else "ipv4"  # (``host``: an address, as the result holds it)
    inner = [
        element("status", {"state": "up", "reason": "user-set", "reason_ttl": "0"}),
        element("address", {"addr": host, "addrtype": kind}),
        element("hostnames"),
        element("ports", None, ports),
    ]
    return element("host", {"starttime": _ts(start), "endtime": _ts(end)}, inner)


def xml_foot(meta: ScanMeta, hosts: int) -> str:
    """``<runstats>`` (end time, host count, ``exit="error"`` for an interrupted scan) and the
    closing tag."""
    scanner, _ = _scanner(meta)
    n = hosts
    finished = {
        "time": _ts(meta.end),
        "timestr": _timestr(meta.end),
        "summary": f"{'Nmap' if scanner == 'nmap' else 'twinscan'} done; {n} IP address{'es' if n != 1 else ''} ({n} host"
        f"{'s' if n != 1 else ''} up) scanned in {meta.elapsed_s:.2f} seconds",
        "elapsed": f"{meta.elapsed_s:.2f}",
        "exit": "error" if meta.incomplete else "success",
    }
    hosts_el = element("hosts", {"up": str(n), "down": "0", "total": str(n)})
    return element("runstats", None, [element("finished", finished), hosts_el]) + "</nmaprun>\n"


def nmap_xml_text(result: ScanResult) -> str:
    """``result`` as nmap ``-oX`` XML text: the same pieces the streaming writer appends."""
    runs = result.column_runs()
    meta = result.meta
    services = _services()
    parts = [xml_prolog(meta), xml_head(meta, scanned_ports(runs))]
    hosts = host_rows(runs, canonical=True)
    for host, rows in hosts.items():
        parts.append(host_xml(rows, host, meta.start, meta.end, services))
    parts.append(xml_foot(meta, len(hosts)))
    return "".join(parts)


def nmap_xml_tree(result: ScanResult) -> ET.ElementTree[ET.Element[str]]:
    """The ``<nmaprun>`` document for ``result`` (pure)."""
    from xml.etree import ElementTree as ET

    body = nmap_xml_text(result).split("<!DOCTYPE nmaprun>\n", 1)[1]
    return ET.ElementTree(ET.fromstring(body))


def write_nmap_xml(result: ScanResult, dest: Dest) -> None:
    """Write ``result`` as nmap ``-oX`` XML (one technique per protocol)."""
    text = nmap_xml_text(result)
    with text_out(dest) as out:
        out.write(text)


def split_by_technique(result: ScanResult) -> dict[Technique, ScanResult]:
    """One result per technique (same metadata, narrowed ``techniques``)."""
    import dataclasses

    out: dict[Technique, ScanResult] = {}
    techs = result.frame["technique"].astype(str)
    for tech_s in dict.fromkeys(techs):
        tech = Technique(tech_s)
        part = conform(result.frame[techs == tech_s])
        meta = dataclasses.replace(result.meta, techniques=(tech,))
        out[tech] = ScanResult(frame=part, meta=meta)
    return out


def write_nmap_xml_per_technique(
    result: ScanResult, directory: str | os.PathLike[str], prefix: str
) -> list[Path]:
    """``<directory>/<prefix>-<technique>.xml`` for each technique; returns the paths."""
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for tech, part in split_by_technique(result).items():
        path = out_dir / f"{prefix}-{tech.value}.xml"
        write_nmap_xml(part, path)
        paths.append(path)
    return paths
