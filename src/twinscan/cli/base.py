"""The ``twinscan`` Typer app and what every command module shares: ``funnel`` (project errors
to one line and an exit code) and ``fail``. No command is registered here: a command module
registers itself on ``app`` when imported (``twinscan.cli`` decides which to import).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer

from twinscan.cli.scan_request import SCANNING_COMMANDS
from twinscan.core.errors import (
    EXIT_CODES_HELP,
    EXIT_USAGE,
    TwinscanError,
    error_line,
    failure,
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

__all__ = ["SCANNING_COMMANDS", "app", "fail", "funnel"]

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``twinscan: error: message`` to stderr and return the Exit to raise."""
    typer.echo(error_line(message), err=True)
    return typer.Exit(code)


def funnel(func: Callable[P, R]) -> Callable[P, R]:
    """Turn project errors into one line and an exit code; Ctrl-C into exit 130."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (TwinscanError, KeyboardInterrupt) as exc:
            raise fail(*failure(exc)) from None

    return wrapper


@app.callback()
def _root() -> None:
    # an explicit callback keeps ``twinscan COMMAND`` a group when only one command module is
    # imported (Typer runs a lone command without its name otherwise)
    pass
