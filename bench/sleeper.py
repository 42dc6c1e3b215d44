"""The exec'd program of the `command:` scenarios: `python3 sleeper.py MODE PATH`, for both tools.

`idle`: append one byte to PATH (its code runs), then sleep (bounded). `churn` is not this
script (a Python start-up costs ~10 ms of CPU, more than the supervisors measured): the churn
scenario execs `/bin/sh -c 'printf . >>"$1"'`. Imports only the standard library (run with
`-I -S`: no site, no user paths, so the interpreter start is small and the same for both).
"""

import os
import sys
import time

IDLE_MAX_SECONDS = 3600.0  # a sleeper a broken bench run forgot cannot live forever


def main(argv: list[str]) -> int:
    mode, path = argv[1], argv[2]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b".")
    os.close(fd)
    if mode == "idle":
        time.sleep(IDLE_MAX_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
