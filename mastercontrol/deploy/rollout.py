"""One rolling deployment, start to end: build (or reuse) the release, walk the waves, gate each
one, roll a failed wave back and stop, journal every step (sqlite, and the central when one is
configured), and continue an interrupted or incomplete deployment on `--resume`.

The order inside a wave: every client updated in parallel (remote.Remote.update) -> the health
gate over the switched ones -> on any failure, every switched client of the wave rolled back in
parallel and checked to run its previous release again; no later wave is touched.

Uses fabric only through remote.py; must not import the daemon or the API.
"""

from __future__ import annotations

import getpass
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mastercontrol.config.model import Inventory, InventoryClient
from mastercontrol.deploy import build, gate, layout, plan
from mastercontrol.deploy.central import Central
from mastercontrol.deploy.journal import Deployment, Journal
from mastercontrol.deploy.plan import Outcome, Result, Status
from mastercontrol.deploy.remote import Remote, parallel
from mastercontrol.deploy.ssh import rsync_argv
from mastercontrol.errors import DeployError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INCOMPLETE = 3  # nothing failed, but some clients are pending
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Context:
    """Everything a task needs, resolved once from the inventory and the project root."""

    root: Path
    inventory: Inventory
    state_dir: Path
    config_dir: Path
    app_dir: Path | None
    remote: Remote
    out: Callable[[str], None]
    central: Central | None = None

    @property
    def settings(self) -> Any:
        return self.inventory.deploy


@dataclass(frozen=True)
class DeployOptions:
    batch: int
    clients: tuple[str, ...] = ()
    tag: str | None = None
    release: str | None = None
    resume: bool = False
    resume_id: int | None = None  # --resume=ID: that deployment, not the latest
    unreachable_fail: bool = False
    as_dict: dict[str, Any] = field(default_factory=dict)


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def probe_for(client: InventoryClient, central: Central | None, since_wall: float) -> gate.Probe:
    """How the gate asks `client`: its own API (`api_url`); with a central configured, the
    central's view of it when it has no `api_url` or its API does not answer."""
    via_central = central.health_probe(client.name, since_wall) if central is not None else None
    if client.api_url is None:
        if via_central is not None:
            return via_central
        return lambda: gate.Snapshot(
            error="no api_url in the inventory and no central_url: cannot check health"
        )
    own = gate.api_probe(client.api_url, client.api_token)
    return own if via_central is None else gate.first_answer(own, via_central)


class Rollout:
    def __init__(self, ctx: Context, journal: Journal) -> None:
        self.ctx = ctx
        self.journal = journal
        self.out = ctx.out

    # ---------------------------------------------------------------- starting

    def start(self, opts: DeployOptions) -> tuple[Deployment, list[InventoryClient]]:
        """A new deployment (release built now unless --release), or the one --resume takes."""
        by_name = {c.name: c for c in self.ctx.inventory.clients}
        if opts.resume:
            dep = self.resumable(opts.resume_id)
            todo = [r.name for r in dep.clients if r.outcome in plan.TO_DO]
            missing = [n for n in todo if n not in by_name]
            if missing:
                raise DeployError(f"clients of deployment {dep.id} not in the inventory: {missing}")
            self.out(f"resuming deployment {dep.id} of {dep.release}: {', '.join(todo)}")
            return dep, [by_name[n] for n in todo]
        chosen, unknown = plan.select(self.ctx.inventory.clients, opts.clients, opts.tag)
        if unknown:
            raise DeployError(f"no such client in the inventory: {', '.join(unknown)}")
        if not chosen:
            raise DeployError("no client selected")
        commit = build.git_commit(self.ctx.root)
        if opts.release is not None:
            release = layout.check_release_id(opts.release)
            for c in chosen:
                build.staged(self.ctx.state_dir, release, c.name)
        else:
            release = layout.new_release_id(commit)
            self.out(f"building release {release}")
            build.stage(self.ctx.root, self.ctx.state_dir, release, chosen, self.ctx.config_dir,
                        self.ctx.app_dir)  # fmt: skip
        names = [[c.name for c in w] for w in plan.waves(chosen, opts.batch)]
        dep_id = self.journal.create(actor(), commit, release, opts.as_dict, names)
        created = self.journal.get(dep_id)
        assert created is not None
        dep = created
        if self.ctx.central is not None:
            central_id = self.ctx.central.create(self.central_record(dep))
            if central_id is None:
                self.out(f"warning: central not told: {self.ctx.central.last_error}")
            else:
                self.journal.set_status(dep_id, Status.RUNNING, central_id=central_id)
                dep = self.journal.get(dep_id) or dep
        return dep, chosen

    def resumable(self, dep_id: int | None) -> Deployment:
        """The deployment `--resume` (dep_id None: the journal's last entry) may continue, or
        DeployError saying why not. Only an interrupted or incomplete deployment is resumed:
        a failed one stopped because its release failed, and resuming it would push that
        release to the clients it spared; a `fab rollback` entry is never repeated."""
        dep = self.journal.latest() if dep_id is None else self.journal.get(dep_id)
        if dep is None:
            where = "the journal is empty" if dep_id is None else f"no deployment {dep_id}"
            raise DeployError(f"nothing to resume: {where} (`fab releases` lists the journal)")
        which = f"the last entry (#{dep.id})" if dep_id is None else f"deployment {dep.id}"
        if dep.options.get("action") == "rollback":
            raise DeployError(
                f"nothing to resume: {which} is a `fab rollback`, which --resume never repeats; "
                "to continue an earlier deployment anyway, give its id: --resume=ID "
                "(`fab releases`)"
            )
        if dep.status is Status.SUCCEEDED:
            raise DeployError(f"nothing to resume: {which} has finished: every client updated")
        if dep.status is Status.FAILED:
            raise DeployError(
                f"nothing to resume: {which} has finished: it failed (a wave was rolled back "
                "or failures passed max_failed), and --resume never pushes a failed release "
                "again; fix the release and run a new `fab deploy`"
            )
        return dep

    # ---------------------------------------------------------------- running

    def run(self, dep: Deployment, clients: list[InventoryClient], batch: int) -> int:
        """Walk the waves; returns the exit code. KeyboardInterrupt is recorded, then re-raised."""
        self.journal.set_status(dep.id, Status.RUNNING)
        stopped = False
        try:
            for i, wave in enumerate(plan.waves(clients, batch)):
                self.out(f"wave {i + 1}: {', '.join(c.name for c in wave)}")
                if self.wave(dep, wave):
                    stopped = True
                    self.out(f"wave {i + 1} failed: rolled back; later waves untouched")
                    break
        except KeyboardInterrupt:
            self.journal.set_status(dep.id, Status.INTERRUPTED, "interrupted (Ctrl-C)")
            self.report_central(dep.id)
            raise
        final = self.journal.get(dep.id)
        assert final is not None
        status = plan.final_status((r.outcome for r in final.clients), stopped)
        self.journal.set_status(dep.id, status)
        self.report_central(dep.id)
        self.summary(dep.id)
        return {Status.SUCCEEDED: EXIT_OK, Status.INCOMPLETE: EXIT_INCOMPLETE}.get(
            status, EXIT_FAILED
        )

    def wave(self, dep: Deployment, wave: Sequence[InventoryClient]) -> bool:
        """Update, gate and (if needed) roll back one wave; whether the deployment must stop.

        A client whose install failed before its switch (invalid config, no disk, no Python: it
        still runs its old release) counts towards `max_failed` instead of failing the wave,
        while the deployment's failures so far stay within it; a switched client that fails
        (install or gate) always rolls the wave back and stops.
        """
        for c in wave:
            self.journal.set_client(dep.id, c.name, Outcome.IN_PROGRESS)
        staged = {c.name: build.staged(self.ctx.state_dir, dep.release, c.name) for c in wave}
        switch_wall = time.time()  # a heartbeat before it cannot show the new release healthy
        results = parallel(lambda c: self.ctx.remote.update(c, dep.release, staged[c.name]), wave)
        by_name = {r.name: r for r in results}
        for r in results:
            if r.outcome is not Outcome.UPDATED:
                self.journal.set_client(dep.id, r.name, r.outcome, r.reason, r.previous)
                self.out(f"  {r.name}: {r.outcome}: {r.reason}")
        switched = [c for c in wave if by_name[c.name].outcome is Outcome.UPDATED]
        earlier = self.failed_so_far(dep.id, {c.name for c in wave})
        tolerated = plan.tolerated(results, earlier, self.ctx.settings.max_failed)
        if tolerated:
            self.out(f"  {len(tolerated)} client(s) failed before their switch: "
                     f"{earlier + len(tolerated)} failed so far, within max_failed "
                     f"{self.ctx.settings.max_failed}")  # fmt: skip
        verdicts: dict[str, gate.Verdict] = {}
        if switched and (tolerated or not plan.wave_failed(results)):  # else: rolled back anyway
            s = self.ctx.settings
            self.out(f"  gate: {len(switched)} client(s), healthy for {s.min_healthy_seconds:g}s "
                     f"within {s.health_deadline_seconds:g}s")  # fmt: skip
            probes = {c.name: probe_for(c, self.ctx.central, switch_wall) for c in switched}
            verdicts = gate.wait(probes, dep.release, s.health_deadline_seconds,
                                 s.min_healthy_seconds)  # fmt: skip
        failed = [n for n, v in verdicts.items() if not v.healthy]
        failed += [r.name for r in results if r.outcome is Outcome.FAILED and r not in tolerated]
        if not failed:
            for c in switched:
                self.journal.set_client(dep.id, c.name, Outcome.UPDATED, "healthy",
                                        by_name[c.name].previous)  # fmt: skip
                self.out(f"  {c.name}: updated")
            return False
        # The wave failed: every client switched to the new release goes back, in parallel.
        undo = [c for c in wave if by_name[c.name].switched]
        back = {r.name: r for r in self.roll_back(undo, {n: by_name[n].previous for n in by_name})}
        for c in undo:
            own = verdicts.get(c.name)
            why = (f"failed the gate: {own.reason}" if own is not None and not own.healthy
                   else by_name[c.name].reason if by_name[c.name].outcome is Outcome.FAILED
                   else "rolled back with its wave")  # fmt: skip
            r = back[c.name]
            outcome = Outcome.ROLLED_BACK if r.outcome is Outcome.ROLLED_BACK else Outcome.FAILED
            self.journal.set_client(dep.id, c.name, outcome, f"{why}; {r.reason}",
                                    by_name[c.name].previous)  # fmt: skip
            self.out(f"  {c.name}: {outcome}: {why}; {r.reason}")
        return True

    def failed_so_far(self, dep_id: int, besides: set[str]) -> int:
        """Clients of the deployment journalled as failed, not counting those in `besides`."""
        dep = self.journal.get(dep_id)
        if dep is None:
            return 0
        return sum(1 for r in dep.clients if r.outcome is Outcome.FAILED and r.name not in besides)

    def roll_back(
        self, clients: Sequence[InventoryClient], previous: dict[str, str | None]
    ) -> list[Result]:
        """Roll `clients` back in parallel, then check each runs its previous release again."""
        if not clients:
            return []
        since = time.time()
        results = parallel(lambda c: self.ctx.remote.rollback(c, previous.get(c.name)), clients)
        checked: list[Result] = []
        for c, r in zip(clients, results, strict=True):
            target = previous.get(c.name)
            if r.outcome is not Outcome.ROLLED_BACK or target is None:
                checked.append(r)
                continue
            v = gate.wait({c.name: probe_for(c, self.ctx.central, since)}, target,
                          self.ctx.settings.health_deadline_seconds, 0.0)[c.name]  # fmt: skip
            why = f"rolled back to {target} but: {v.reason}"
            checked.append(r if v.healthy else Result(c.name, Outcome.FAILED, why))
        return checked

    # ---------------------------------------------------------------- reporting

    def central_record(self, dep: Deployment) -> dict[str, Any]:
        waves: dict[int, list[dict[str, Any]]] = {}
        for r in dep.clients:
            waves.setdefault(r.wave, []).append(
                {"name": r.name, "status": r.outcome.value, "message": r.reason or None}
            )
        batches = [{"status": _wave_status(cs), "clients": cs} for _, cs in sorted(waves.items())]
        message = f"deployment {dep.id} (commit {dep.git_commit or 'unknown'})"
        return {"status": dep.status.value, "release": dep.release, "actor": dep.actor,
                "message": message, "batches": batches}  # fmt: skip

    def report_central(self, dep_id: int) -> None:
        dep = self.journal.get(dep_id)
        if self.ctx.central is None or dep is None or dep.central_id is None:
            return
        if not self.ctx.central.update(dep.central_id, self.central_record(dep)):
            self.out(f"warning: central not told: {self.ctx.central.last_error}")

    def summary(self, dep_id: int) -> None:
        dep = self.journal.get(dep_id)
        if dep is None:
            return
        self.out(f"deployment {dep.id} of {dep.release}: {dep.status}")
        for r in dep.clients:
            self.out(f"  {r.name:20} {r.outcome:12} {r.reason}")
        if not any(r.outcome in plan.TO_DO for r in dep.clients):
            return
        if dep.status is Status.FAILED:  # finished: `--resume` refuses it
            self.out("  the clients not done keep their release; a new `fab deploy` reaches them")
        else:
            self.out("  `fab deploy --resume` picks up the clients not done")


def _wave_status(clients: list[dict[str, Any]]) -> str:
    seen = {c["status"] for c in clients}
    for word in ("failed", "rolled_back", "in_progress", "pending", "untouched"):
        if word in seen:
            return word
    return "updated"


def dry_run_lines(ctx: Context, opts: DeployOptions, release: str) -> list[str]:
    """The lines `--dry-run` prints: waves, clients, commands, what the central last heard.

    Opens no SSH connection and builds nothing.
    """
    chosen, unknown = plan.select(ctx.inventory.clients, opts.clients, opts.tag)
    if unknown:
        raise DeployError(f"no such client in the inventory: {', '.join(unknown)}")
    heard: dict[str, dict[str, Any]] | None = None
    lines = [f"dry run: release {release} would be built and deployed (nothing is done)"]
    if ctx.central is None:
        lines.append("central: not configured (defaults.central_url / MCTL_CENTRAL_URL)")
    else:
        heard = ctx.central.clients()
        if heard is None:
            lines.append(f"central: cannot be reached ({ctx.central.last_error})")
    s = ctx.settings
    for i, wave in enumerate(plan.waves(chosen, opts.batch)):
        lines.append(f"wave {i + 1}: {', '.join(c.name for c in wave)}")
        for c in wave:
            where = layout.RemoteLayout(c.install_dir)
            staged = ctx.state_dir / "releases" / release / c.name
            seen = heard.get(c.name) if heard is not None else None
            lines.append(f"  {c.name} ({c.ssh_user}@{c.host}:{c.ssh_port}, {c.install_dir})")
            if heard is not None:
                lines.append(
                    "    central: never heard from it" if seen is None else
                    f"    central: {seen.get('status')}, release {seen.get('release')}"
                )  # fmt: skip
            lines.append(f"    ssh: {layout.prepare_command(where, release)}")
            copy = rsync_argv(staged, c, where.release(release), ctx.remote.ssh)
            lines.append(f"    local: {shlex.join(copy)}")
            lines.append(
                f"    ssh: {layout.install_command(where, release, s.keep_releases, c.python)}"
            )
        lines.append(
            f"  gate: new release and no FATAL/crash loop for {s.min_healthy_seconds:g}s within "
            f"{s.health_deadline_seconds:g}s, else the wave is rolled back and the run stops"
        )
    return lines
