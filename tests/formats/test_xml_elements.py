"""``nmap_xml_write.element`` writes what ElementTree writes for the same element (indented with
``space=""``, then a newline): the ``-oX`` writer builds its text without ElementTree, and every
attribute value of a scan (the command line, addresses, reason IPs) goes through it."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from twinscan.formats.nmap_xml_write import attr_text, element

# attribute names are the writer's own (plain words); values can be anything a command line or
# a file name holds, the characters XML escapes included
names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
values = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=3)
    | st.sampled_from(["&", "<", ">", '"', "'", "\r", "\n", "\t", "&amp;", "&#10;"]),
    max_size=8,
).map("".join)
#: values XML can hold at all (no control characters but tab, newline and carriage return)
legal = st.lists(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=3)
    | st.sampled_from(["\r", "\n", "\t", "&", "&amp;", '"', "<"]),
    max_size=8,
).map("".join)
attributes = st.dictionaries(names, values, max_size=4)
trees = st.recursive(
    st.tuples(names, attributes, st.just([])),
    lambda kids: st.tuples(names, attributes, st.lists(kids, max_size=3)),
    max_leaves=12,
)


def _ours(tree: tuple[str, dict[str, str], list[Any]]) -> str:
    tag, attrs, kids = tree
    return element(tag, attrs, [_ours(k) for k in kids])


def _theirs(tree: tuple[str, dict[str, str], list[Any]]) -> str:
    def build(node: tuple[str, dict[str, str], list[Any]]) -> ET.Element:
        tag, attrs, kids = node
        el = ET.Element(tag, attrs)
        el.extend(build(k) for k in kids)
        return el

    root = build(tree)
    ET.indent(root, space="", level=0)
    root.tail = "\n"
    return ET.tostring(root, encoding="unicode")


@given(trees)
def test_an_element_is_written_as_elementtree_writes_it(
    tree: tuple[str, dict[str, str], list[Any]],
) -> None:
    assert _ours(tree) == _theirs(tree)


@given(legal)
def test_an_attribute_value_reads_back_as_it_was(value: str) -> None:
    text = element("x", {"v": value})
    # (XML parsers normalise a raw CR; escaped, it survives, as it does through ElementTree)
    assert ET.fromstring(text).get("v") == value
    assert '"' not in attr_text(value) and "<" not in attr_text(value)
