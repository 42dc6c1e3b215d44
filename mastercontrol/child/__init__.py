"""Code that runs in a forked workload child: the bootstrap (spawn), rlimits, one-shot runs.

The master calls `spawn()` here and `mastercontrol-ctl run` calls `run_foreground()`; what runs
after the fork must not touch the master's state. So this package imports only the standard
library, `mastercontrol.config.model`, `mastercontrol.engine` and itself: never sqlite3 (the
child must not use the master's connection), psutil (the child must not pay for it), bottle or
waitress, and never `mastercontrol.store` or `mastercontrol.daemon` (tests/unit/
test_core_imports.py enforces it).
"""
