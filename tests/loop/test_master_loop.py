"""MasterLoop.step() in-process: IPC over a real socket, signals through the wakeup pipe, timers
on a fake clock and children from a fake spawner."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastercontrol.config.model import ConfigSet, DaemonConfig, WorkloadConfig
from mastercontrol.daemon.loop import MasterLoop
from mastercontrol.engine.clock import FakeClock
from mastercontrol.store.open import open_store
from tests.loop.fakes import FakeWorld, workload


class Configs:
    def __init__(self, workloads: dict[str, WorkloadConfig]) -> None:
        self.workloads = workloads
        self.problems: list[str] = []

    def __call__(self, path: Path) -> ConfigSet:
        return ConfigSet(dict(self.workloads), DaemonConfig(), list(self.problems))


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[MasterLoop, FakeWorld, Configs, FakeClock]]:
    clock = FakeClock(wall=1_800_000_000.0)
    world = FakeWorld(exit_on={signal.SIGTERM: -signal.SIGTERM})
    store, _ = open_store(tmp_path / "state.db", clock.wall())
    configs = Configs({"svc": workload("svc", start_seconds=1)})
    loop = MasterLoop(
        config_dir=tmp_path,
        socket_path=tmp_path / "mc.sock",
        log_dir=tmp_path / "log",
        store=store,
        clock=clock,
        spawner=world.spawn,
        daemon_config=DaemonConfig(),
        send_signal=world.send,
        load_config=configs,
    )
    loop.start(configs(tmp_path))
    try:
        yield loop, world, configs, clock
    finally:
        loop.close()
        store.close()


def call(loop: MasterLoop, sock: socket.socket, cmd: str, **args: object) -> dict[str, object]:
    sock.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
    buf = b""
    for _ in range(50):
        loop.step(max_wait=0.05)
        sock.setblocking(False)
        try:
            buf += sock.recv(65536)
        except BlockingIOError:
            pass
        if buf.endswith(b"\n"):
            reply: dict[str, object] = json.loads(buf)
            return reply
    raise AssertionError(f"no reply to {cmd}")


def test_ipc_requests_are_answered_by_step(
    rig: tuple[MasterLoop, FakeWorld, Configs, FakeClock],
) -> None:
    loop, _, _, clock = rig
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(loop.control.path))
    reply = call(loop, client, "status", name="svc")
    assert reply["ok"] is True
    assert reply["result"]["state"] == "STARTING"  # type: ignore[index]
    clock.advance(1)
    loop.step(max_wait=0)  # the "up" timer is due
    assert call(loop, client, "status", name="svc")["result"]["state"] == "RUNNING"  # type: ignore[index]
    reply = call(loop, client, "stop", name="nope")
    assert reply["error"]["code"] == "unknown_workload"  # type: ignore[index]
    client.close()


def test_sighup_reloads_and_sigterm_stops_everything(
    rig: tuple[MasterLoop, FakeWorld, Configs, FakeClock],
) -> None:
    loop, world, configs, _ = rig
    configs.workloads["extra"] = workload("extra")
    os.kill(os.getpid(), signal.SIGHUP)
    loop.step(max_wait=1)
    assert "extra" in loop.supervisor.workloads
    assert len(world.live("extra")) == 1

    configs.problems = ["bad.yaml:1: name: broken"]
    os.kill(os.getpid(), signal.SIGHUP)
    loop.step(max_wait=1)  # an invalid config is rejected whole: nothing changes
    assert set(loop.supervisor.workloads) == {"svc", "extra"}

    os.kill(os.getpid(), signal.SIGTERM)
    loop.step(max_wait=1)
    assert loop.supervisor.shutting_down
    loop.lifecycle.reap_all()  # the fake children died of SIGTERM at once
    loop.step(max_wait=0)
    assert loop.done
    assert not world.live("svc") and not world.live("extra")


def test_an_idle_loop_sleeps_until_its_next_deadline(
    rig: tuple[MasterLoop, FakeWorld, Configs, FakeClock],
) -> None:
    loop, _, _, clock = rig
    # The nearest deadline is the "up" timer of svc (start_seconds 1): select waits for it.
    assert loop.timers.timeout(clock.monotonic()) == pytest.approx(1.0)
    clock.advance(1)
    loop.step(max_wait=0)
    nxt = loop.timers.timeout(clock.monotonic())
    assert nxt is not None and nxt > 0.5  # nothing else is due soon: no busy polling


def test_a_new_connection_on_a_reused_fd_number_is_served(
    rig: tuple[MasterLoop, FakeWorld, Configs, FakeClock],
) -> None:
    loop, _, _, _ = rig
    for _ in range(3):  # each connection closes before the next: the kernel reuses its number
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(loop.control.path))
        assert call(loop, client, "ping")["ok"] is True
        client.close()
        for _ in range(5):
            loop.step(max_wait=0.01)  # the master sees the EOF and closes its end
    assert loop.control.registrations().keys() == {loop.control.listener.fileno()}


def _watched_fds(loop: MasterLoop) -> set[int]:
    """The fds the kernel's epoll instance still has registered (/proc fdinfo `tfd:` lines)."""
    epfd = loop.selector.fileno()
    text = Path(f"/proc/self/fdinfo/{epfd}").read_text()
    return {int(line.split()[1]) for line in text.splitlines() if line.startswith("tfd:")}


def test_a_pipe_closed_while_a_forked_child_holds_it_is_no_longer_watched(
    rig: tuple[MasterLoop, FakeWorld, Configs, FakeClock],
) -> None:
    """A restart forks the new run before the old run's pipe reaches EOF and is closed: the
    child holds a copy of the read end until its bootstrap closes it. epoll keeps a closed fd's
    registration while a copy lives and reports EPOLLHUP at every wait: the master spun."""
    loop, _, _, _ = rig
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    loop.outputs.attach("svc", read_fd)
    loop.step(max_wait=0)
    assert read_fd in _watched_fds(loop)
    holder = subprocess.Popen(["sleep", "30"], pass_fds=[read_fd])  # the forked child's copy
    try:
        os.close(write_fd)  # the old run is gone: EOF
        for _ in range(5):
            loop.step(max_wait=0.01)
            if read_fd not in loop.outputs.fds():
                break
        assert read_fd not in loop.outputs.fds()  # the master closed its end
        loop.step(max_wait=0)
        assert read_fd not in _watched_fds(loop)
    finally:
        holder.kill()
        holder.wait(10)
