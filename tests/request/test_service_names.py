"""``ServiceNames``: the lazy nmap-services lookup gives what the full parser gives."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.request.ports import ServiceNames, _parse_services, load_services, service_names


def _reference(text: str) -> dict[tuple[int, str], str]:
    """What ``load_services`` makes of ``text`` (the first entry of a key)."""
    out: dict[tuple[int, str], str] = {}
    for e in _parse_services(text):
        out.setdefault((e.port, e.proto.value), e.name)
    return out


TRICKY = (
    "# Fields: name port/proto frequency comment\n"
    "#commented\t22/tcp\t0.5\n"
    "ssh\t22/tcp\t0.182286\t# Secure Shell Login\n"
    "notssh\t122/tcp\t0.001\n"
    "nofreq\t23/tcp\n"
    "badfreq\t24/tcp\tx\n"
    "comment\t25/tcp\t0.1\t# see\t26/tcp\t0.2\n"
    "udp-only\t53/udp\t0.2\n"
    "\n"
    "again\t22/tcp\t0.1\n"
    "ab#c\t27/tcp\t0.1\n"
    "last\t99/tcp\t0.3#c"
)


def test_lazy_lookups_match_the_full_parser_on_tricky_lines() -> None:
    names = ServiceNames(TRICKY.encode())
    want = _reference(TRICKY)
    for port in range(0, 130):
        for proto in ("tcp", "udp"):
            assert names.get((port, proto)) == want.get((port, proto)), (port, proto)
            assert names._index is None or len(names._found) >= names.LAZY_LOOKUPS


def test_many_lookups_index_the_whole_file_once() -> None:
    names = ServiceNames(TRICKY.encode())
    for _ in range(3 * names.LAZY_LOOKUPS):  # one port asked again and again: one search
        assert names.get((22, "tcp")) == "ssh"
    for port in range(1000, 1000 + names.LAZY_LOOKUPS - 1):
        assert names.get((port, "tcp")) is None
    assert names._index is None  # still searching the bytes
    assert names.get((53, "udp"), "unknown") == "udp-only"
    assert names._index == _reference(TRICKY)
    assert dict(names) == _reference(TRICKY) and len(names) == len(_reference(TRICKY))


def test_a_space_separated_file_is_indexed_at_once() -> None:
    text = "ssh 22/tcp 0.18 # spaces, not tabs\nhttp 80/tcp 0.48\n"
    names = ServiceNames(text.encode())
    assert names._index == _reference(text) == {(22, "tcp"): "ssh", (80, "tcp"): "http"}


def test_the_installed_file_looks_up_as_load_services_reads_it() -> None:
    installed = service_names()
    full = {(e.port, e.proto.value): e.name for e in load_services()}
    if not full:  # pragma: no cover - nmap is installed by make test
        assert installed.get((22, "tcp")) is None
        return
    keys = random.Random(1).sample(sorted(full), 25) + [(22, "tcp"), (65535, "udp"), (0, "tcp")]
    lazy = ServiceNames(installed._data)
    for key in keys:
        assert lazy.get(key) == full.get(key), key
    assert dict(ServiceNames(installed._data)) == full


_name = st.text("abcdefghijklmnopqrstuvwxyz-_#", min_size=1, max_size=8)
_line = st.one_of(
    st.builds(
        lambda n, p, pr, f, sep, c: f"{n}{sep}{p}/{pr}{sep}{f}{c}",
        _name,
        st.integers(0, 200),
        st.sampled_from(["tcp", "udp", "sctp"]),
        st.sampled_from(["0.1", "1e-3", "x", ""]),
        st.sampled_from(["\t"]),
        st.sampled_from(["", "\t# a comment", "\t# c\t7/tcp\t0.1"]),
    ),
    st.text("#\t /0123456789abctcpud.", max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_line, max_size=30),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from(["tcp", "udp"])), max_size=40),
)
def test_lookups_match_the_parser_on_any_tab_separated_file(
    lines: list[str], keys: list[tuple[int, str]]
) -> None:
    text = "\n".join(lines)
    want = _reference(text)
    names = ServiceNames(text.encode())
    for key in keys:
        assert names.get(key) == want.get(key), (key, text)
    assert dict(ServiceNames(text.encode())) == want  # the whole-file index too
