"""What the CLI's exit codes mean, and the one error type its commands raise.

    0  done
    1  the command ran and found a problem (a dry run rejected, a letter not moved, secrets missing)
    2  usage: a bad argument, an unknown flow, a missing or unreadable file, a file that is not JSON
    3  configuration: no region, no credentials, an unknown profile or stack
    4  unreachable: the endpoint does not answer (a stopped ``make dev``, no network)
    5  AWS refused a request (access denied, throttled, ...)
    70 a defect in the CLI itself (SWITCHYARD_DEBUG=1 shows the traceback)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PROBLEM = 1
    USAGE = 2
    CONFIGURATION = 3
    UNREACHABLE = 4
    AWS_REFUSED = 5
    INTERNAL = 70


class CliError(Exception):
    """A failure told to the operator as one line, with the exit code that classifies it."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code
