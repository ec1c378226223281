"""Checkpoint and resume: an append-only log of a scan's plan and its final verdicts.

``twinscan scan ... --checkpoint FILE`` writes FILE as JSON lines:

- line 1, the header: ``{"twinscan_checkpoint": FORMAT, "version": ..., "engine": ...,
  "start": ..., "request": {...}}`` -- the whole validated plan (targets, ports, techniques,
  timing), so ``--resume FILE`` needs nothing else;
- then one line per batch of final verdicts, as columns (``{"t": technique, "hi": host
  indices into the plan's targets, "p": ports, "s"/"r": state/reason codes, ...}``), appended
  as the engines emit them (``engines.stream``: at least every ``stream.EMIT_INTERVAL_S``);
- ``{"done": technique}`` once a technique has every verdict; ``{"complete": true}`` at the end.

Each line goes to the file in one ``write`` on an ``O_APPEND`` descriptor (and is fsync'ed at
most once a second), so a crash, even SIGKILL, loses at most the batches not yet handed over
and can tear only the last line, which the reader drops. Anything else that does not parse is a
damaged checkpoint: one line, exit 2. So is a checkpoint written by another twinscan version.

``--resume FILE`` reads it back, scans only the (technique, host, port) cells without a verdict
-- hosts that miss the same ports are scanned together, one sub-scan per such group -- appends
to the same FILE (a resumed scan can be stopped and resumed again) and returns the whole scan.

Just over 400 lines: the log's writer, its reader (with the torn-line and version checks) and
the resume planner share one record format, which is clearer kept in one file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import operator
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from twinscan import __version__
from twinscan.core.errors import UsageError
from twinscan.core.progress import Progress
from twinscan.core.schema import ResultColumns, ScanMeta, ScanResult, host_sort_key
from twinscan.core.timing import Timing
from twinscan.core.vocab import Engine, Proto, Technique
from twinscan.engines import interrupt, stream
from twinscan.request.model import BounceRelay, ScanRequest
from twinscan.request.ports import PortPlan

#: the checkpoint format; bump on any incompatible change.
FORMAT = 1
HEADER_KEY = "twinscan_checkpoint"
#: fsync the log at most this often.
SYNC_INTERVAL_S = 1.0


class CheckpointError(UsageError):
    """A checkpoint that cannot be used (damaged, another version, not a checkpoint)."""


# --- the plan --------------------------------------------------------------------------------


def encode_request(request: ScanRequest) -> dict[str, Any]:
    """The request as JSON-ready values (every field, so a resume scans the same plan)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(request):
        value = getattr(request, field.name)
        if field.name == "techniques":
            out[field.name] = [t.value for t in value]
        elif dataclasses.is_dataclass(value):
            out[field.name] = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(value).items()  # type: ignore[arg-type]
            }
        elif isinstance(value, tuple):
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out


def decode_request(data: dict[str, Any]) -> ScanRequest:
    known = {f.name for f in dataclasses.fields(ScanRequest)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown request field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name == "techniques":
            values[name] = tuple(Technique(v) for v in value)
        elif name == "ports":
            values[name] = PortPlan(tcp=tuple(value["tcp"]), udp=tuple(value["udp"]))
        elif name == "timing":
            values[name] = Timing(**value)
        elif name == "bounce":
            values[name] = None if value is None else BounceRelay(**value)
        elif isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = value
    return ScanRequest(**values)


# --- verdict lines -----------------------------------------------------------------------------


def _encode_columns(cols: ResultColumns, index: dict[str, int]) -> dict[str, Any]:
    line: dict[str, Any] = {"t": cols.technique.value, "e": cols.engine.value}
    if all(h in index for h in cols.host):
        line["hi"] = [index[h] for h in cols.host]
    else:
        line["h"] = list(cols.host)
    line["p"] = list(cols.port)
    line["s"] = list(cols.state)
    line["r"] = list(cols.reason)
    for key, name in (("ttl", "reason_ttl"), ("ip", "reason_ip"), ("rtt", "rtt_ms")):
        values = getattr(cols, name)
        if values is not None:
            line[key] = list(values)
    return line


def _decode_columns(line: dict[str, Any], targets: Sequence[str]) -> ResultColumns:
    tech = Technique(line["t"])
    hosts = [targets[i] for i in line["hi"]] if "hi" in line else list(line["h"])
    n = len(hosts)
    for key in ("p", "s", "r", "ttl", "ip", "rtt"):
        if key in line and len(line[key]) != n:
            raise ValueError(f"column {key}: {len(line[key])} values for {n} rows")
    return ResultColumns(
        engine=Engine(line.get("e", Engine.NATIVE.value)),
        technique=tech,
        proto=tech.proto,
        host=hosts,
        port=[int(p) for p in line["p"]],
        state=[int(s) for s in line["s"]],
        reason=[int(r) for r in line["r"]],
        reason_ttl=line.get("ttl"),
        reason_ip=line.get("ip"),
        rtt_ms=line.get("rtt"),
    )


def sorted_unique(parts: Sequence[ResultColumns]) -> ResultColumns | None:
    """Parts of one technique as one, sorted by (host address, port), the first verdict of a
    (host, port) kept (a batch emitted twice is harmless). None for no rows.

    Plain Python, no numpy: a streamed scan's main process calls it for every block, and a
    numpy import there would be carried into every worker forked for the next block. The
    per-row work runs in C (``map``, ``sorted``, ``set``): a block of 6 hosts x 10,000 ports
    is a few sorted runs (the batches the engine emitted), merged by one sort of their keys."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return None
    first = parts[0]
    hosts = list(itertools.chain.from_iterable(p.host for p in parts))
    rank = {h: r for r, h in enumerate(sorted(set(hosts), key=host_sort_key))}
    ports = list(itertools.chain.from_iterable(p.port for p in parts))
    keys = list(
        map(
            operator.or_,
            map(operator.lshift, map(rank.__getitem__, hosts), itertools.repeat(16)),
            map(int, ports),
        )
    )
    n = len(keys)
    order = sorted(range(n), key=keys.__getitem__)  # stable: the first kept
    if len(set(keys)) < n:
        kept, last = [], -1
        for i in order:
            if keys[i] != last:
                kept.append(i)
                last = keys[i]
        order = kept
    in_order = order == list(range(n))  # (then the columns as they are)

    def joined(name: str, optional: bool) -> list[Any] | None:
        cols = [getattr(p, name) for p in parts]
        if optional and all(c is None for c in cols):
            return None
        flat = list(
            itertools.chain.from_iterable(
                itertools.repeat(None, len(p)) if c is None else c
                for p, c in zip(parts, cols, strict=True)
            )
        )
        return flat if in_order else list(map(flat.__getitem__, order))

    return ResultColumns(
        first.engine,
        first.technique,
        first.proto,
        host=hosts if in_order else list(map(hosts.__getitem__, order)),
        port=joined("port", False) or [],
        state=joined("state", False) or [],
        reason=joined("reason", False) or [],
        reason_ttl=joined("reason_ttl", True),
        reason_ip=joined("reason_ip", True),
        rtt_ms=joined("rtt_ms", True),
    )


# --- the log -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    """A checkpoint read back."""

    request: ScanRequest
    engine: Engine
    start: dt.datetime
    parts: dict[Technique, list[ResultColumns]]
    done: set[Technique]
    complete: bool
    #: byte length of the part that parsed (a torn last line is cut off before appending).
    good_bytes: int


def load(path: Path) -> Loaded:
    """Read a checkpoint (``CheckpointError``: one line saying what is wrong with it)."""
    name = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such checkpoint") from None
    except OSError as exc:
        raise CheckpointError(f"{name}: cannot read the checkpoint: {exc.strerror}") from None
    lines = data.split(b"\n")
    try:
        header = json.loads(lines[0])
        if not isinstance(header, dict) or HEADER_KEY not in header:
            raise ValueError
    except ValueError:
        raise CheckpointError(f"{name}: not a twinscan checkpoint") from None
    if header[HEADER_KEY] != FORMAT or header.get("version") != __version__:
        raise CheckpointError(
            f"{name}: checkpoint of twinscan {header.get('version')} (format "
            f"{header[HEADER_KEY]}); this is twinscan {__version__}: start the scan again"
        )
    try:
        request = decode_request(header["request"])
        engine = Engine(header["engine"])
        start = dt.datetime.fromisoformat(header["start"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: damaged checkpoint (line 1: {exc})") from None
    parts: dict[Technique, list[ResultColumns]] = {}
    done: set[Technique] = set()
    complete = False
    good = len(lines[0]) + 1
    last = len(lines) - 1  # the text after the final newline ('' when the file ends with one)
    for lineno, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            good += len(raw) + (lineno - 1 < last)
            continue
        try:
            line = json.loads(raw)
            if "done" in line:
                done.add(Technique(line["done"]))
            elif "complete" in line:
                complete = True
            else:
                cols = _decode_columns(line, request.targets)
                parts.setdefault(cols.technique, []).append(cols)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            if lineno - 1 == last:
                break  # the last line, torn by a crash mid-write: lost, as promised
            raise CheckpointError(
                f"{name}: damaged checkpoint (line {lineno}: {str(exc)[:80]})"
            ) from None
        good += len(raw) + 1
    return Loaded(request, engine, start, parts, done, complete, min(good, len(data)))


class CheckpointLog:
    """The append side: ``append`` is the scan's ``stream`` sink."""

    def __init__(
        self,
        path: Path,
        request: ScanRequest,
        engine: Engine,
        start: dt.datetime,
        fd: int,
        loaded: Loaded | None = None,
    ) -> None:
        self.path = path
        self.request = request
        self.engine = engine
        self.start = start
        self._fd = fd
        self._index = {h: i for i, h in enumerate(request.targets)}
        self._synced = time.monotonic()
        self.loaded = loaded

    @classmethod
    def create(cls, path: Path, request: ScanRequest, engine: Engine) -> CheckpointLog:
        """A new checkpoint (an existing non-empty FILE is refused: resume it or remove it)."""
        if path.exists() and path.stat().st_size > 0:
            raise UsageError(
                f"--checkpoint {path}: the file exists; continue that scan with "
                f"`twinscan scan --resume {path}`, or remove it"
            )
        start = dt.datetime.now(dt.UTC)
        header = {
            HEADER_KEY: FORMAT,
            "version": __version__,
            "engine": engine.value,
            "start": start.isoformat(),
            "request": encode_request(request),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(header) + "\n", encoding="utf-8")
        os.replace(tmp, path)  # the header appears whole or not at all
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        return cls(path, request, engine, start, fd)

    @classmethod
    def resume(cls, path: Path) -> CheckpointLog:
        loaded = load(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        if loaded.good_bytes < path.stat().st_size:
            os.ftruncate(fd, loaded.good_bytes)  # drop a torn last line before appending
        return cls(path, loaded.request, loaded.engine, loaded.start, fd, loaded)

    def _write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        now = time.monotonic()
        if now - self._synced >= SYNC_INTERVAL_S:
            os.fsync(self._fd)
            self._synced = now

    def append(self, cols: ResultColumns) -> None:
        if len(cols):
            self._write(_encode_columns(cols, self._index))

    def mark_done(self, technique: Technique) -> None:
        self._write({"done": technique.value})

    def mark_complete(self) -> None:
        self._write({"complete": True})

    def finish(self, *, stopped: bool) -> None:
        """The end of a streamed or Dask scan: every technique done and the scan complete,
        unless it was stopped (a resume then scans what is left); then close."""
        if not stopped:
            for tech in self.request.techniques:
                self.mark_done(tech)
            self.mark_complete()
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def result(self, *, incomplete: bool) -> ScanResult:
        """The whole scan, read back from the file (every verdict, sorted as a scan's)."""
        loaded = load(self.path)
        runs = [sorted_unique(loaded.parts.get(t, [])) for t in self.request.techniques]
        results = []
        end = dt.datetime.now(dt.UTC)
        for tech, cols in zip(self.request.techniques, runs, strict=True):
            if cols is None:
                cols = stream.empty_columns(tech)
                cols = dataclasses.replace(cols, engine=self.engine)
            meta = ScanMeta(
                engine=self.engine,
                start=self.start,
                end=end,
                arguments=" ".join(self.request.argv),
                engine_version=f"twinscan {__version__}"
                if self.engine is Engine.NATIVE
                else "nmap",
                techniques=(tech,),
                incomplete=incomplete,
            )
            results.append(ScanResult(columns=cols, meta=meta))
        from twinscan.core.schema import combine

        return combine(results)


def remaining_parts(
    request: ScanRequest, technique: Technique, finished: Iterable[ResultColumns]
) -> Iterator[ScanRequest]:
    """Sub-requests covering the cells of ``technique`` without a verdict in ``finished``:
    hosts missing the same ports go together (all of them when nothing is finished)."""
    ports = request.ports_for(technique)
    done: dict[str, set[int]] = {}
    for cols in finished:
        for h, p in zip(cols.host, cols.port, strict=True):
            done.setdefault(h, set()).add(p)
    groups: dict[tuple[int, ...], list[str]] = {}
    for host in request.targets:
        seen = done.get(host)
        left = ports if not seen else tuple(p for p in ports if p not in seen)
        if left:
            groups.setdefault(left, []).append(host)
    for left, hosts in groups.items():
        plan = (
            dataclasses.replace(request.ports, tcp=left)
            if technique.proto is Proto.TCP
            else dataclasses.replace(request.ports, udp=left)
        )
        yield dataclasses.replace(
            request, targets=tuple(hosts), ports=plan, techniques=(technique,)
        )


def run_checkpointed(
    request: ScanRequest, engine: Engine, log: CheckpointLog, progress: Progress
) -> ScanResult:
    """``run_scan`` with every final verdict appended to ``log`` as it comes; on a resumed log,
    only what it lacks is scanned. Stops as ``run_scan`` does (SIGINT/SIGTERM: incomplete)."""
    from twinscan.engines import runner

    loaded = log.loaded
    interrupt.clear()
    stopped = False
    with interrupt.terminate_as_interrupt():
        try:
            with stream.streaming(log.append):
                for tech in request.techniques:
                    if loaded is not None and tech in loaded.done:
                        continue
                    finished = loaded.parts.get(tech, []) if loaded is not None else []
                    for part in list(remaining_parts(request, tech, finished)):
                        result = runner(engine, tech)(part, tech, progress=progress)
                        for cols in result.column_runs():
                            log.append(cols)  # what the engine did not stream
                        if result.meta.incomplete or interrupt.requested():
                            stopped = True
                            break
                    if stopped:
                        break
                    log.mark_done(tech)
        except KeyboardInterrupt:
            stopped = True
        with interrupt.deferred():
            if not stopped:
                log.mark_complete()
            log.close()
            log.loaded = None
            return log.result(incomplete=stopped)
