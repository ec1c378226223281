"""Read nmap ``-oX`` output into the results schema (pure: no nmap binary, no network).

Every scanned port gets a row, including the ports nmap folds into ``<extraports>``: since
nmap 7.92 each ``<extrareasons>`` carries a ``ports="..."`` list, which is expanded. For older
XML without it, the folded ports are recovered from ``scaninfo@services`` minus the listed
ports when that is unambiguous.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from twinscan.core.errors import InputFileError, MalformedData
from twinscan.core.schema import PortVerdict, ScanMeta, ScanResult, to_frame, verdict_columns
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.request.ports import parse_port_list


class NmapXmlError(MalformedData):
    """The text is not usable nmap XML; the message says why."""


def read_nmap_xml_file(path: str | os.PathLike[str]) -> ScanResult:
    """Parse one nmap XML file; problems become ``InputFileError`` naming the file."""
    name = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(name, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(name, "is a directory, not an nmap XML file") from None
    except OSError as exc:
        raise InputFileError(name, exc.strerror or str(exc)) from None
    try:
        return parse_nmap_xml(data)
    except NmapXmlError as exc:
        raise InputFileError(name, str(exc)) from None


def parse_nmap_xml(data: str | bytes, *, engine: Engine = Engine.NMAP) -> ScanResult:
    """Parse nmap XML text (a file's bytes or python-nmap's ``get_nmap_last_output()``)."""
    root = _parse_root(data)
    techniques = _scan_types(root)
    services = _scan_services(root)
    verdicts: list[PortVerdict] = []
    for host_el in root.iter("host"):
        verdicts.extend(_host_verdicts(host_el, techniques, engine, services))
    meta = _meta(root, engine, tuple(techniques.values()))
    columns = verdict_columns(verdicts)  # (one technique: no frame until one is asked for)
    if columns is not None:
        return ScanResult(columns=columns, meta=meta)
    return ScanResult(frame=to_frame(verdicts), meta=meta)


def _parse_root(data: str | bytes) -> Element:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not data.strip():
        raise NmapXmlError("empty file, not nmap XML")
    try:
        root: Element = SafeET.fromstring(data, forbid_dtd=False)
    except DefusedXmlException as exc:
        raise NmapXmlError(f"refused hostile XML ({type(exc).__name__})") from None
    except ParseError as exc:
        raise NmapXmlError(f"malformed XML: {exc}") from None
    if root.tag != "nmaprun":
        raise NmapXmlError(f"not nmap XML output (root element <{root.tag}>, expected <nmaprun>)")
    return root


def _scan_types(root: Element) -> dict[Proto, Technique]:
    techniques: dict[Proto, Technique] = {}
    for info in root.findall("scaninfo"):
        proto_s = info.get("protocol", "")
        type_s = info.get("type", "")
        try:
            proto = Proto(proto_s)
        except ValueError:
            raise NmapXmlError(f"unsupported scaninfo protocol {proto_s!r}") from None
        try:
            techniques[proto] = Technique.from_scaninfo(type_s)
        except ValueError as exc:
            raise NmapXmlError(str(exc)) from None
    return techniques


def _scan_services(root: Element) -> dict[Proto, list[int]]:
    out: dict[Proto, list[int]] = {}
    for info in root.findall("scaninfo"):
        try:
            out[Proto(info.get("protocol", ""))] = parse_port_list(info.get("services", ""))
        except ValueError:
            continue
    return out


def _host_address(host_el: Element) -> str:
    addrs = {a.get("addrtype"): a.get("addr") for a in host_el.findall("address")}
    for kind in ("ipv4", "ipv6"):
        addr = addrs.get(kind)
        if addr:
            return addr
    raise NmapXmlError("a <host> has no IPv4 or IPv6 <address>")


def _host_verdicts(
    host_el: Element,
    techniques: dict[Proto, Technique],
    engine: Engine,
    services: dict[Proto, list[int]],
) -> list[PortVerdict]:
    host = _host_address(host_el)
    ports_el = host_el.find("ports")
    if ports_el is None:
        return []
    out: list[PortVerdict] = []
    listed: dict[Proto, set[int]] = {}
    for port_el in ports_el.findall("port"):
        verdict = _port_verdict(port_el, host, techniques, engine)
        out.append(verdict)
        listed.setdefault(verdict.proto, set()).add(verdict.port)
    for extra in ports_el.findall("extraports"):
        out.extend(_extraports(extra, host, techniques, listed, engine, services))
    return out


def _technique_for(proto: Proto, techniques: dict[Proto, Technique]) -> Technique:
    try:
        return techniques[proto]
    except KeyError:
        raise NmapXmlError(f"{proto} ports but no <scaninfo> for {proto}") from None


def _state(text: str | None) -> PortState:
    try:
        return PortState(text or "")
    except ValueError:
        raise NmapXmlError(f"unknown port state {text!r}") from None


def _reason(text: str | None) -> Reason:
    try:
        return Reason.parse(text or "")
    except ValueError as exc:
        raise NmapXmlError(str(exc)) from None


def _int(text: str | None, what: str) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise NmapXmlError(f"{what} is not a number: {text!r}") from None


def _port_verdict(
    port_el: Element, host: str, techniques: dict[Proto, Technique], engine: Engine
) -> PortVerdict:
    proto_s = port_el.get("protocol", "")
    try:
        proto = Proto(proto_s)
    except ValueError:
        raise NmapXmlError(f"unsupported port protocol {proto_s!r}") from None
    port = _int(port_el.get("portid"), "portid")
    if not 0 <= port <= 65535:
        raise NmapXmlError(f"portid {port} out of range")
    state_el = port_el.find("state")
    if state_el is None:
        raise NmapXmlError(f"port {port}/{proto} has no <state>")
    ttl_s = state_el.get("reason_ttl")
    return PortVerdict(
        engine=engine,
        technique=_technique_for(proto, techniques),
        host=host,
        proto=proto,
        port=port,
        state=_state(state_el.get("state")),
        reason=_reason(state_el.get("reason")),
        reason_ttl=_int(ttl_s, "reason_ttl") if ttl_s is not None else None,
        reason_ip=state_el.get("reason_ip"),
    )


def _extraports(
    extra: Element,
    host: str,
    techniques: dict[Proto, Technique],
    listed: dict[Proto, set[int]],
    engine: Engine,
    services: dict[Proto, list[int]],
) -> list[PortVerdict]:
    state = _state(extra.get("state"))
    count = _int(extra.get("count"), "extraports count")
    out: list[PortVerdict] = []
    reasons = extra.findall("extrareasons")
    with_ports = [r for r in reasons if r.get("ports") is not None]
    if reasons and len(with_ports) == len(reasons):
        for er in reasons:
            proto_s = er.get("proto", "tcp")
            try:
                proto = Proto(proto_s)
            except ValueError:
                raise NmapXmlError(f"unsupported extrareasons proto {proto_s!r}") from None
            reason = _reason(er.get("reason"))
            try:
                ports = parse_port_list(er.get("ports", ""))
            except ValueError as exc:
                raise NmapXmlError(f"bad extrareasons ports list: {exc}") from None
            technique = _technique_for(proto, techniques)
            for port in ports:
                out.append(PortVerdict(engine, technique, host, proto, port, state, reason))
                listed.setdefault(proto, set()).add(port)
        if len(out) != count:
            raise NmapXmlError(
                f"extraports {state} count={count} but extrareasons list {len(out)} ports"
            )
        return out
    # nmap < 7.92: no per-port lists. The folded ports are the scanned ports nmap did not
    # list, which is unambiguous when one protocol was scanned and one reason given.
    if len(techniques) == 1 and len(reasons) <= 1 and services:
        proto = next(iter(techniques))
        remaining = sorted(set(services.get(proto, ())) - listed.get(proto, set()))
        if len(remaining) == count:
            reason = _reason(reasons[0].get("reason")) if reasons else Reason.NO_RESPONSE
            technique = techniques[proto]
            listed.setdefault(proto, set()).update(remaining)
            return [
                PortVerdict(engine, technique, host, proto, p, state, reason) for p in remaining
            ]
    raise NmapXmlError(
        f"<extraports state={state.value!r}> without per-port lists "
        "(nmap older than 7.92); rerun with a current nmap or -d3 so every port is listed"
    )


def _timestamp(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromtimestamp(int(text), tz=dt.UTC)
    except (ValueError, OverflowError):
        return None


def _meta(root: Element, engine: Engine, techniques: tuple[Technique, ...]) -> ScanMeta:
    start = _timestamp(root.get("start")) or dt.datetime.fromtimestamp(0, tz=dt.UTC)
    finished = root.find("runstats/finished")
    end = start
    incomplete = True
    if finished is not None:
        elapsed = finished.get("elapsed")
        try:
            end = start + dt.timedelta(seconds=float(elapsed or "0"))
        except ValueError:
            end = _timestamp(finished.get("time")) or start
        incomplete = finished.get("exit", "success") != "success"
    return ScanMeta(
        engine=engine,
        start=start,
        end=end,
        arguments=root.get("args", ""),
        engine_version=f"nmap {root.get('version', '?')}",
        techniques=techniques,
        incomplete=incomplete,
    )
