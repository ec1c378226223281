"""FTP bounce side by side with ``nmap -b`` through the lab's relay (slow: nmap waits 10 s per
stalled LIST).

Every cell must match nmap, except where nmap's LIST stalls: the lab relay (pyftpdlib) opens the
data connection when PORT arrives, the target's listener accepts and closes it at once, so
nmap's LIST finds no data connection, gets ``150`` and silence, sends ABOR and reports an open
port ``filtered``. twinscan reads such a relay by its PORT replies and says ``open``, as the truth
table does.
"""

from __future__ import annotations

import io
import shutil
import sys

import pytest

from twinscan.core.vocab import Technique
from twinscan.formats.csv import read_csv
from twinscan.formats.nmap_xml_read import parse_nmap_xml
from twinscan.lab.verify import compare, nmap_argv
from twinscan.request.ports import format_port_list

pytestmark = [
    pytest.mark.lab,
    pytest.mark.nmap,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nmap") is None, reason="needs nmap"),
]


def _cells(frame):  # type: ignore[no-untyped-def]
    return {
        (str(h), int(p)): (str(s), str(r))
        for h, p, s, r in zip(
            frame["host"], frame["port"], frame["state"], frame["reason"], strict=True
        )
    }


def test_bounce_side_by_side_with_nmap(lab) -> None:  # type: ignore[no-untyped-def]
    spec = lab.spec
    relay = spec.host(spec.scan.bounce_relay)
    targets = [spec.host(n).address for n in spec.scan.bounce_targets]
    ports = format_port_list(spec.scan.bounce_ports)
    theirs = lab.run(nmap_argv(spec, Technique.FTP_BOUNCE), timeout=400)
    assert theirs.returncode == 0, theirs.stderr
    ours = lab.run(
        [sys.executable, "-m", "twinscan", "scan", "-b", f"anonymous:lab@{relay.address}:{relay.ftp}",
         "-p", ports, *targets, "--csv", "-"],
        timeout=120,
    )  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    nmap_frame = parse_nmap_xml(theirs.stdout).frame
    our_frame = read_csv(io.StringIO(ours.stdout))
    assert not compare(spec, lab.truth, our_frame)
    nmap_cells, our_cells = _cells(nmap_frame), _cells(our_frame)
    assert nmap_cells.keys() == our_cells.keys()
    stalled = []
    for key, (state, reason) in nmap_cells.items():
        if (state, reason) != our_cells[key]:
            assert (state, our_cells[key][0]) == ("filtered", "open"), key
            stalled.append(key)
    # the reason nmap writes for every bounce verdict is the one twinscan writes
    assert set(nmap_frame["reason"].astype(str)) == {"no-response"}
    # nmap agrees on the closed ports, which is most of the table
    assert len(stalled) < len(nmap_cells) // 2
