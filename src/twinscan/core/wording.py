"""Small wording helpers shared by the text outputs (pure)."""

from __future__ import annotations


def noun(n: int, word: str, many: str | None = None) -> str:
    """``word`` for 1, else its plural (``many``, default ``word + "s"``)."""
    return word if n == 1 else (many if many is not None else word + "s")


def count(n: int, word: str, many: str | None = None) -> str:
    """``"1 port"``, ``"2 ports"``, ``"0 ports"``; ``count(2, "address", "addresses")``."""
    return f"{n} {noun(n, word, many)}"
