"""twinscan's exception tree. The CLI maps each to a one-line message and an exit code.

Every exception twinscan defines is in this tree (the leaves live next to the code that raises
them, and subclass a class here):

TwinscanError                         (exit 4 if raised bare: something failed)
├── UsageError                        bad input from the user (exit 2)
│   ├── InputFileError                a file that is missing, unreadable, malformed or hostile
│   │   ├── lab.spec.SpecError        a lab spec that does not parse or validate
│   │   └── PayloadFileError          an nmap-payloads file that does not parse
│   ├── TargetError                   a target or port specification that does not parse or is
│   │   │                             not allowed
│   │   └── PortSpecError             a port list that does not parse (also a ValueError)
│   └── lab.netns.LabNotUp            a lab command for a lab that is not up
├── EnvironmentProblem                the machine lacks something: root, nmap, netns (exit 3)
├── ScanFailed                        a scan could not run to the end (exit 4)
│   ├── protocol.ftp_bounce.RelayRefused    the FTP relay refused the login or a PORT
│   ├── protocol.ftp_bounce.ProtocolError   the FTP relay does not speak FTP
│   └── core.rules.UnexpectedConnectError   connect() failed with an errno nmap calls fatal
└── MalformedData                     bytes or text that do not parse (also a ValueError; exit 2)
    ├── protocol.packets.MalformedReply       a packet off the wire (dropped by the engine)
    ├── protocol.udp_payloads.PayloadSyntaxError   nmap-payloads text
    ├── formats.nmap_xml_read.NmapXmlError   nmap XML text
    └── detect.capture.NotACapture           a pcap/pcapng capture

``MalformedData`` is raised by pure parsers that do not know where their input came from; the
caller that does (a file path, a socket) catches it and raises an ``InputFileError`` naming the
file, or drops the packet. One that escapes is still one line and exit 2.

Exit codes (``twinscan --help`` and the README list them): 0 success / no differences,
1 differences or findings (never an error), 2 usage or input error, 3 environment error,
4 a scan failed, 130 interrupted.
"""

from __future__ import annotations

from typing import Any

#: The exit codes, by meaning (``twinscan --help`` prints ``EXIT_CODES_HELP``).
EXIT_OK = 0
EXIT_DIFFERENT = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_SCAN_FAILED = 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit codes: 0 success / no differences; 1 differences or findings (compare, diff, who); "
    "2 usage or input error; 3 environment error (no root/CAP_NET_RAW, nmap missing); "
    "4 a scan failed; 130 interrupted."
)


def error_line(message: str) -> str:
    """The one line a command prints on stderr when it fails."""
    return f"twinscan: error: {message}"


def failure(exc: TwinscanError | KeyboardInterrupt) -> tuple[str, int]:
    """What a command says and exits with for a project error or a Ctrl-C."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    return str(exc), exc.exit_code


def _rebuild(cls: type[TwinscanError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class TwinscanError(Exception):
    exit_code = EXIT_SCAN_FAILED

    def __reduce__(self) -> tuple[Any, ...]:
        # Forked workers pickle errors to the parent; subclasses with their own __init__
        # signature (InputFileError, SpecError) would not unpickle through ``cls(*args)``.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class UsageError(TwinscanError):
    exit_code = EXIT_USAGE


class InputFileError(UsageError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class PayloadFileError(InputFileError):
    """An nmap-payloads file (the installed one or ``$TWINSCAN_NMAP_PAYLOADS``) that does not parse."""


class TargetError(UsageError):
    pass


class PortSpecError(TargetError, ValueError):
    """A port list that does not parse: ``-p`` (exit 2), or a port list inside a file (its
    reader catches the ValueError and names the file)."""


class EnvironmentProblem(TwinscanError):
    exit_code = EXIT_ENVIRONMENT


class ScanFailed(TwinscanError):
    exit_code = EXIT_SCAN_FAILED


class MalformedData(TwinscanError, ValueError):
    exit_code = EXIT_USAGE
