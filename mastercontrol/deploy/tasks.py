"""The Fabric tasks: setup, setup-local, deploy, sync, rollback, status, releases.

Each task takes `c` and checks before acting: it resolves the inventory (`--inventory`, else
MCTL_INVENTORY, else ./inventory.yaml, else the config dir's inventory.yaml), takes the deploy
lock where it changes clients, and turns every DeployError into a one-line message and exit 1
(never a traceback). The project root is the fabfile's directory (`namespace(root)`), wherever
`fab` is run from. Logic lives in the sibling modules; fabfile.py only calls `namespace()`.

Fabric and invoke appear only in deploy/; must not import the daemon or the API.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fabric import task
from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from paramiko import SSHException

from mastercontrol.config.load import INVENTORY_FILE, load_inventory
from mastercontrol.config.model import InventoryClient
from mastercontrol.config.paths import resolve_paths
from mastercontrol.deploy import build, layout, plan
from mastercontrol.deploy.central import Central
from mastercontrol.deploy.journal import DeployLock, Journal
from mastercontrol.deploy.plan import Outcome, Status
from mastercontrol.deploy.remote import Remote, parallel
from mastercontrol.deploy.rollout import (
    EXIT_INTERRUPTED,
    DeployOptions,
    Rollout,
    dry_run_lines,
)
from mastercontrol.deploy.rollout import (
    Context as DeployContext,
)
from mastercontrol.deploy.ssh import ConnectFailed, SshSettings, accept_host_key, connect
from mastercontrol.errors import DeployError

INVENTORY_ENV = "MCTL_INVENTORY"
ROOT_KEY = "mastercontrol_root"


def fab_task(
    help: dict[str, str], optional: tuple[str, ...] = ()
) -> Callable[[Callable[..., None]], Any]:
    """fabric.task with its help texts (typed: fabric's own decorator is not); `optional` names
    flags whose value may be left out (`--resume` or `--resume=ID`)."""
    decorator: Callable[[Callable[..., None]], Any] = task(help=help, optional=list(optional))
    return decorator


def say(line: str) -> None:
    print(line, flush=True)


def find_inventory(explicit: str | None, cwd: Path | None = None) -> Path:
    """`--inventory`, else MCTL_INVENTORY, else ./inventory.yaml, else the config dir's one."""
    if explicit:
        return Path(explicit)
    if os.environ.get(INVENTORY_ENV):
        return Path(os.environ[INVENTORY_ENV])
    tried = [(cwd or Path.cwd()) / INVENTORY_FILE, resolve_paths().config_dir / INVENTORY_FILE]
    for path in tried:
        if path.is_file():
            return path
    raise DeployError(
        "no inventory: give --inventory=PATH or set MCTL_INVENTORY (tried "
        + ", ".join(str(p) for p in tried)
        + ")"
    )


def context(c: Context, inventory: str | None) -> DeployContext:
    path = find_inventory(inventory).resolve()
    inv, problems = load_inventory(path)
    if problems:
        raise DeployError("invalid inventory:\n" + "\n".join(problems))
    if not inv.clients:
        raise DeployError(f"{path}: no clients")
    base = path.parent
    s = inv.deploy

    def rel(value: str) -> Path:
        return base / Path(value).expanduser()

    state_dir = rel(s.state_dir)
    known = rel(s.known_hosts) if s.known_hosts else state_dir / "known_hosts"
    ssh = SshSettings(known_hosts=known, connect_timeout=s.connect_timeout_seconds)
    root = Path(c.config.get(ROOT_KEY) or Path.cwd()).resolve()
    return DeployContext(
        root=root,
        inventory=inv,
        state_dir=state_dir,
        config_dir=rel(s.config_dir),
        app_dir=rel(s.app_dir) if s.app_dir else None,
        remote=Remote(ssh, s.keep_releases),
        out=say,
        central=Central.configured(inv.central_url, inv.central_api_token),
    )


@contextmanager
def guarded(name: str) -> Iterator[None]:
    """DeployError -> `fab NAME: message` and exit 1; Ctrl-C -> exit 130."""
    try:
        yield
    except DeployError as exc:
        raise Exit(f"fab {name}: {exc}", code=1) from None
    except KeyboardInterrupt:
        raise Exit(f"fab {name}: interrupted", code=EXIT_INTERRUPTED) from None


def _names(client: str | None) -> tuple[str, ...]:
    return tuple(n for n in (client or "").split(",") if n)


def _int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DeployError(f"--{name} must be a whole number, got {value!r}") from None
    if number < 1:
        raise DeployError(f"--{name} must be at least 1, got {number}")
    return number


def _selected(
    ctx: DeployContext, client: str | None, tag: str | None = None
) -> list[InventoryClient]:
    chosen, unknown = plan.select(ctx.inventory.clients, _names(client), tag)
    if unknown:
        raise DeployError(f"no such client in the inventory: {', '.join(unknown)}")
    if not chosen:
        raise DeployError("no client selected")
    return chosen


@fab_task(
    {
        "batch": "clients per wave (default: deploy.batch of the inventory)",
        "client": "only these clients (comma-separated names)",
        "tag": "only clients with this tag",
        "dry-run": "print waves, clients and commands; connect to nothing, build nothing",
        "release": "deploy this already built release id instead of building one",
        "resume": "continue the last interrupted or incomplete deployment (--resume=ID: that one)",
        "unreachable": "pending (default: retried by --resume) or fail",
        "inventory": "inventory.yaml to use",
    },
    optional=("resume",),
)
def deploy(
    c: Context,
    batch: Any = None,
    client: str | None = None,
    tag: str | None = None,
    dry_run: bool = False,
    release: str | None = None,
    resume: Any = False,
    unreachable: str = "pending",
    inventory: str | None = None,
) -> None:
    """Roll a release out in health-gated waves; a failed wave is rolled back and stops it."""
    with guarded("deploy"):
        if unreachable not in ("pending", "fail"):
            raise DeployError(f"--unreachable must be pending or fail, got {unreachable!r}")
        if resume and (release or client or tag):
            raise DeployError("--resume continues the last deployment as it was: no --release, "
                              "--client or --tag with it")  # fmt: skip
        resume_id = None if resume in (False, True, None) else _int(resume, "resume", 0)
        ctx = context(c, inventory)
        n = _int(batch, "batch", ctx.inventory.deploy.batch)
        opts = DeployOptions(
            batch=n, clients=_names(client), tag=tag, release=release, resume=bool(resume),
            resume_id=resume_id,
            unreachable_fail=unreachable == "fail",
            as_dict={"batch": n, "client": client, "tag": tag, "unreachable": unreachable},
        )  # fmt: skip
        if dry_run:
            rid = (
                layout.check_release_id(release)
                if release
                else layout.new_release_id(build.git_commit(ctx.root))
            )
            for line in dry_run_lines(ctx, opts, rid):
                say(line)
            return
        if opts.unreachable_fail:
            ctx = replace(ctx, remote=Remote(ctx.remote.ssh, ctx.remote.keep_releases, True))
        code = _locked(ctx, lambda journal: _deploy(ctx, journal, opts))
        if code:
            raise Exit(code=code)


def _locked(ctx: DeployContext, body: Callable[[Journal], int]) -> int:
    with DeployLock(ctx.state_dir / "deploy.lock"):
        journal = Journal(ctx.state_dir / "journal.db")
        try:
            return body(journal)
        finally:
            journal.close()


def _deploy(ctx: DeployContext, journal: Journal, opts: DeployOptions) -> int:
    r = Rollout(ctx, journal)
    dep, clients = r.start(opts)
    batch = opts.batch if not opts.resume else int(dep.options.get("batch") or opts.batch)
    try:
        return r.run(dep, clients, batch)
    except KeyboardInterrupt:
        say(f"interrupted: deployment {dep.id} is journalled; `fab deploy --resume` continues it")
        return EXIT_INTERRUPTED


@fab_task({"client": "only these clients (comma-separated)", "inventory": "inventory.yaml"})
def sync(c: Context, client: str | None = None, inventory: str | None = None) -> None:
    """Build a release and copy it to the clients: files only, nothing switched or restarted."""
    with guarded("sync"):
        ctx = context(c, inventory)
        chosen = _selected(ctx, client)
        rid = layout.new_release_id(build.git_commit(ctx.root))

        def body(journal: Journal) -> int:
            build.stage(ctx.root, ctx.state_dir, rid, chosen, ctx.config_dir, ctx.app_dir)
            results = parallel(
                lambda cl: ctx.remote.copy(cl, rid, build.staged(ctx.state_dir, rid, cl.name)),
                chosen,
            )
            for res in results:
                say(f"{res.name}: {res.outcome}: {res.reason}")
            say(f"release {rid} copied; `fab deploy --release={rid}` switches to it")
            return 0 if all(x.outcome is Outcome.UPDATED for x in results) else 1

        code = _locked(ctx, body)
        if code:
            raise Exit(code=code)


@fab_task(
    {
        "client": "only these clients (comma-separated)",
        "release": "roll back to this release id (default: each client's previous release)",
        "inventory": "inventory.yaml",
    }
)
def rollback(
    c: Context, client: str | None = None, release: str | None = None,
    inventory: str | None = None,
) -> None:  # fmt: skip
    """Switch clients back to their previous release (or --release) and check they run it."""
    with guarded("rollback"):
        ctx = context(c, inventory)
        chosen = _selected(ctx, client)
        target = layout.check_release_id(release) if release else None

        def body(journal: Journal) -> int:
            states = dict(zip((x.name for x in chosen), parallel(ctx.remote.ask_status, chosen),
                              strict=True))  # fmt: skip
            dep_id = journal.create(
                "rollback", build.git_commit(ctx.root), target or "previous",
                {"action": "rollback", "client": client}, [[x.name for x in chosen]],
            )  # fmt: skip
            targets: dict[str, str | None] = {}
            todo: list[InventoryClient] = []
            for x in chosen:
                st = states[x.name]
                goal = target or st.get("previous")
                if "error" in st:
                    journal.set_client(dep_id, x.name, Outcome.PENDING, str(st["error"]))
                    say(f"{x.name}: pending: {st['error']}")
                elif not isinstance(goal, str):
                    journal.set_client(dep_id, x.name, Outcome.FAILED, "no previous release")
                    say(f"{x.name}: failed: no previous release to roll back to")
                else:
                    targets[x.name] = goal
                    todo.append(x)
            for res in Rollout(ctx, journal).roll_back(todo, targets):
                journal.set_client(dep_id, res.name, res.outcome, res.reason)
                say(f"{res.name}: {res.outcome}: {res.reason}")
            dep = journal.get(dep_id)
            outcomes = [row.outcome for row in dep.clients] if dep else []
            ok = all(o is Outcome.ROLLED_BACK for o in outcomes)
            journal.set_status(dep_id, Status.SUCCEEDED if ok else Status.FAILED)
            return 0 if ok else 1

        code = _locked(ctx, body)
        if code:
            raise Exit(code=code)


@fab_task({"client": "only these clients (comma-separated)", "inventory": "inventory.yaml"})
def status(c: Context, client: str | None = None, inventory: str | None = None) -> None:
    """The release each client runs, asked of the clients themselves."""
    with guarded("status"):
        ctx = context(c, inventory)
        chosen = _selected(ctx, client)
        for x, st in zip(chosen, parallel(ctx.remote.ask_status, chosen), strict=True):
            if "error" in st:
                say(f"{x.name:20} unreachable  {st['error']}")
            else:
                kept = ", ".join(st.get("releases") or []) or "-"
                say(f"{x.name:20} current={st.get('current') or '-'} "
                    f"previous={st.get('previous') or '-'} installed: {kept}")  # fmt: skip


@fab_task({"inventory": "inventory.yaml", "limit": "how many deployments (default 20)"})
def releases(c: Context, inventory: str | None = None, limit: Any = None) -> None:
    """Releases built here and the deployment history from the journal."""
    with guarded("releases"):
        ctx = context(c, inventory)
        built = build.built_releases(ctx.state_dir)
        say("built here: " + (", ".join(built) if built else "none"))
        db = ctx.state_dir / "journal.db"
        if not db.is_file():
            say("no deployment journalled yet")
            return
        journal = Journal(db)
        try:
            for d in journal.history(_int(limit, "limit", 20)):
                counts: dict[str, int] = {}
                for row in d.clients:
                    counts[row.outcome] = counts.get(row.outcome, 0) + 1
                tally = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                say(f"#{d.id} {d.release} {d.status} by {d.actor} "
                    f"(commit {d.git_commit or '-'}): {tally}")  # fmt: skip
        finally:
            journal.close()


def _setup_local(ctx: DeployContext) -> list[str]:
    problems = [f"{tool} not found on PATH" for tool in ("rsync", "ssh") if not shutil.which(tool)]
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    say(f"control host: state dir {ctx.state_dir}, known_hosts {ctx.remote.ssh.known_hosts}")
    say("control host: building the wheelhouse (cached)")
    say(f"control host: wheelhouse {build.wheelhouse(ctx.root, ctx.state_dir)}")
    return problems


@fab_task({"inventory": "inventory.yaml"})
def setup_local(c: Context, inventory: str | None = None) -> None:
    """Prepare the control host only: state dir, tools, the cached wheelhouse."""
    with guarded("setup-local"):
        problems = _setup_local(context(c, inventory))
        for p in problems:
            say(f"control host: {p}")
        if problems:
            raise Exit(code=1)


@fab_task(
    {
        "accept-new-host-keys": "record each client's host key in known_hosts (prints them)",
        "client": "only these clients (comma-separated)",
        "inventory": "inventory.yaml",
    }
)
def setup(
    c: Context, accept_new_host_keys: bool = False, client: str | None = None,
    inventory: str | None = None,
) -> None:  # fmt: skip
    """Prepare the control host and every client (Python 3.11, rsync, install dir)."""
    with guarded("setup"):
        ctx = context(c, inventory)
        problems = [f"control host: {p}" for p in _setup_local(ctx)]
        reachable = []
        for x in _selected(ctx, client):
            if accept_new_host_keys:
                try:
                    fp, what = accept_host_key(x, ctx.remote.ssh)
                except (OSError, SSHException) as exc:
                    problems.append(f"{x.name}: cannot fetch its host key: {exc}")
                    continue
                say(f"{x.name}: {x.host}:{x.ssh_port} host key {fp} ({what})")
            reachable.append(x)
        checks = parallel(lambda x: _check_client(ctx, x), reachable)
        for x, found in zip(reachable, checks, strict=True):
            problems += [f"{x.name}: {p}" for p in found]
        for p in problems:
            say(p)
        if problems:
            raise Exit(code=1)
        say("setup done")


def _check_client(ctx: DeployContext, x: InventoryClient) -> list[str]:
    try:
        conn = connect(x, ctx.remote.ssh)
    except ConnectFailed as exc:
        return [str(exc)]
    try:
        found: list[str] = []
        py = conn.run(layout.python_check_command(x.python))
        if py.failed:
            found.append(
                f"{x.python} is not Python 3.11 or later ({py.stdout.strip() or py.stderr.strip()})"
            )
        if conn.run("command -v rsync").failed:
            found.append("rsync is not installed")
        made = conn.run(layout.releases_dir_command(layout.RemoteLayout(x.install_dir)))
        if made.failed:
            found.append(f"cannot create {x.install_dir}/releases: {made.stderr.strip()}")
        if not found:
            say(f"{x.name}: ok ({py.stdout.strip()}, rsync, {x.install_dir})")
        return found
    finally:
        conn.close()


def namespace(root: Path) -> Collection:
    """The task collection of `fabfile.py`, with the project root it lives in."""
    ns = Collection(deploy, sync, rollback, status, releases, setup, setup_local)
    ns.configure({ROOT_KEY: str(root)})
    return ns
