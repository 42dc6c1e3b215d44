"""Exception hierarchy and process exit codes shared by the daemon and the CLI.

Imports only the standard library.
"""

from __future__ import annotations

import os

# Exit codes of mastercontrol-ctl (supervisorctl / LSB conventions).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_UNKNOWN_WORKLOAD = 4
EXIT_UNREACHABLE = 7
EXIT_INTERRUPTED = 130

# Exit codes of mastercontrold (sysexits.h).
EX_SOFTWARE = os.EX_SOFTWARE  # 70: internal error
EX_CONFIG = os.EX_CONFIG  # 78: the configuration is unusable
EX_TEMPFAIL = os.EX_TEMPFAIL  # 75: another daemon holds the lock


class MasterControlError(Exception):
    """Base class of every error this package raises on purpose."""


class IllegalTransition(MasterControlError):
    """A state machine trigger that is not allowed from the current state."""


class StoreError(MasterControlError):
    """The state database could not be opened or written."""


class DaemonLocked(MasterControlError):
    """Another mastercontrold already owns this socket / database."""


class DeployError(MasterControlError):
    """A deploy task cannot go on: bad inventory or option, lock held, build failed."""


class IPCError(MasterControlError):
    """An IPC request failed; carries the stable error code the master sent."""

    def __init__(self, code: str, message: str, details: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details
