"""twinscan's exception tree. The CLI maps each to a one-line message and an exit code.

TwinscanError
├── UsageError            bad input from the user (exit 2)
│   ├── InputFileError    a file that is missing, unreadable, malformed or hostile
│   └── TargetError       a target or port specification that does not parse or is not allowed
├── EnvironmentProblem    the machine lacks something: root, nmap, netns support (exit 3)
└── ScanFailed            a scan could not run to the end (exit 4)
"""

from __future__ import annotations


class TwinscanError(Exception):
    exit_code = 1


class UsageError(TwinscanError):
    exit_code = 2


class InputFileError(UsageError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class TargetError(UsageError):
    pass


class EnvironmentProblem(TwinscanError):
    exit_code = 3


class ScanFailed(TwinscanError):
    exit_code = 4
