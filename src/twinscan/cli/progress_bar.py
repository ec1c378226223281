"""A rich progress bar on stderr, only on a terminal and only once a scan passes one second.

A stage of unknown length (``start(..., 0)``: nmap in ``compare``) pulses and shows its
elapsed time, so the screen is never blank while it runs."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from twinscan.core.progress import NoProgress, Progress


class _RichProgress:
    DELAY_S = 1.0

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: object | None = None
        self._started_at = 0.0
        self._visible = False

    def start(self, description: str, total: int) -> None:
        self._started_at = time.monotonic()
        if self._task is not None:
            self._bar.remove_task(self._task)  # type: ignore[arg-type]
        # total 0: an unknown amount (nmap): a pulsing bar, "0/?" and the elapsed time.
        self._task = self._bar.add_task(description, total=total or None)

    def advance(self, n: int = 1) -> None:
        if self._task is None:
            return
        self._bar.advance(self._task, n)  # type: ignore[arg-type]
        if not self._visible and time.monotonic() - self._started_at > self.DELAY_S:
            self._bar.start()
            self._visible = True

    def finish(self) -> None:
        if self._visible:
            self._bar.stop()
            self._visible = False


@contextlib.contextmanager
def progress_for_terminal() -> Iterator[Progress]:
    if not sys.stderr.isatty():
        yield NoProgress()
        return
    bar = _RichProgress()
    try:
        yield bar
    finally:
        bar.finish()
