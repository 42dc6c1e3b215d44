"""`logs -f` keeps following a log across rotation and truncation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mastercontrol.ctl.follow import follow


def test_follow_prints_new_lines_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text("old line, already there\n")
    got: list[str] = []
    deadline = time.monotonic() + 20
    done = threading.Event()

    def stop() -> bool:
        return done.is_set() or len(got) >= 6 or time.monotonic() > deadline

    t = threading.Thread(target=follow, args=(log, got.append, stop, 0.02))
    t.start()
    time.sleep(0.2)  # follow starts at the end: the old line is not repeated
    with open(log, "a") as f:
        f.write("one\ntwo\nthr")
        f.flush()
        time.sleep(0.1)
        f.write("ee\n")
    log.rename(tmp_path / "svc.log.1")  # rotation: a new file takes the name
    with open(tmp_path / "svc.log.1", "a") as f:
        f.write("four (written to the old file after the rename)\n")
    time.sleep(0.1)
    log.write_text("five\nsix\n")
    t.join(25)
    done.set()
    assert got == [
        "one",
        "two",
        "three",
        "four (written to the old file after the rename)",
        "five",
        "six",
    ]
