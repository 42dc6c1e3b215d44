"""mastercontrold's entry point: start the keeper while the process is small, then the daemon.

The keeper (`mastercontrol.daemon.keeper`) is forked here, before `mastercontrol.daemon.main`
and everything it imports (yaml, croniter, the config, the loop: ~14 MiB and ~0.2 s of
imports) are loaded, so its fork (before it execs its sh) copies a small process. Installed
as the `mastercontrold` script and used by `bin/mastercontrold` and `mastercontrol-ctl up`;
`python -m mastercontrol.daemon.main` still works (its keeper is forked after the imports).
Imports only `mastercontrol.daemon.keeper` at module level; the daemon itself after the fork.
"""

from __future__ import annotations

import sys

from mastercontrol.daemon import keeper

NO_DAEMON = {"-h", "--help", "--version"}  # options that only print: no keeper for them


def main() -> int:
    handle = None if NO_DAEMON & set(sys.argv[1:]) else keeper.start()
    from mastercontrol.daemon import main as daemon  # after the fork, on purpose (docstring)

    return daemon.main(keeper=handle)


if __name__ == "__main__":
    sys.exit(main())
