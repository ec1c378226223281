"""Which addresses twinscan agrees to scan.

By default only loopback (127.0.0.0/8, ::1), the lab range 198.18.0.0/16, and addresses
assigned to this machine's (or this network namespace's) own interfaces. Anything else needs
``--allow-external``, which states that the user is authorised to scan that network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from twinscan.errors import TargetError

LAB_NETWORK = ipaddress.ip_network("198.18.0.0/16")


def local_addresses() -> set[str]:
    import psutil

    out: set[str] = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            out.add(a.address.split("%", 1)[0])
    return out


def is_local(address: str, local: set[str] | None = None) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return True
    return address in (local if local is not None else local_addresses())


def check_targets(addresses: Iterable[str], *, allow_external: bool = False) -> None:
    if allow_external:
        return
    local: set[str] | None = None
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if ip.is_loopback or ip in LAB_NETWORK:
            continue
        if local is None:
            local = local_addresses()
        if address in local:
            continue
        raise TargetError(
            f"refusing to scan {address}: not loopback, the lab (198.18.0.0/16) or a local "
            "address; pass --allow-external only for networks you are authorised to scan"
        )
