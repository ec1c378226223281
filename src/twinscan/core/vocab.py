"""The project's vocabulary: techniques, port states, reasons, protocols, IANA ranges.

Every value is a ``str`` enum whose value is the exact string nmap prints, so the same
member serves as a CLI choice, a DataFrame categorical and a CSV/XML cell.
"""

from __future__ import annotations

from enum import StrEnum


class Proto(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class Technique(StrEnum):
    """A scan technique. ``letter`` is nmap's ``-s<letter>``, ``scaninfo`` its XML ``scaninfo@type``."""

    CONNECT = "connect"
    SYN = "syn"
    FIN = "fin"
    XMAS = "xmas"
    NULL = "null"
    UDP = "udp"
    ACK = "ack"
    WINDOW = "window"
    MAIMON = "maimon"
    FTP_BOUNCE = "ftp-bounce"

    @property
    def letter(self) -> str:
        return _LETTERS[self]

    @property
    def scaninfo(self) -> str:
        return _SCANINFO[self]

    @property
    def proto(self) -> Proto:
        return Proto.UDP if self is Technique.UDP else Proto.TCP

    @property
    def raw(self) -> bool:
        """True when the technique needs raw sockets (CAP_NET_RAW)."""
        return self not in (Technique.CONNECT, Technique.FTP_BOUNCE)

    @property
    def no_response_means_open(self) -> bool:
        """nmap's ``noresp_open_scan``: silence is ``open|filtered`` (FIN, NULL, Xmas, Maimon, UDP)."""
        return self in _NORESP_OPEN

    @classmethod
    def from_letter(cls, letter: str) -> Technique:
        for tech, let in _LETTERS.items():
            if let == letter:
                return tech
        raise ValueError(f"unknown scan type -s{letter}")

    @classmethod
    def from_scaninfo(cls, scaninfo: str) -> Technique:
        for tech, info in _SCANINFO.items():
            if info == scaninfo:
                return tech
        raise ValueError(f"unsupported nmap scan type {scaninfo!r}")


_LETTERS: dict[Technique, str] = {
    Technique.CONNECT: "T",
    Technique.SYN: "S",
    Technique.FIN: "F",
    Technique.XMAS: "X",
    Technique.NULL: "N",
    Technique.UDP: "U",
    Technique.ACK: "A",
    Technique.WINDOW: "W",
    Technique.MAIMON: "M",
    Technique.FTP_BOUNCE: "b",
}

# nmap.dtd: scaninfo type (syn|ack|bounce|connect|null|xmas|window|maimon|fin|udp|...)
_SCANINFO: dict[Technique, str] = {
    Technique.CONNECT: "connect",
    Technique.SYN: "syn",
    Technique.FIN: "fin",
    Technique.XMAS: "xmas",
    Technique.NULL: "null",
    Technique.UDP: "udp",
    Technique.ACK: "ack",
    Technique.WINDOW: "window",
    Technique.MAIMON: "maimon",
    Technique.FTP_BOUNCE: "bounce",
}

_NORESP_OPEN = frozenset(
    {Technique.FIN, Technique.NULL, Technique.XMAS, Technique.MAIMON, Technique.UDP}
)


class PortState(StrEnum):
    """nmap's six port states (portlist.cc ``statenum2str``)."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    UNFILTERED = "unfiltered"
    OPEN_FILTERED = "open|filtered"
    CLOSED_FILTERED = "closed|filtered"


class Reason(StrEnum):
    """nmap's reason strings (portreasons.cc), singular form as written in ``<state reason=...>``."""

    RESET = "reset"
    CONN_REFUSED = "conn-refused"
    SYN_ACK = "syn-ack"
    SPLIT_HANDSHAKE_SYN = "split-handshake-syn"
    UDP_RESPONSE = "udp-response"
    PROTO_RESPONSE = "proto-response"
    PERM_DENIED = "perm-denied"
    NET_UNREACH = "net-unreach"
    HOST_UNREACH = "host-unreach"
    PROTO_UNREACH = "proto-unreach"
    PORT_UNREACH = "port-unreach"
    ECHO_REPLY = "echo-reply"
    DEST_UNREACH = "dest-unreach"
    SOURCE_QUENCH = "source-quench"
    NET_PROHIBITED = "net-prohibited"
    HOST_PROHIBITED = "host-prohibited"
    ADMIN_PROHIBITED = "admin-prohibited"
    TIME_EXCEEDED = "time-exceeded"
    TIMESTAMP_REPLY = "timestamp-reply"
    ADDRESSMASK_REPLY = "addressmask-reply"
    NO_IPID_CHANGE = "no-ipid-change"
    IPID_CHANGE = "ipid-change"
    ARP_RESPONSE = "arp-response"
    ND_RESPONSE = "nd-response"
    TCP_RESPONSE = "tcp-response"
    NO_RESPONSE = "no-response"
    INIT_ACK = "init-ack"
    ABORT = "abort"
    LOCALHOST_RESPONSE = "localhost-response"
    SCRIPT_SET = "script-set"
    UNKNOWN_RESPONSE = "unknown-response"
    USER_SET = "user-set"
    NO_ROUTE = "no-route"
    BEYOND_SCOPE = "beyond-scope"
    REJECT_ROUTE = "reject-route"
    PARAM_PROBLEM = "param-problem"

    @classmethod
    def parse(cls, text: str) -> Reason:
        """Accept nmap's singular or plural form (``extrareasons`` uses plurals: ``resets``)."""
        try:
            return cls(text)
        except ValueError:
            pass
        for suffix in ("es", "s"):
            if text.endswith(suffix):
                try:
                    return cls(text[: -len(suffix)])
                except ValueError:
                    continue
        raise ValueError(f"unknown nmap reason {text!r}")


class IanaRange(StrEnum):
    """IANA's three port ranges (RFC 6335 section 6)."""

    WELL_KNOWN = "well-known"
    REGISTERED = "registered"
    DYNAMIC = "dynamic"

    @property
    def bounds(self) -> tuple[int, int]:
        return _IANA_BOUNDS[self]

    @classmethod
    def of(cls, port: int) -> IanaRange:
        """The range of one port, from the same bounds ``schema.iana_codes`` uses for columns."""
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range 0-65535")
        return next(r for r in cls if port <= r.bounds[1])


_IANA_BOUNDS: dict[IanaRange, tuple[int, int]] = {
    IanaRange.WELL_KNOWN: (0, 1023),
    IanaRange.REGISTERED: (1024, 49151),
    IanaRange.DYNAMIC: (49152, 65535),
}


class Engine(StrEnum):
    """Who produced a verdict."""

    NATIVE = "native"
    NMAP = "nmap"
    TRUTH = "truth"


class ScanEngine(StrEnum):
    """The engines ``scan --engine`` can run (the truth is not scanned: see ``lab truth``)."""

    NATIVE = "native"
    NMAP = "nmap"

    @property
    def engine(self) -> Engine:
        return Engine(self.value)


class OutputFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    XML = "xml"
    HTML = "html"
    NORMAL = "normal"
    GREPABLE = "grepable"
