"""Output paths are checked before anything is scanned, so a typo never costs a finished scan.

Every command that writes files calls :func:`check_output_paths` with its options first. The rule
is the same for every option: ``-`` is standard output (at most one option may use it); a file's
missing parent directories are created (as ``--xml-dir`` creates its directory); a path that is a
directory, or a place that cannot be written, is refused with one line (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from twinscan.core.errors import UsageError

STDOUT = "-"

#: Where a writer writes: a path, or an open text stream.
Dest = str | os.PathLike[str] | IO[str]


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) == STDOUT


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")  # pragma: no cover - "/" always exists


def check_output_paths(
    files: Mapping[str, Path | str | None], dirs: Mapping[str, Path | str | None] | None = None
) -> None:
    """Refuse unusable outputs before the work starts; create missing parent directories.

    ``files`` maps an option name (``--csv``) to the file it names, ``dirs`` an option name to a
    directory the command will fill. ``None`` values are options not given.
    """
    stdout_users = [opt for opt, p in files.items() if is_stdout(p)]
    if len(stdout_users) > 1:
        raise UsageError(f"only one output can go to stdout ('-'); got {', '.join(stdout_users)}")
    seen: dict[Path, str] = {}
    for opt, value in files.items():
        if value is None or is_stdout(value):
            continue
        path = Path(value)
        if str(value) == "" or path.is_dir() or str(value).endswith(os.sep):
            raise UsageError(f"{opt} {value}: is a directory; give a file name")
        key = path.resolve()
        if key in seen:
            raise UsageError(f"{opt} and {seen[key]} both write {value}")
        seen[key] = opt
        _check_writable(opt, path, is_dir=False)
    for opt, value in (dirs or {}).items():
        if value is None:
            continue
        path = Path(value)
        if path.exists() and not path.is_dir():
            raise UsageError(f"{opt} {value}: exists and is not a directory")
        _check_writable(opt, path, is_dir=True)


def _check_writable(opt: str, path: Path, *, is_dir: bool) -> None:
    parent = path if is_dir else path.parent
    base = _nearest_existing(parent)
    if not base.is_dir():
        raise UsageError(f"{opt} {path}: {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{opt} {path}: cannot write in {base} (permission denied)")
    if path.exists() and not is_dir and not os.access(path, os.W_OK):
        raise UsageError(f"{opt} {path}: file is not writable (permission denied)")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{opt} {path}: cannot create {parent}: {exc.strerror}") from None


@contextmanager
def text_out(dest: Dest) -> Iterator[IO[str]]:
    """An open text stream for ``dest`` (a path is opened UTF-8 with ``\\n`` newlines)."""
    if isinstance(dest, str | os.PathLike):
        with open(dest, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
    else:
        yield dest
