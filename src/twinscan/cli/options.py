"""The scanning options, declared once for every command that scans (``scan``, ``compare``, ...).

A command decorated with :func:`scan_options` gets the shared options (targets, ``-s``, ``-p``,
timing, ...) added to its signature and receives them as one :class:`ScanOptions`, so the
commands cannot drift apart. nmap's letters are accepted as nmap takes them: ``-sS -sU``,
``-sSU``, ``-s all``; ``-T4`` or ``-T aggressive``; the options nmap users type by habit that
twinscan does anyway (``-Pn``, ``-n``, ``--reason``) are accepted and change nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer

from twinscan.cli.scan_request import (
    ALL_LETTERS,
    NMAP_ONLY_OPTIONS,
    NMAP_ONLY_SCAN_TYPES,
    ScanOptions,
    describe_request,
    letters_of,
    nmap_only_hint,
    parse_letters,
    scan_options_from,
)

__all__ = [
    "ALL_LETTERS",
    "NMAP_ONLY_OPTIONS",
    "NMAP_ONLY_SCAN_TYPES",
    "ScanOptions",
    "describe_request",
    "letters_of",
    "nmap_only_hint",
    "parse_letters",
    "scan_options",
]

R = TypeVar("R")

_SCAN_TYPES_HELP = (
    "scan types as nmap letters, repeatable or combined (-sS -sU, -sSU, -s all): "
    "T connect, S SYN, F FIN, X Xmas, N NULL, A ACK, W Window, M Maimon, U UDP"
)


_KW = inspect.Parameter.KEYWORD_ONLY

#: (name, annotation, default) of every shared option, in --help order.
_SHARED: list[tuple[str, Any, Any]] = [
    (
        "targets",
        Annotated[
            list[str] | None,
            typer.Argument(
                help="addresses, CIDR blocks, octet ranges (127.0.0.1-5, 127.0.0.*), host names",
                show_default=False,
            ),
        ],
        None,
    ),
    ("scan_types", Annotated[list[str] | None, typer.Option("-s", help=_SCAN_TYPES_HELP)], None),
    (
        "bounce",
        Annotated[
            str | None,
            typer.Option("-b", help="FTP bounce scan through \\[user:pass@]relay\\[:port]"),
        ],
        None,
    ),
    (
        "ports",
        Annotated[
            str | None,
            typer.Option(
                "-p",
                help="ports: 22,80,1000-2000, -p-, T:/U: prefixes, service names, "
                "well-known|registered|dynamic",
            ),
        ],
        None,
    ),
    (
        "top_ports",
        Annotated[int | None, typer.Option("--top-ports", help="the N most common ports")],
        None,
    ),
    ("fast", Annotated[bool, typer.Option("-F", help="fast: the 100 most common ports")], False),
    (
        "input_list",
        Annotated[str | None, typer.Option("-iL", help="read targets from a file ('-' = stdin)")],
        None,
    ),
    (
        "exclude",
        Annotated[
            list[str] | None, typer.Option("--exclude", help="targets to skip (comma-separated)")
        ],
        None,
    ),
    (
        "ipv6",
        Annotated[bool, typer.Option("-6", help="IPv6: resolve host names to IPv6 addresses")],
        False,
    ),
    (
        "timing",
        Annotated[
            str,
            typer.Option(
                "-T",
                help="timing template: 0-5 or paranoid|sneaky|polite|normal|aggressive|insane",
            ),
        ],
        "3",
    ),
    (
        "max_retries",
        Annotated[
            int | None, typer.Option("--max-retries", min=0, help="retransmissions per probe")
        ],
        None,
    ),
    (
        "min_rate",
        Annotated[float | None, typer.Option("--min-rate", help="packets per second, at least")],
        None,
    ),
    (
        "max_rate",
        Annotated[float | None, typer.Option("--max-rate", help="packets per second, at most")],
        None,
    ),
    (
        "scan_delay",
        Annotated[
            str | None, typer.Option("--scan-delay", help="delay between probes (250ms, 1s)")
        ],
        None,
    ),
    (
        "no_randomize",
        Annotated[bool, typer.Option("-r", help="scan ports in order (default: random)")],
        False,
    ),
    (
        "defeat_icmp_ratelimit",
        Annotated[
            bool,
            typer.Option(
                "--defeat-icmp-ratelimit",
                help="UDP: don't wait for rate-limited ICMP (closed|filtered)",
            ),
        ],
        False,
    ),
    (
        "allow_external",
        Annotated[
            bool,
            typer.Option(
                "--allow-external",
                help="allow targets outside loopback, the lab and local addresses "
                "(only networks you are authorised to scan)",
            ),
        ],
        False,
    ),
    (
        "verbose",
        Annotated[
            int, typer.Option("-v", count=True, help="say what is scanned, and how long it took")
        ],
        0,
    ),
    # nmap habits that twinscan does anyway: accepted, and they change nothing.
    (
        "no_ping",
        Annotated[
            bool, typer.Option("-Pn", help="accepted for nmap habit: twinscan never pings first")
        ],
        False,
    ),
    (
        "no_dns",
        Annotated[
            bool,
            typer.Option("-n", help="accepted for nmap habit: twinscan never reverse-resolves"),
        ],
        False,
    ),
    (
        "reason",
        Annotated[
            bool,
            typer.Option("--reason", help="accepted for nmap habit: reasons are always shown"),
        ],
        False,
    ),
]
SHARED_NAMES = tuple(name for name, _, _ in _SHARED)


def scan_options(func: Callable[..., R]) -> Callable[..., R]:
    """Add the shared scanning options to a command; it receives them as ``opts``.

    The command declares ``opts: ScanOptions`` plus its own options; ``--help`` lists the shared
    ones first, in one order for every command.
    """
    own = inspect.signature(func, eval_str=True)
    if "opts" not in own.parameters:
        raise TypeError(f"{func.__name__} must take an `opts: ScanOptions` parameter")
    shared = [
        inspect.Parameter(name, _KW, annotation=annotation, default=default)
        for name, annotation, default in _SHARED
    ]
    rest = [p.replace(kind=_KW) for n, p in own.parameters.items() if n != "opts"]

    @wraps(func)
    def wrapper(**kwargs: Any) -> R:
        opts = scan_options_from({name: kwargs.pop(name) for name in SHARED_NAMES})
        return func(opts=opts, **kwargs)

    wrapper.__signature__ = own.replace(parameters=[*shared, *rest])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{name: annotation for name, annotation, _ in _SHARED},
        **{p.name: p.annotation for p in rest},
    }
    return wrapper
