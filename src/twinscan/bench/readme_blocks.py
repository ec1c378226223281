"""Generated blocks in the README: ``<!-- results:NAME:begin -->`` ... ``<!-- results:NAME:end -->``.

The body between the markers is written by a command (its first line, an HTML comment, names
it); nothing between them is typed by hand. Pure text functions, plus ``update_readme`` which
applies one to a file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
BEGIN_RE: Final = re.compile(r"<!-- results:([A-Za-z0-9_-]+):begin -->")


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of block ``name``."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"not a block name: {name!r}")
    return f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"


def _span(text: str, name: str) -> tuple[int, int]:
    """Where block ``name``'s body starts (after the begin marker's line) and ends."""
    begin, end = markers(name)
    for marker in (begin, end):
        count = text.count(marker)
        if count != 1:
            what = "missing" if count == 0 else f"present {count} times"
            raise ValueError(f"{marker} is {what}")
    start, stop = text.index(begin) + len(begin), text.index(end)
    if stop < start:
        raise ValueError(f"{end} comes before {begin}")
    if text[start : start + 1] != "\n" or text[stop - 1] != "\n":
        raise ValueError(f"the markers of {name!r} must be on lines of their own")
    return start + 1, stop


def read_block(text: str, name: str) -> str:
    """The body of block ``name`` (every line between the markers, each ending in a newline)."""
    start, stop = _span(text, name)
    return text[start:stop]


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with block ``name``'s body replaced by ``body`` (markers kept).

    Raises ValueError when either marker is missing or present more than once."""
    start, stop = _span(text, name)
    if body and not body.endswith("\n"):
        body += "\n"
    return text[:start] + body + text[stop:]


def block_names(text: str) -> list[str]:
    """The names of the ``results:NAME`` blocks in ``text``, in order."""
    return BEGIN_RE.findall(text)


def update_readme(readme: Path, name: str, body: str) -> None:
    """Replace block ``name`` of the file ``readme`` by ``body`` (unchanged file: no write)."""
    text = readme.read_text(encoding="utf-8")
    new = replace_block(text, name, body)
    if new != text:
        readme.write_text(new, encoding="utf-8")
