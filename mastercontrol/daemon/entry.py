"""mastercontrold's entry point: start the keeper and the zygote while the process is small.

The keeper (`mastercontrol.daemon.keeper`) and the zygote (`mastercontrol.child.zygote`, the
fork server of the Python runs) are forked here, before `mastercontrol.daemon.main` and
everything it imports (yaml, croniter, the config, the loop: ~14 MiB and ~0.2 s of imports)
are loaded: the keeper's fork (before it execs its sh) copies a small process, and the zygote
stays one, so the runs it forks share a small heap instead of the master's. Installed as the
`mastercontrold` script and used by `bin/mastercontrold` and `mastercontrol-ctl up`;
`python -m mastercontrol.daemon.main` still works (its keeper and zygote are forked after the
imports). Imports only `mastercontrol.daemon.keeper` and `mastercontrol.child.zygote` (the
child bootstrap's modules, which the zygote needs anyway) at module level; the daemon itself
after the forks.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from mastercontrol.child import zygote
from mastercontrol.daemon import keeper

NO_DAEMON = {"-h", "--help", "--version"}  # options that only print: no keeper for them


def main() -> NoReturn:
    if NO_DAEMON & set(sys.argv[1:]):
        handle, forks = None, None
    else:
        handle = keeper.start()
        forks = zygote.start()  # after the keeper: it must not become the subreaper's child
    from mastercontrol.daemon import main as daemon  # after the forks, on purpose (docstring)

    # No interpreter teardown once main has returned (daemon/main.py `leave`).
    daemon.leave(daemon.main(keeper=handle, zygote=forks, zygote_started=handle is not None))


if __name__ == "__main__":
    sys.exit(main())
