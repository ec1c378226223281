"""Parquet output (``--parquet DIR``): one file per (technique, host block), the schema's dtypes.

Layout::

    DIR/_twinscan.json                        the scan's metadata (incomplete, engine, ...)
    DIR/syn/block-000000.parquet              one host block's verdicts, sorted by (host, port)
    DIR/syn/block-000001.parquet
    ...
    DIR/syn/block-000002-part-000000.parquet  a --dask scan's: one file per shard (a port
    DIR/syn/block-000002-part-000001.parquet  slice of the block), written by its worker
    DIR/syn/block-000002-resumed.parquet      a resumed --dask scan's checkpointed verdicts

Each file holds every schema column (``schema.COLUMNS``) with the schema's dtypes: the enum
columns as dictionary-encoded categoricals, ``port`` as uint16. ``technique=...`` is a plain
directory name, so pandas (``pd.read_parquet(DIR)``) and ``dask.dataframe.read_parquet(DIR)``
read the whole scan as it is; ``read_parquet`` here returns it as a schema frame in scan order
(a block's shard files merged and sorted by host and port; marked incomplete as the CSV and
JSON lines readers do). A single ``.parquet`` file is read too.

Every file is written under a temporary name starting with a dot (which pandas, pyarrow and
Dask skip) and renamed into place: a reader never sees half a file, and the same shard
written twice (a rescheduled Dask task) replaces its file instead of adding rows.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinscan.core.errors import EnvironmentProblem, InputFileError, UsageError
from twinscan.core.schema import ResultColumns, ScanMeta, meta_dict
from twinscan.formats.incomplete import incomplete_note, mark_incomplete

if TYPE_CHECKING:
    import pandas as pd

META_FILE = "_twinscan.json"


def block_path(root: Path, technique: str, block: int) -> Path:
    return root / technique / f"block-{block:06d}.parquet"


def part_path(root: Path, technique: str, block: int, part: int | None) -> Path:
    """The file of one shard of a block (``part``), or (None) of a resumed scan's
    checkpointed verdicts for the block: a fixed name, so writing it again replaces it."""
    name = "resumed" if part is None else f"part-{part:06d}"
    return root / technique / f"block-{block:06d}-{name}.parquet"


def write_pending(columns: ResultColumns, path: Path) -> Path:
    """``columns`` in the schema's dtypes, written beside ``path`` under a unique hidden
    temporary name (returned) that ``os.replace`` then moves to ``path``."""
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    table = pa.Table.from_pandas(columns.to_frame(), preserve_index=False)
    pq.write_table(table, tmp)
    return tmp


def write_file(columns: ResultColumns, path: Path) -> None:
    """``columns`` as the Parquet file ``path``, atomically."""
    os.replace(write_pending(columns, path), path)


class ParquetWriter:
    """Appends blocks to DIR as the scan runs (a fresh DIR: an old scan's files are removed)."""

    def __init__(self, root: Path) -> None:
        if root.exists() and not root.is_dir():
            raise UsageError(f"--parquet {root}: not a directory")
        if root.is_dir() and any(root.iterdir()):
            if not (root / META_FILE).exists():
                raise UsageError(
                    f"--parquet {root}: the directory holds files that are not a twinscan "
                    "Parquet scan; give an empty or new directory"
                )
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._blocks: dict[str, int] = {}
        self.rows = 0

    def block(self, columns: ResultColumns) -> None:
        tech = columns.technique.value
        n = self._blocks.get(tech, 0)
        self._blocks[tech] = n + 1
        write_file(columns, block_path(self.root, tech, n))
        self.rows += len(columns)

    def part(self, columns: ResultColumns, block: int) -> None:
        """A resumed scan's checkpointed verdicts of ``block`` (its shards are written by
        the Dask workers)."""
        write_file(columns, part_path(self.root, columns.technique.value, block, None))
        self.rows += len(columns)

    def adopt(self, pending: Path, path: Path, rows: int) -> None:
        """Move a file a Dask worker wrote (``write_pending``) to its place."""
        if not pending.exists():
            raise EnvironmentProblem(
                f"--parquet {self.root}: a Dask worker wrote {pending}, which this machine does "
                "not see; give a directory on a filesystem every worker shares"
            )
        os.replace(pending, path)
        self.rows += rows

    def close(self, meta: ScanMeta) -> None:
        for stale in self.root.glob("*/.block-*.tmp"):  # a dead or cancelled shard's
            stale.unlink(missing_ok=True)
        data: dict[str, Any] = dict(meta_dict(meta))
        data["rows"] = self.rows
        if meta.incomplete:
            data["note"] = incomplete_note(self.rows)
        (self.root / META_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def write_parquet_frame(frame: pd.DataFrame, root: Path, meta: ScanMeta) -> None:
    """A whole result (a frame in the schema) as DIR, one block per technique."""
    from twinscan.core.schema import columns_from_frame

    writer = ParquetWriter(root)
    for cols in columns_from_frame(frame):
        writer.block(cols)
    writer.close(meta)


def _block_files(root: Path) -> list[list[Path]]:
    """The files of DIR grouped by (technique, host block), in path order."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for f in sorted(root.glob("*/block-*.parquet")):
        block = f.stem.split("-")[1]
        groups.setdefault((f.parent.name, block), []).append(f)
    return list(groups.values())


def _read_block(files: list[Path]) -> pd.DataFrame:
    """One block's rows sorted by (host, port): a Dask scan's shards are port slices."""
    import pandas as pd

    from twinscan.core.schema import conform, sort_frame

    if len(files) == 1:
        return pd.read_parquet(files[0])
    return sort_frame(conform(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)))


def is_parquet(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.suffix == ".parquet" or (p.is_dir() and (p / META_FILE).exists())


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A twinscan Parquet scan (DIR or one file) as a schema frame, in scan order."""
    import pandas as pd

    from twinscan.core.schema import conform

    name = os.fspath(path)
    root = Path(path)
    if not root.exists():
        raise InputFileError(name, "no such file or directory")
    groups = [[root]] if root.is_file() else _block_files(root)
    try:
        frames = [_read_block(files) for files in groups]
        frame = conform(pd.concat(frames, ignore_index=True)) if frames else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(name, f"not twinscan Parquet: {exc}") from None
    if frame is None:
        from twinscan.core.schema import empty_frame

        frame = empty_frame()
    meta_path = root / META_FILE
    if root.is_dir() and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("incomplete"):
            mark_incomplete(frame, str(meta.get("note") or incomplete_note(len(frame))), name)
    return frame
