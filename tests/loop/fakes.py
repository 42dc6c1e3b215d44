"""A fake spawner and signal sender for scripted histories of the Lifecycle, the Supervisor and
the MasterLoop."""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mastercontrol.child.spawn import ChildSpec
from mastercontrol.config.model import RunMode, WorkloadConfig, WorkloadType
from mastercontrol.daemon.lifecycle import Lifecycle
from mastercontrol.daemon.output import Outputs
from mastercontrol.daemon.supervisor import Supervisor
from mastercontrol.engine.clock import FakeClock
from mastercontrol.engine.timers import TimerHeap, TimerKey
from mastercontrol.store.open import open_store
from mastercontrol.store.queries import Store

# Above Linux's pid_max: a stray real signal to one of these can never hit a process.
FAKE_PID_BASE = 5_000_000


@dataclass
class FakeChild:
    pid: int
    spec: ChildSpec
    log_fd: int | None = None
    code: int | None = None
    started: int | None = None
    scope: str | None = None

    @property
    def exitcode(self) -> int | None:
        return self.code


@dataclass
class FakeWorld:
    """Spawns FakeChild objects and records every signal; children exit when told to."""

    children: list[FakeChild] = field(default_factory=list)
    signals: list[tuple[int, int]] = field(default_factory=list)
    exit_on: dict[int, int] = field(default_factory=dict)  # signal -> exit code it causes
    fail_spawns: int = 0

    def spawn(self, spec: ChildSpec, close_fds: Iterable[int]) -> FakeChild:
        if self.fail_spawns:
            self.fail_spawns -= 1
            raise OSError(11, "Resource temporarily unavailable")
        child = FakeChild(FAKE_PID_BASE + len(self.children), spec)
        self.children.append(child)
        return child

    def send(self, pgid: int, signum: int, *, unreaped: bool = False) -> None:
        self.signals.append((pgid, signum))
        for child in self.children:
            if child.pid == pgid and child.code is None and signum in self.exit_on:
                child.code = self.exit_on[signum]

    def live(self, name: str) -> list[FakeChild]:
        return [c for c in self.children if c.spec.name == name and c.code is None]

    def runs(self, name: str) -> int:
        return sum(1 for c in self.children if c.spec.name == name)


def workload(name: str, kind: str = "service", **fields: object) -> WorkloadConfig:
    wtype = WorkloadType(kind)
    mode = {"service": RunMode.FOREVER, "script": RunMode.N_TIMES, "agent": RunMode.SCHEDULE}
    values: dict[str, object] = {
        "name": name,
        "type": wtype,
        "run_mode": mode[kind],
        "module": "tests.integration.workloads",
        "entry_point": "sleep_forever",
    }
    values.update(fields)
    return WorkloadConfig(**values)  # type: ignore[arg-type]


@dataclass
class Rig:
    life: Lifecycle
    sup: Supervisor
    clock: FakeClock
    timers: TimerHeap[TimerKey]
    world: FakeWorld
    db: Path

    @property
    def store(self) -> Store:
        return self.life.store

    def advance(self, seconds: float) -> None:
        """Move time on and fire every timer that comes due, in order."""
        self.clock.advance(seconds)
        self.fire()

    def fire(self) -> None:
        for _ in range(1000):
            due = self.timers.pop_due(self.clock.monotonic())
            if not due:
                return
            handlers = self.life.timer_handlers()
            for key in due:
                handlers[key.kind](key.name)

    def exit(self, name: str, code: int) -> None:
        """The live child of `name` exits with `code` (negative: killed by that signal)."""
        (child,) = self.world.live(name)
        child.code = code
        self.life.reap_all()

    def state(self, name: str) -> str:
        return self.sup.workloads[name].state.value


def make_rig(tmp_path: Path, db_name: str = "state.db") -> Rig:
    clock = FakeClock(wall=1_800_000_000.0)  # 2027-01-15T08:00:00Z: a whole minute
    timers: TimerHeap[TimerKey] = TimerHeap()
    world = FakeWorld(exit_on={signal.SIGTERM: -signal.SIGTERM, signal.SIGKILL: -signal.SIGKILL})
    db = tmp_path / db_name
    store, _ = open_store(db, clock.wall())
    life = Lifecycle(store, clock, timers, Outputs(tmp_path / "log"), world.spawn, world.send)
    return Rig(life, Supervisor(life), clock, timers, world, db)
