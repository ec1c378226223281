"""The ``twinscan`` command line: thin commands over the library.

Each command parses its options, calls one library function and renders the result. Project
errors (``TwinscanError``) become one line on stderr and the error's exit code; heavy modules
(pandas, scapy, nmap) are imported inside the commands so ``twinscan --help`` stays fast.

Exit codes (``core.errors``; ``twinscan --help`` lists them): 0 success / no differences,
1 differences or findings, 2 usage or input error, 3 environment error, 4 a scan failed,
130 interrupted.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from twinscan.cli.scan_request import SCANNING_COMMANDS, nmap_only_hint
from twinscan.core import phases

if TYPE_CHECKING:
    from twinscan.cli.base import app, fail, funnel

__all__ = ["SCANNING_COMMANDS", "app", "console", "fail", "funnel", "main"]

#: the module that registers each top-level command. ``twinscan scan ...`` imports only
#: ``twinscan.cli.scan`` (the others cost ~10 ms of imports a scan does not need); ``--help``,
#: an unknown command and ``twinscan.cli.app`` register them all.
COMMAND_MODULES: dict[str, str] = {
    "audit": "twinscan.cli.audit",
    "bench": "twinscan.cli.bench",
    "compare": "twinscan.cli.compare",
    "demo": "twinscan.cli.demo",
    "detect": "twinscan.cli.detect",
    "diff": "twinscan.cli.diff",
    "import-nmap": "twinscan.cli.basic",
    "lab": "twinscan.cli.lab",
    "scan": "twinscan.cli.scan",
    "version": "twinscan.cli.basic",
    "who": "twinscan.cli.who",
}


#: The script's cyclic collector runs after this many new container objects, not 700. A
#: command's objects are mostly acyclic (imports, result lists, rows): a 1000-port SYN scan
#: spent ~8 ms of its ~100 in 28 collections that found nothing to free, a 65535-port one ~13
#: ms (``gc.callbacks``); with this threshold neither collects at all. What is left for a
#: long command (``detect`` over a large capture) is garbage in cycles kept until the next
#: collection: at most this many objects.
GC_YOUNG_THRESHOLD = 100_000


def register_all() -> None:
    for module in sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(module)


def __getattr__(name: str) -> Any:
    """``twinscan.cli.app``: the app with every command registered (tests, library users);
    ``fail`` and ``funnel`` from ``cli.base`` (imported when asked for: it imports typer)."""
    if name in ("app", "fail", "funnel"):
        from twinscan.cli import base

        if name == "app":
            register_all()
        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    phases.mark("twinscan.cli imported")
    # No command does linear algebra, but numpy's OpenBLAS starts a thread per CPU when it is
    # loaded, and they spin: about 0.1 s of CPU per large scan on two CPUs (/usr/bin/time).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from twinscan.core.errors import EXIT_USAGE, error_line

    args = sys.argv[1:]
    if args and args[0] in SCANNING_COMMANDS:
        hint = nmap_only_hint(args[1:])
        if hint is not None:
            print(error_line(hint), file=sys.stderr)
            raise SystemExit(EXIT_USAGE)
    fast = None
    if args and args[0] == "scan":
        from twinscan.cli.scan_fast import parse

        fast = parse(args[1:])
    code = 0
    try:
        if fast is not None:  # a command line typer would read the same way: no typer
            from twinscan.cli.scan_fast import run

            phases.mark("options parsed without typer")
            code = run(fast)
            return
        from twinscan.cli.base import app

        module = COMMAND_MODULES.get(args[0]) if args else None
        if module is None:
            register_all()
        else:
            importlib.import_module(module)
        phases.mark("command module imported")
        app(prog_name="twinscan")
    finally:
        phases.mark("command returned")
        if phases.shown():
            from twinscan.cli.debug_timing import print_timing

            print_timing()
        # The process ends with the command. Frozen, what it allocated is spared the
        # interpreter's last collections over every object (~10 ms of a ~140 ms 1000-port
        # scan); every output is closed by now, and garbage in reference cycles is left to the OS.
        gc.freeze()
        if code:  # (a scan that returned: not one that raised)
            raise SystemExit(code)


def console() -> None:
    """The ``twinscan`` script (and ``python -m twinscan``): ``main``, then the process ends
    without the interpreter's teardown where that has nothing left to do. ``main`` itself
    returns or raises ``SystemExit`` as usual, for callers in the same process."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        main()
    except SystemExit as stop:
        if stop.code is not None and not isinstance(stop.code, int):
            raise
        exit_without_teardown(stop.code or 0)
        raise
    exit_without_teardown(0)


def exit_without_teardown(code: int) -> None:
    """End the process now, when the interpreter's teardown has nothing left to do: no exit
    handler registered, no other thread, stdout and stderr flushed. The teardown then only
    frees every object and module one by one (5-9 ms of a scan: ``bench_phases.py``'s exit
    row). Returns when any of that does not hold, and the process exits as usual."""
    import atexit

    threading = sys.modules.get("threading")
    if atexit._ncallbacks() or (threading is not None and threading.active_count() > 1):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # (a closed pipe: left to the usual exit and its message)
        return
    os._exit(code)
