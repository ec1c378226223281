"""The lab's truth is independent of the engines' rules, and the two agree on every cell.

``twinscan.lab.truth`` derives nmap's verdicts from its own table (what a probe meets on a host x
technique); ``twinscan.core.rules.classify`` turns a reply into a verdict for the engines. Here
each situation is turned into the reply a Linux host sends (a small table of this test's own),
and ``rules.classify`` of that reply must equal the truth -- on every cell of the default and
the bench lab specs, and on every (situation, technique) pair of the truth's table.
"""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

from twinscan.core import rules
from twinscan.core.vocab import Technique
from twinscan.lab import truth
from twinscan.lab.spec import Action, load_spec
from twinscan.lab.truth import TECHNIQUES, expected, situation, truth_verdicts

T = Technique
REPO = Path(__file__).resolve().parents[2]
SPECS = [REPO / "fixtures" / "labs" / "default.toml", REPO / "fixtures" / "labs" / "bench.toml"]

ICMP_CODE = {
    Action.NET_UNREACHABLE.value: 0,
    Action.PORT_UNREACHABLE.value: 3,
    Action.HOST_PROHIBITED.value: 10,
    Action.ADMIN_PROHIBITED.value: 13,
}
#: Linux icmp_err_convert[]: connect()'s errno for each ICMP unreachable code.
CONNECT_ERRNO = {0: errno.ENETUNREACH, 3: errno.ECONNREFUSED, 10: errno.EHOSTUNREACH,
                 13: errno.EHOSTUNREACH}  # fmt: skip
ACK_SET = (T.ACK, T.WINDOW, T.MAIMON)


def wire_reply(where: str, technique: Technique) -> rules.Reply | None:
    """The reply a Linux lab host sends for a probe that meets ``where``."""
    if technique is T.UDP:
        if where in ICMP_CODE:
            return rules.IcmpReply(3, ICMP_CODE[where])
        return {truth.UDP_CLOSED: rules.IcmpReply(3, 3), truth.UDP_SERVICE: rules.UdpReply()}.get(
            where
        )
    if technique is T.CONNECT:
        if where == truth.DROP:
            return rules.ConnectOutcome(errno.ETIMEDOUT)
        if where in ICMP_CODE:
            return rules.ConnectOutcome(CONNECT_ERRNO[ICMP_CODE[where]])
        return rules.ConnectOutcome(0 if where == truth.LISTENER else errno.ECONNREFUSED)
    if technique is T.FTP_BOUNCE:
        if where == truth.DROP:
            return rules.BounceOutcome(truth.BOUNCE_TIMEOUT)
        return rules.BounceOutcome(
            truth.BOUNCE_OPEN if where == truth.LISTENER else truth.BOUNCE_REFUSED
        )
    if where == truth.DROP:
        return None
    if where in ICMP_CODE:
        return rules.IcmpReply(3, ICMP_CODE[where])
    if where == truth.LISTENER:
        if technique is T.SYN:
            return rules.TcpReply(rules.SYN | rules.ACK, 65160)
        return rules.TcpReply(rules.RST, 0) if technique in ACK_SET else None
    return rules.TcpReply(rules.RST | rules.ACK, 0)  # tcp-reset, or nothing listening


def test_truth_does_not_import_the_rules() -> None:
    tree = ast.parse(Path(truth.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            imported.add(mod)
            imported |= {f"{mod}.{a.name}" for a in node.names}
    assert not any(m.startswith("twinscan.core.rules") for m in imported), imported
    assert "twinscan.core.rules" not in {m for m in imported if m.endswith(".rules")}


CELLS = [(w, T.UDP) for w in truth.UDP_TABLE] + [
    (w, t) for w, row in truth.TCP_TABLE.items() for t in row
]


@pytest.mark.parametrize(("where", "technique"), CELLS, ids=str)
def test_every_table_cell_agrees_with_rules(where: str, technique: Technique) -> None:
    if technique is T.UDP:
        want = truth.UDP_TABLE[where]
    else:
        want = truth.TCP_TABLE[where][technique]
    got = rules.classify(technique, wire_reply(where, technique))
    assert (got.state, got.reason) == tuple(want)


def test_the_table_covers_every_technique() -> None:
    assert {t for _, t in CELLS} == set(TECHNIQUES)


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.name)
def test_every_spec_cell_agrees_with_rules(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    cells = truth_verdicts(spec)
    assert cells, "the spec has no cells"
    by_host = {h.address: h for h in spec.hosts}
    techniques_seen = set()
    for cell in cells:
        host = by_host[cell.host]
        where = situation(host, cell.technique, cell.port)
        want = rules.classify(cell.technique, wire_reply(where, cell.technique))
        assert (cell.state, cell.reason) == (want.state, want.reason), (cell, where)
        assert expected(host, cell.technique, cell.port) == (cell.state, cell.reason)
        assert cell.state in rules.LEGAL_STATES[cell.technique]
        techniques_seen.add(cell.technique)
    assert T.UDP in techniques_seen and T.SYN in techniques_seen
