"""``twinscan scan`` without typer, for the command lines typer would read the same way.

Importing typer (and the click it carries) and building the command from its signatures takes
longer than nmap's whole scan of 1000 loopback ports, and a sixth of a 65535-port scan's peak
memory (benchmarks/results/phases.md: the start-up row). ``parse`` reads a ``scan`` command
line with the option table ``cli.scan_spec.SPEC`` -- generated from the typer command itself
(``python -m twinscan.cli.scan_fast`` rewrites it; tests/cli/test_scan_fast.py fails while it
is stale) -- and returns what typer would hand the command, or None for anything it does not
read exactly as click does: help, an unknown or misspelt option, a value click would refuse,
``--``, ``-p=80``. typer then parses that command line as before, with its help and its
errors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twinscan.cli.scan_request import ScanOptions, scan_options_from

#: spec kinds: how click reads the option
FLAG, COUNT, VALUE, MULTIPLE, ARGUMENTS = "flag", "count", "value", "multiple", "arguments"

Parsed = tuple[ScanOptions, dict[str, Any]]


def _convert(kind: str, text: str) -> Any:
    """click's conversion of one value, or ``_REFUSED`` where click would refuse it."""
    try:
        if kind == "str":
            return text
        if kind == "path":  # click.Path's checks with typer's defaults: an existing path must
            return Path(text) if _readable_or_missing(text) else _REFUSED  # be readable
        if kind == "int":
            return int(text)
        if kind == "int>=0":
            value = int(text)
            return value if value >= 0 else _REFUSED
        if kind == "float":
            return float(text)
        if kind.startswith("choice:"):
            from twinscan.core.vocab import ScanEngine

            choices = kind.removeprefix("choice:").split("|")
            return ScanEngine(text) if text in choices else _REFUSED
    except ValueError:
        return _REFUSED
    return _REFUSED


_REFUSED = object()


def _readable_or_missing(text: str) -> bool:
    try:
        os.stat(text)
    except OSError:
        return True
    except ValueError:  # an embedded NUL: click fails there too
        return False
    return os.access(text, os.R_OK)


def parse(argv: Sequence[str]) -> Parsed | None:
    """``scan``'s arguments (after ``scan``) as (``ScanOptions``, the command's own options),
    or None: let typer parse them."""
    from twinscan.cli.scan_spec import SHARED_NAMES, SPEC

    by_opt: dict[str, tuple[str, str, str]] = {}
    values: dict[str, Any] = {}
    positional: list[str] = []
    for name, opts, kind, value_type, default in SPEC:
        if kind == ARGUMENTS:
            values[name] = positional
            continue
        if kind == MULTIPLE:
            values[name] = []
        elif value_type.startswith("choice:") and default is not None:
            values[name] = _convert(value_type, default)  # typer hands over the enum member
        else:
            values[name] = default
        for opt in opts:
            by_opt[opt] = (name, kind, value_type)

    def take(opt: str, value: str | None) -> bool:
        name, kind, value_type = by_opt[opt]
        if kind == FLAG:
            values[name] = True
        elif kind == COUNT:
            values[name] += 1
        else:
            assert value is not None
            converted = _convert(value_type, value)
            if converted is _REFUSED:
                return False
            if kind == MULTIPLE:
                values[name].append(converted)
            else:
                values[name] = converted
        return True

    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token[:1] != "-":
            positional.append(token)
            continue
        if token in ("-", "--") or "=" in token and not token.startswith("--"):
            return None
        opt, eq, attached = token.partition("=")
        if opt in by_opt:
            kind = by_opt[opt][1]
            if kind in (FLAG, COUNT):
                if eq or not take(opt, None):
                    return None
                continue
            if eq:
                value = attached
            elif i < len(argv):
                value = argv[i]  # click takes the next argument whatever it looks like
                i += 1
            else:
                return None
            if not take(opt, value):
                return None
            continue
        if token.startswith("--") or token[:2] not in by_opt:
            return None
        # -sS, -T4, -p-: a one-letter option and its value; -vv, -rF: one-letter flags
        if by_opt[token[:2]][1] not in (FLAG, COUNT):
            if not take(token[:2], token[2:]):
                return None
            continue
        for letter in token[1:]:
            opt = f"-{letter}"
            if opt not in by_opt or by_opt[opt][1] not in (FLAG, COUNT) or not take(opt, None):
                return None
    for name, _opts, kind, _type, default in SPEC:
        if kind in (MULTIPLE, ARGUMENTS):
            values[name] = values[name] or default
    shared = {name: values.pop(name) for name in SHARED_NAMES}
    return scan_options_from(shared), values


def run(parsed: Parsed) -> int:
    """``twinscan scan`` with options ``parse`` read: what the typer command does, its errors
    funneled the same way (one line, the error's exit code). Returns the exit code."""
    from twinscan.cli.scan_run import run_scan_command
    from twinscan.core.errors import TwinscanError, error_line, failure

    opts, own = parsed
    try:
        run_scan_command(opts, **own)
    except (TwinscanError, KeyboardInterrupt) as exc:  # as cli.base.funnel
        message, code = failure(exc)
        print(error_line(message), file=sys.stderr)
        return code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


# --- the table, from the typer command -----------------------------------------------------------


def spec_from_typer() -> tuple[tuple[str, ...], list[tuple[str, tuple[str, ...], str, str, Any]]]:
    """(shared option names, the table) as the typer ``scan`` command declares them."""
    import inspect

    import typer.main
    from typer.core import TyperArgument as Argument
    from typer.core import TyperOption as Option

    from twinscan.cli import app
    from twinscan.cli.options import SHARED_NAMES

    command = typer.main.get_group(app).commands["scan"]
    defaults = {
        name: p.default for name, p in inspect.signature(app_scan_function()).parameters.items()
    }
    table: list[tuple[str, tuple[str, ...], str, str, Any]] = []
    for param in command.params:
        name = param.name
        assert name is not None
        if isinstance(param, Argument):
            kind = ARGUMENTS
        elif isinstance(param, Option) and param.count:
            kind = COUNT
        elif isinstance(param, Option) and param.is_flag:
            if param.secondary_opts:
                raise ValueError(f"{name}: --x/--no-x flags are not in the fast parser")
            kind = FLAG
        elif isinstance(param, Option) and param.multiple:
            kind = MULTIPLE
        else:
            kind = VALUE
        table.append((name, tuple(param.opts), kind, _type_name(param.type), defaults[name]))
    return SHARED_NAMES, table


def app_scan_function() -> Any:
    from twinscan.cli import scan as scan_module

    return scan_module.scan


def _type_name(param_type: Any) -> str:
    """The conversion ``_convert`` does for a click parameter type (typer's own click)."""
    from typer._click import types as click
    from typer.models import TyperPath

    if isinstance(param_type, TyperPath):
        return "path"
    if isinstance(param_type, click.IntRange):
        if param_type.min == 0 and param_type.max is None and not param_type.min_open:
            return "int>=0"
        raise ValueError(f"no fast conversion for {param_type!r}")
    if isinstance(param_type, click.FloatRange):
        raise ValueError(f"no fast conversion for {param_type!r}")
    kinds = (
        (click.IntParamType, "int"),
        (click.FloatParamType, "float"),
        (click.StringParamType, "str"),
        (click.BoolParamType, "bool"),  # flags: no value is converted
    )
    for cls, name in kinds:
        if isinstance(param_type, cls):
            return name
    choices = getattr(param_type, "choices", None)
    if choices is not None:
        return "choice:" + "|".join(str(getattr(c, "value", c)) for c in choices)
    raise ValueError(f"no fast conversion for {param_type!r}")


def _literal(value: Any) -> str:
    """``value`` as ruff formats it (double quotes; these strings hold no quote)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def spec_source() -> str:
    """The text of ``cli/scan_spec.py`` for the typer command as it is now."""
    shared, table = spec_from_typer()
    lines = [
        '"""The options of ``twinscan scan`` as ``cli.scan_fast`` reads them: generated by',
        "``python -m twinscan.cli.scan_fast`` from the typer command (cli/scan.py,",
        'cli/options.py); do not edit."""',
        "",
        "from typing import Any",
        "",
        "SHARED_NAMES = (",
        *(f"    {_literal(name)}," for name in shared),
        ")",
        "",
        "#: (name, option strings, kind, value type, default)",
        "SPEC: tuple[tuple[str, tuple[str, ...], str, str, Any], ...] = (",
    ]
    for name, opts, kind, value_type, default in table:
        text = _literal(getattr(default, "value", default))
        entry = (_literal(name), _literal(opts), _literal(kind), _literal(value_type), text)
        lines.append(f"    ({', '.join(entry)}),")
    lines.append(")")
    return "\n".join(lines) + "\n"


SPEC_PATH = Path(__file__).with_name("scan_spec.py")

if __name__ == "__main__":
    SPEC_PATH.write_text(spec_source(), encoding="utf-8")
    print(f"wrote {SPEC_PATH}")
