"""What to scan and how: the validated request every engine receives (pure data)."""

from __future__ import annotations

import dataclasses

from twinscan.core.timing import Timing, resolve
from twinscan.core.vocab import Technique
from twinscan.request.ports import PortPlan


@dataclasses.dataclass(frozen=True, slots=True)
class BounceRelay:
    """``-b [user:pass@]host[:port]``: the FTP server that relays a bounce scan."""

    host: str
    port: int = 21
    user: str = "anonymous"
    password: str = "-wwwuser@"

    @classmethod
    def parse(cls, text: str) -> BounceRelay:
        user, password = "anonymous", "-wwwuser@"
        creds, at, rest = text.rpartition("@")
        if at:
            user, colon, pw = creds.partition(":")
            if colon:
                password = pw
        else:
            rest = text
        host, port = rest, 21
        if rest.count(":") == 1:
            host, port_s = rest.split(":")
            if not port_s.isdigit() or not 0 < int(port_s) < 65536:
                raise ValueError(f"bad FTP relay port {port_s!r}")
            port = int(port_s)
        if not host:
            raise ValueError("FTP relay host missing")
        return cls(host=host, port=port, user=user, password=password)


@dataclasses.dataclass(frozen=True, slots=True)
class ScanRequest:
    """A fully validated scan: resolved addresses, port lists, techniques, timing."""

    targets: tuple[str, ...]
    ports: PortPlan
    techniques: tuple[Technique, ...]
    timing: Timing = dataclasses.field(default_factory=resolve)
    randomize_ports: bool = True
    bounce: BounceRelay | None = None
    owners: bool = False
    defeat_icmp_ratelimit: bool = False
    #: The command line as the user typed it (recorded in scan metadata and XML).
    argv: tuple[str, ...] = ()

    def ports_for(self, technique: Technique) -> tuple[int, ...]:
        return self.ports.for_proto(technique.proto)

    def probes(self, technique: Technique) -> int:
        return len(self.targets) * len(self.ports_for(technique))
