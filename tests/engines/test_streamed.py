"""Streamed scans (``engines.streamed``): host blocks run one after the other in this process."""

from __future__ import annotations

import pytest

from twinscan.core.schema import ResultColumns
from twinscan.core.vocab import Engine, Technique
from twinscan.engines import streamed
from twinscan.request.build import build_request


class _Recorder:
    """A ``Progress`` that records what it is told."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.done = 0
        self.finishes = 0

    def start(self, description: str, total: int) -> None:
        self.starts.append(total)

    def advance(self, n: int = 1) -> None:
        self.done += n

    def finish(self) -> None:
        self.finishes += 1


class _Rows:
    def __init__(self) -> None:
        self.rows: list[int] = []

    def block(self, columns: ResultColumns) -> None:
        self.rows.append(len(columns))


@pytest.mark.parametrize("technique", [Technique.CONNECT, Technique.SYN])
def test_one_progress_task_over_every_block(
    technique: Technique, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engines run once per block, but the user sees one task: started once with the whole
    scan's probes, advanced by all of them, finished once."""
    monkeypatch.setattr(streamed, "BLOCK_PROBES", 500)  # one host per block
    request = build_request(targets=["127.0.0.1-4"], techniques=(technique,), ports="1-500")
    progress, consumer = _Recorder(), _Rows()
    meta = streamed.run_streamed(request, Engine.NATIVE, consumer, progress=progress)
    assert not meta.incomplete
    assert consumer.rows == [500] * 4
    assert progress.starts == [2000] and progress.finishes == 1
    assert progress.done == 2000
