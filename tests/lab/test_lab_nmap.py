"""The truth table against nmap itself: every technique, every host, the whole port universe.

nmap -T4 -n -Pn runs inside the lab's scanner namespace (three scans at a time); every cell must
agree with ``twinscan.lab.truth`` except the documented known nmap errors
(``twinscan.lab.verify.KNOWN_NMAP_ERRORS``), which are capped so a systematic failure still fails.
"""

from __future__ import annotations

import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from twinscan.core.vocab import Technique
from twinscan.formats.nmap_xml_read import parse_nmap_xml
from twinscan.lab.truth import TECHNIQUES
from twinscan.lab.verify import Mismatch, compare, nmap_argv

pytestmark = [
    pytest.mark.lab,
    pytest.mark.nmap,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nmap") is None, reason="needs nmap"),
]

#: At most this share of a lossy host's cells may have lost every retransmission.
MAX_LOSS_SHARE = 0.05


@pytest.fixture(scope="module")
def nmap_results(lab):  # type: ignore[no-untyped-def]
    def one(technique: Technique):  # type: ignore[no-untyped-def]
        proc = lab.run(nmap_argv(lab.spec, technique), timeout=300)
        return technique, proc

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, TECHNIQUES))


@pytest.mark.parametrize("technique", TECHNIQUES, ids=str)
def test_nmap_agrees_with_truth(lab, nmap_results, technique: Technique) -> None:  # type: ignore[no-untyped-def]
    proc = nmap_results[technique]
    assert proc.returncode == 0, proc.stderr
    frame = parse_nmap_xml(proc.stdout).frame
    mismatches = compare(lab.spec, lab.truth, frame)
    unexplained = [m for m in mismatches if m.known is None]
    assert not unexplained, "\n".join(map(str, unexplained))
    _check_loss_budget(lab, technique, mismatches)


def _check_loss_budget(lab, technique: Technique, mismatches: list[Mismatch]) -> None:  # type: ignore[no-untyped-def]
    lost = Counter(m.host for m in mismatches if m.known == "loss")
    truth = lab.truth[lab.truth["technique"].astype(str) == technique.value]
    for host, n in lost.items():
        cells = int((truth["host"].astype(str) == host).sum())
        assert n <= max(2, MAX_LOSS_SHARE * cells), f"{host}: {n} of {cells} cells lost"


def test_every_cell_of_the_universe_was_scanned(lab, nmap_results) -> None:  # type: ignore[no-untyped-def]
    for technique, proc in nmap_results.items():
        frame = parse_nmap_xml(proc.stdout).frame
        truth = lab.truth[lab.truth["technique"].astype(str) == technique.value]
        assert len(frame) == len(truth), technique
