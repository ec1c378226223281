"""Distributed scans on Dask (``twinscan scan ... --dask ADDRESS`` or ``--dask local[:N]``).

The plan is cut into shards: each technique's host blocks (``engines.streamed.host_blocks``),
and each TCP block's ports into interleaved slices of at most ``SHARD_PROBES`` probes. A UDP
block is never cut by port: the ICMP pacing of one host (its rate-limit bucket) must stay in
one session, on one worker. Every shard is a Dask task, ``scan_shard``, that runs the native
engine on its worker (in that worker's process: no forking inside Dask's threads) and returns
its verdicts; rate limits and the parallelism cap are shared out evenly over the workers
(``connect.shard_timing``), since that many shards run at once.

The client submits shards in plan order, a bounded number at a time, reports progress as each
shard finishes, appends its verdicts to the checkpoint (when there is one) and hands every
host block, once all its shards are in, sorted, to the streaming writers -- so outputs are the
same files, in the same order, as a single-process scan's.

With ``--parquet DIR`` each worker writes its shard's verdicts into DIR itself (a hidden
temporary file, ``formats.parquet.write_pending``), and the client renames the file to the
shard's fixed name once it has the shard's answer: DIR holds exactly the shards the client
counted, and a shard run twice replaces its file. When Parquet is the only file written (no
checkpoint either), a worker sends back no verdicts at all, only what the text report needs
(``formats.streaming.Summary``: the closed ports as counts). A shard whose worker dies is
rescheduled by Dask on another worker (tasks are pure: a shard rerun gives its whole answer
again, the dead worker's never arrives), so the scan still completes exactly.

``local[:N]`` starts a ``LocalCluster`` of N worker processes (default: the CPU count) on
127.0.0.1 for the duration of the scan. Any other ADDRESS is an existing scheduler
(``tcp://host:8786``); its workers need twinscan installed and the privileges a local scan of
the same technique needs (root or CAP_NET_RAW for raw techniques), and must reach the targets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from twinscan.core.errors import EnvironmentProblem, UsageError
from twinscan.core.progress import NoProgress, Progress
from twinscan.core.schema import ResultColumns, ScanMeta
from twinscan.core.vocab import Engine, Proto, Technique
from twinscan.engines import interrupt, stream
from twinscan.engines.streamed import (
    BlockConsumer,
    give_back_memory,
    host_blocks,
    restrict,
    scan_meta,
    scan_start,
)
from twinscan.formats.parquet import ParquetWriter, part_path
from twinscan.formats.streaming import Counts, Summary, summarise

if TYPE_CHECKING:
    from twinscan.engines.checkpoint import CheckpointLog
    from twinscan.request.model import ScanRequest

#: the most probes of one shard (a task): small enough that a rescheduled one costs little.
SHARD_PROBES = 8192
#: shards in flight per worker (the client holds at most this many finished, unwritten ones).
IN_FLIGHT_PER_WORKER = 2


@dataclasses.dataclass(frozen=True)
class Shard:
    block: int  # index of its host block in plan order
    technique: Technique
    request: ScanRequest  # the shard's hosts and ports only
    part: int = 0  # its index among its block's shards (its Parquet file's name)

    @property
    def probes(self) -> int:
        return self.request.probes(self.technique)


def parse_address(text: str) -> tuple[str, int | None]:
    """``local`` / ``local:N`` -> ("local", N or None); anything else is a scheduler address."""
    if text == "local" or text.startswith("local:"):
        _, _, n = text.partition(":")
        if n and (not n.isdigit() or int(n) < 1):
            raise UsageError(f"--dask {text}: local:N needs a number of workers >= 1")
        return "local", int(n) if n else None
    if not text:
        raise UsageError("--dask needs local[:N] or a scheduler address (tcp://host:8786)")
    return text, None


def plan_shards(
    request: ScanRequest,
    workers: int,
    done: dict[Technique, list[ResultColumns]] | None = None,
) -> tuple[list[tuple[Technique, tuple[str, ...]]], list[Shard]]:
    """The host blocks in plan order and the shards that cover their cells without a verdict
    in ``done`` (a resumed checkpoint's)."""
    from twinscan.engines.checkpoint import remaining_parts
    from twinscan.engines.connect import shard_timing

    timing = shard_timing(request.timing, max(1, workers))
    blocks: list[tuple[Technique, tuple[str, ...]]] = []
    shards: list[Shard] = []
    for tech in request.techniques:
        for hosts in host_blocks(request, tech):
            index = len(blocks)
            blocks.append((tech, hosts))
            finished = restrict((done or {}).get(tech, []), set(hosts))
            block = dataclasses.replace(request, targets=hosts, techniques=(tech,), timing=timing)
            pieces = [
                piece
                for part in remaining_parts(block, tech, finished)
                for piece in _split_ports(part, tech)
            ]
            shards.extend(Shard(index, tech, piece, n) for n, piece in enumerate(pieces))
    return blocks, shards


def shard_probes(technique: Technique) -> int:
    """The most probes of one shard: ``SHARD_PROBES``, and for the raw techniques fewer than
    make the raw engine fork (a Dask task runs in a worker thread, where forking is unsafe)."""
    if technique is Technique.CONNECT:
        return SHARD_PROBES
    from twinscan.engines.raw import FORK_MIN_PROBES

    return min(SHARD_PROBES, FORK_MIN_PROBES - 1)


def _split_ports(part: ScanRequest, tech: Technique) -> Iterator[ScanRequest]:
    """A TCP part cut into interleaved port slices of at most ``shard_probes`` probes; a UDP
    part whole (one host's ICMP pacing stays on one worker)."""
    ports = part.ports_for(tech)
    pieces = -(-part.probes(tech) // shard_probes(tech))
    if tech.proto is Proto.UDP or pieces <= 1:
        yield part
        return
    pieces = min(pieces, len(ports))
    for i in range(pieces):
        yield dataclasses.replace(part, ports=dataclasses.replace(part.ports, tcp=ports[i::pieces]))


@dataclasses.dataclass(frozen=True)
class ShardAnswer:
    """What a shard's task sends back: its verdicts, or (when the client writes none of them)
    the report's summary of them; and the Parquet file it wrote, if asked to."""

    rows: int
    columns: ResultColumns | None = None
    summary: Summary | None = None
    parquet: str | None = None  # the hidden temporary file, for the client to rename


def scan_shard(
    shard: bytes, technique_name: str, parquet: str | None = None, verdicts: bool = True
) -> bytes:
    """The Dask task: one shard (a pickled ``ScanRequest``) through the native engine, in
    this (worker) process; a pickled ``ShardAnswer``. With ``parquet`` (the shard's file) the
    verdicts are written there first (under a temporary name); without ``verdicts`` only the
    report's summary of them goes back. Both cross Dask as single bytes objects: the
    scheduler keeps a task's arguments for a while (in this process, for ``local``), and as
    Python objects a shard's port list cost ~70 times more."""
    request: ScanRequest = pickle.loads(shard)
    technique = Technique(technique_name)
    from twinscan.engines import runner
    from twinscan.engines.checkpoint import sorted_unique

    parts: list[ResultColumns] = []
    with stream.streaming(parts.append):
        if technique is Technique.CONNECT:
            from twinscan.engines import connect

            result = connect.scan(request, technique, progress=NoProgress(), workers=1)
        else:
            result = runner(Engine.NATIVE, technique)(request, technique, progress=NoProgress())
    parts.extend(result.column_runs())
    merged = sorted_unique(parts)
    cols = merged if merged is not None else stream.empty_columns(technique)
    answer = _answer(cols, parquet, verdicts)
    data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    del parts, merged, cols, result, answer
    give_back_memory()  # a worker runs shard after shard: keep its heap from creeping up
    return data


def _answer(cols: ResultColumns, parquet: str | None, verdicts: bool) -> ShardAnswer:
    pending = None
    if parquet is not None and len(cols):
        from pathlib import Path

        from twinscan.formats.parquet import write_pending

        pending = str(write_pending(cols, Path(parquet)))
    if verdicts:
        return ShardAnswer(len(cols), columns=cols, parquet=pending)
    return ShardAnswer(len(cols), summary=summarise(cols), parquet=pending)


def _numbers_in_technique(blocks: list[tuple[Technique, tuple[str, ...]]]) -> list[int]:
    """Each block's number among its technique's blocks (its Parquet files' ``block-N``)."""
    seen: dict[Technique, int] = {}
    out = []
    for tech, _ in blocks:
        out.append(seen.get(tech, 0))
        seen[tech] = out[-1] + 1
    return out


class SummaryConsumer(BlockConsumer, Protocol):
    """A consumer that also takes a block's report summary (``StreamWriters``)."""

    def summary(self, summary: Summary) -> None: ...


def _summary_consumer(consumer: BlockConsumer) -> SummaryConsumer:
    if not hasattr(consumer, "summary"):
        raise TypeError("a scan that leaves verdicts out needs a consumer of summaries")
    return consumer  # type: ignore[return-value]


def merge_summaries(parts: list[Summary]) -> Summary:
    """One block's shard summaries (at least one) as one (its listed rows sorted by host and
    port)."""
    from collections import Counter

    from twinscan.engines.checkpoint import sorted_unique

    kept = sorted_unique([p.kept for p in parts if p.kept is not None])
    folded: Counts = Counter()
    for p in parts:
        folded.update(p.folded)
    return Summary(parts[0].technique, sum(p.rows for p in parts), kept, folded)


@contextlib.contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``--dask ADDRESS``; a ``local[:N]`` cluster lives as long."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a dependency
        raise EnvironmentProblem("--dask needs dask[distributed]: pip install twinscan") from None
    where, n = parse_address(address)
    if where == "local":
        import os

        workers = n or len(os.sched_getaffinity(0))
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                scheduler_port=0,  # any free port (never a scheduler's 8786 you may run)
                dashboard_address=None,
                silence_logs=50,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(where, timeout="10s")
    except OSError as exc:
        raise EnvironmentProblem(f"--dask {where}: cannot reach the scheduler: {exc}") from None
    try:
        yield client
    finally:
        client.close()


def run_dask(
    request: ScanRequest,
    address: str,
    consumer: BlockConsumer,
    *,
    progress: Progress | None = None,
    checkpoint: CheckpointLog | None = None,
    start: dt.datetime | None = None,
    parquet: ParquetWriter | None = None,
    verdicts: bool = True,
) -> ScanMeta:
    """Scan ``request`` on the Dask cluster at ``address`` into ``consumer`` (block order);
    ``start``: the start time the consumer's headers already carry (``scan_start``).

    ``parquet``: the workers write each shard's verdicts into its directory (the consumer
    writes no Parquet). ``verdicts`` False (needs ``parquet`` and no checkpoint): the
    consumer gets each block's report ``Summary`` (``consumer.summary``), not its verdicts."""
    if not verdicts and (parquet is None or checkpoint is not None):
        raise ValueError("only a Parquet scan without a checkpoint can leave verdicts out")
    from distributed import as_completed

    from twinscan.engines.checkpoint import sorted_unique

    progress = progress or NoProgress()
    loaded = checkpoint.loaded if checkpoint is not None else None
    earlier = loaded.parts if loaded is not None else {}
    start = start or scan_start(checkpoint)
    stopped = False
    interrupt.clear()
    with dask_client(address) as client:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        blocks, shards = plan_shards(request, workers, earlier)
        left = [0] * len(blocks)
        for shard in shards:
            left[shard.block] += 1
        numbers = _numbers_in_technique(blocks)
        collected: list[list[Any]] = [
            restrict(earlier.get(tech, []), set(hosts)) for tech, hosts in blocks
        ]
        if parquet is not None:
            for i, done in enumerate(collected):
                merged = sorted_unique(done)
                if merged is not None:
                    parquet.part(merged, numbers[i])
        written = 0

        def write_ready(upto: int) -> int:
            nonlocal written
            while written < upto:
                if verdicts:
                    merged = sorted_unique(collected[written])
                    if merged is not None:
                        consumer.block(merged)
                elif collected[written]:
                    _summary_consumer(consumer).summary(merge_summaries(collected[written]))
                collected[written] = []
                written += 1
            return written

        def shard_file(shard: Shard) -> Path | None:
            if parquet is None:
                return None
            number = numbers[shard.block]
            return part_path(parquet.root, shard.technique.value, number, shard.part)

        progress.start("scan (dask)", sum(s.probes for s in shards))
        queue = iter(shards)
        futures: dict[Any, Shard] = {}
        pending = as_completed()

        def submit(count: int) -> None:
            for shard in queue:
                payload = pickle.dumps(shard.request, protocol=pickle.HIGHEST_PROTOCOL)
                path = shard_file(shard)
                future = client.submit(
                    scan_shard,
                    payload,
                    shard.technique.value,
                    None if path is None else str(path),
                    verdicts,
                    pure=False,
                )
                futures[future] = shard
                pending.add(future)
                count -= 1
                if count <= 0:
                    return

        try:
            with interrupt.terminate_as_interrupt():
                submit(workers * IN_FLIGHT_PER_WORKER)
                for future in pending:
                    shard = futures.pop(future)
                    answer: ShardAnswer = pickle.loads(future.result())
                    future.release()
                    with interrupt.deferred():
                        path = shard_file(shard)
                        if parquet is not None and path is not None and answer.parquet:
                            parquet.adopt(Path(answer.parquet), path, answer.rows)
                        if checkpoint is not None and answer.columns is not None:
                            checkpoint.append(answer.columns)
                        got = answer.columns if answer.columns is not None else answer.summary
                        collected[shard.block].append(got)
                        left[shard.block] -= 1
                        progress.advance(shard.probes)
                        ready = written
                        while ready < len(blocks) and left[ready] == 0:
                            ready += 1
                        write_ready(ready)
                    interrupt.check()  # a stop that arrived while the section deferred it
                    submit(1)
        except KeyboardInterrupt:
            stopped = True
            for future in futures:
                future.cancel()
        finally:
            progress.finish()
        with interrupt.deferred():
            write_ready(len(blocks))  # a stopped scan: every block with what finished
            stopped = stopped or interrupt.requested()
            if checkpoint is not None:
                checkpoint.finish(stopped=stopped)
    return scan_meta(request, Engine.NATIVE, start, dt.datetime.now(dt.UTC), incomplete=stopped)
