"""mastercontrol-ctl: the command-line client of the master's IPC socket.

The defaults the parser shows live here, so that building the parser imports neither
`targets` nor `systemd_unit` (and their dataclasses, sysconfig): commands that need neither,
`down` among them, start faster.
"""

from pathlib import Path

DEFAULT_WAIT_SECONDS = 60.0  # --wait / --timeout of start, stop, restart
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")  # systemd-unit --install
