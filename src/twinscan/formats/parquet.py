"""Parquet output (``--parquet DIR``): one file per (technique, host block), the schema's dtypes.

Layout::

    DIR/_twinscan.json                        the scan's metadata (incomplete, engine, ...)
    DIR/syn/block-000000.parquet              one host block's verdicts, sorted by (host, port)
    DIR/syn/block-000001.parquet
    ...

Each file holds every schema column (``schema.COLUMNS``) with the schema's dtypes: the enum
columns as dictionary-encoded categoricals, ``port`` as uint16. ``technique=...`` is a plain
directory name, so pandas (``pd.read_parquet(DIR)``) and ``dask.dataframe.read_parquet(DIR)``
read the whole scan as it is; ``read_parquet`` here returns it as a schema frame in scan order
(and marks it incomplete as the CSV and JSON lines readers do). A single ``.parquet`` file is
read too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinscan.core.errors import InputFileError, UsageError
from twinscan.core.schema import ResultColumns, ScanMeta, meta_dict
from twinscan.formats.incomplete import incomplete_note, mark_incomplete

if TYPE_CHECKING:
    import pandas as pd

META_FILE = "_twinscan.json"


def block_path(root: Path, technique: str, block: int) -> Path:
    return root / technique / f"block-{block:06d}.parquet"


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
        import pyarrow as pa
        import pyarrow.parquet as pq

        tech = columns.technique.value
        n = self._blocks.get(tech, 0)
        self._blocks[tech] = n + 1
        path = block_path(self.root, tech, n)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(columns.to_frame(), preserve_index=False)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        self.rows += len(columns)

    def close(self, meta: ScanMeta) -> None:
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
    files = [root] if root.is_file() else sorted(root.glob("*/block-*.parquet"))
    try:
        frames = [pd.read_parquet(f) for f in files]
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
