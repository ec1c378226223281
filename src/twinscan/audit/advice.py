"""What to do about a finding, in words a person can act on (pure: facts in, text out).

Facts the CLI's glue gathers: the local process owning an open port (``OwnerFacts``, from the same
psutil lookup as ``twinscan who``) and nmap -sV's service and version (``ServiceFacts``).
The firewall rule is an nftables line for the ``inet filter`` table's ``input`` chain (the
table and chain ``nft`` creates with ``nft add table inet filter`` and
``nft add chain inet filter input '{ type filter hook input priority 0; }'``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from twinscan.audit.findings import Finding, Kind
from twinscan.core.vocab import PortState, Proto


@dataclasses.dataclass(frozen=True, slots=True)
class OwnerFacts:
    """The process behind a local open port (fields None where the OS would not say)."""

    pid: int | None
    process: str | None = None
    user: str | None = None
    cmdline: str | None = None
    #: The systemd unit the process runs in (``ssh.service``), from its cgroup.
    unit: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceFacts:
    """nmap -sV's view of an open port."""

    name: str = ""
    product: str = ""
    version: str = ""
    extrainfo: str = ""

    @property
    def text(self) -> str:
        """``ssh OpenSSH 9.2p1 (protocol 2.0)``; the service name alone if nothing more."""
        parts = [p for p in (self.name, self.product, self.version) if p]
        if self.extrainfo:
            parts.append(f"({self.extrainfo})")
        return " ".join(parts)


def nft_rule(host: str, proto: Proto, port: int, verdict: str = "drop") -> str:
    """``nft add rule inet filter input ip daddr 198.18.0.10 tcp dport 23 drop``.

    ``verdict`` ``accept`` gives ``nft insert rule ...`` (before the rule that blocks it).
    """
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    family = "ip" if ip.version == 4 else "ip6"
    verb = "insert" if verdict == "accept" else "add"
    return f"nft {verb} rule inet filter input {family} daddr {ip} {proto.value} dport {port} {verdict}"


_UNIT = re.compile(r"/([^/]+\.(?:service|scope))(?:/|$)")


def unit_from_cgroup(text: str) -> str | None:
    """The systemd unit in ``/proc/PID/cgroup`` text (``0::/system.slice/ssh.service``)."""
    for line in text.splitlines():
        path = line.rsplit(":", 1)[-1]
        units = _UNIT.findall(path)
        for unit in reversed(units):
            if unit.endswith(".service"):
                return str(unit)
    return None


def owner_text(owner: OwnerFacts) -> str:
    """``sshd (pid 812, user root: /usr/sbin/sshd -D)``."""
    if owner.pid is None:
        return "a process this user may not see (run as root to name it)"
    details = [f"pid {owner.pid}"]
    if owner.user:
        details.append(f"user {owner.user}")
    head = ", ".join(details)
    if owner.cmdline:
        head += f": {owner.cmdline}"
    return f"{owner.process or 'a process'} ({head})"


def stop_text(owner: OwnerFacts) -> str:
    """How to stop it: the systemd unit when there is one (a plain kill would be undone)."""
    if owner.pid is None:
        return "find it with `twinscan who PORT` as root"
    if owner.unit:
        return f"systemctl disable --now {owner.unit}"
    return f"kill {owner.pid} (and remove it from whatever starts it at boot)"


def advise(
    finding: Finding, owner: OwnerFacts | None = None, service: ServiceFacts | None = None
) -> str:
    """One paragraph: what is wrong, who is behind it, how to close, patch or block it."""
    cell = finding.cell
    where = f"{cell.proto.value}/{cell.port}"
    block = nft_rule(cell.host, cell.proto, cell.port)
    svc = f" It runs {service.text}: keep it patched." if service and service.text else ""
    who = ""
    if owner is not None:
        who = f" Owner: {owner_text(owner)}; stop it: {stop_text(owner)}."
    kind = finding.kind
    if kind is Kind.DENIED_OPEN:
        return (
            f"The policy denies {where} but it is open: close it (stop or reconfigure the "
            f"service).{who}{svc} Block it meanwhile: {block}"
        )
    if kind is Kind.UNEXPECTED_OPEN:
        return (
            f"{where} is open and the policy neither allows nor expects it: close it if it is "
            f"not needed, else add it to the rule's allow list.{who}{svc} To block it: {block}"
        )
    if kind is Kind.NOT_FIREWALLED:
        answered = {
            PortState.OPEN: "the service answered",
            PortState.CLOSED: "it was refused the way the host's own stack refuses (a firewall "
            "that rejects with a reset or port-unreachable looks the same)",
            PortState.UNFILTERED: "the probe reached the host's stack",
        }.get(cell.state, "it was not shown filtered")
        return (
            f"{where} must be firewalled but {answered} ({cell.state.value}, {cell.reason}): "
            f"no firewall drops it. Add: {block}{who}{svc}"
        )
    if kind is Kind.MISSING_EXPECTED:
        accept = nft_rule(cell.host, cell.proto, cell.port, "accept")
        if cell.state is PortState.CLOSED:
            fix = (
                "nothing listens there (or a firewall rejects it the way a closed port does): "
                f"start the service and enable it at boot; if your firewall rejects it: {accept}"
            )
        else:
            fix = (
                "something drops or rejects it before the host's stack: if it is your own "
                f"firewall, let it in: {accept}"
            )
        return f"{where} must be open but is {cell.state.value} ({cell.reason}): {fix}."
    if kind is Kind.UNCONFIRMED:
        how = (
            "scan it with -sS or -sT, which tell open from closed and filtered"
            if cell.proto is Proto.TCP
            else "a silent UDP service and a dropping firewall look alike: check on the host "
            "(`twinscan who PORT`) or ask the service with a real client"
        )
        return (
            f"{cell.technique} says {cell.state.value} for {where}, which cannot show whether "
            f"it is open ({finding.role.value} needs to know): {how}."
        )
    if kind is Kind.NEWLY_OPEN:
        return (
            f"{where} was {finding.baseline_state} in the baseline and is open now: if that was "
            f"not intended, close it.{who}{svc} To block it: {block}. If it was intended, "
            "make this scan the new baseline."
        )
    return (
        f"{where} was open in the baseline and is {cell.state.value} now ({cell.reason}): if "
        "the service should run, restart it; if it was retired, make this scan the new baseline."
    )


def fix_line(finding: Finding) -> str:
    """The one nftables line for the finding ('' when a firewall rule is not the fix)."""
    cell = finding.cell
    if finding.kind in (
        Kind.DENIED_OPEN,
        Kind.UNEXPECTED_OPEN,
        Kind.NOT_FIREWALLED,
        Kind.NEWLY_OPEN,
    ):
        return nft_rule(cell.host, cell.proto, cell.port)
    if finding.kind is Kind.MISSING_EXPECTED:
        return nft_rule(cell.host, cell.proto, cell.port, "accept")
    return ""
