"""The ``twinscan`` command line: thin commands over the library.

Each command parses its options, calls one library function and renders the result. Project
errors (``TwinscanError``) become one line on stderr and the error's exit code; heavy modules
(pandas, scapy, nmap) are imported inside the commands so ``twinscan --help`` stays fast.

Exit codes (``core.errors``; ``twinscan --help`` lists them): 0 success / no differences,
1 differences or findings, 2 usage or input error, 3 environment error, 4 a scan failed,
130 interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer

from twinscan.core.errors import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    TwinscanError,
)

app = typer.Typer(
    name="twinscan",
    help="Run the same port scan through twinscan's own engine and through nmap, and diff the verdicts.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``twinscan: error: message`` to stderr and return the Exit to raise."""
    typer.echo(f"twinscan: error: {message}", err=True)
    return typer.Exit(code)


def funnel(func: Callable[P, R]) -> Callable[P, R]:
    """Turn project errors into one line and an exit code; Ctrl-C into exit 130."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except TwinscanError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", EXIT_INTERRUPTED) from None

    return wrapper


#: commands that take nmap's scanning options (see ``twinscan.cli.options``).
SCANNING_COMMANDS = frozenset({"scan", "compare", "audit"})


def main() -> None:
    import sys

    args = sys.argv[1:]
    if args and args[0] in SCANNING_COMMANDS:
        from twinscan.cli.options import nmap_only_hint

        hint = nmap_only_hint(args[1:])
        if hint is not None:
            typer.echo(f"twinscan: error: {hint}", err=True)
            raise SystemExit(EXIT_USAGE)
    app(prog_name="twinscan")


def _register() -> None:
    # Command modules register themselves on ``app`` when imported.
    from twinscan.cli import (
        audit,  # noqa: F401
        basic,  # noqa: F401
        bench,  # noqa: F401
        compare,  # noqa: F401
        demo,  # noqa: F401
        detect,  # noqa: F401
        diff,  # noqa: F401
        lab,  # noqa: F401
        scan,  # noqa: F401
        who,  # noqa: F401
    )


_register()
