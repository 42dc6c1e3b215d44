"""Decode how a child ended into (exit code, signal, reason, text).

The child bootstrap (`mastercontrol.daemon.spawn`) exits with the reserved codes below when it
fails before or around the workload's own code, so the master can tell a workload's own exit
status from a setup failure or a MemoryError. Imports only the standard library.
"""

from __future__ import annotations

# Reserved exit codes of the child bootstrap. Workloads should not use them themselves.
CHILD_EXIT_SETUP_FAILED = 120  # rlimit, nice, chdir or fd setup failed before the workload ran
CHILD_EXIT_IMPORT_FAILED = 121  # module could not be imported / entry point not found
CHILD_EXIT_MEMORY = 122  # the workload raised MemoryError (RLIMIT_AS reached)
CHILD_EXIT_EXEC_FAILED = 127  # exec of a `command:` workload failed (like a shell)
