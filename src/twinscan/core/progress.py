"""Progress reporting without printing from the library: engines call a ``Progress``."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """``start`` a task of ``total`` steps (0: an unknown amount, e.g. nmap, which reports
    none: shown as a pulse and the elapsed time), ``advance`` it (``advance(0)`` is a
    heartbeat), ``finish`` it."""

    def start(self, description: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass
