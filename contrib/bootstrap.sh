#!/bin/sh
# Master Control release bootstrap. Runs ON a client, from the release directory that
# `fab deploy` has just copied there (INSTALL_DIR/releases/<id>/bootstrap.sh). POSIX sh;
# idempotent: running it again for the same release finishes what a killed run started.
#
#   bootstrap.sh install  INSTALL_DIR RELEASE_ID KEEP PYTHON   venv, validate, switch, restart
#   bootstrap.sh rollback INSTALL_DIR [RELEASE_ID]             back to RELEASE_ID or `previous`
#   bootstrap.sh stop     INSTALL_DIR                          stop the daemon
#
# Layout: releases/<id>/{config,app,env,wheelhouse,WHEELHOUSE,DEPS,RELEASE,CODE,bootstrap.sh,.installed}
# and venv -> ../../venvs/<wheelhouse hash> (shared by releases built from the same wheels;
# it holds the project's wheel and a .pth to deps/<DEPS hash>-py<X.Y>, the dependency layer
# shared by releases whose dependency wheels are the same),
# current -> releases/<id> (switched with ln -s tmp + mv -T, one rename(2): never half-switched),
# previous (the id current pointed at before the last switch), state/ run/ log/ of the daemon.
#
# Exit codes (mastercontrol/deploy/layout.py BOOTSTRAP_EXITS): 0 ok, 2 usage, 3 no Python 3.11,
# 4 install failed, 5 invalid config (nothing switched), 6 the daemon did not start,
# 7 no such release, 8 another bootstrap is running.
#
# Under systemd (root, /run/systemd/system, systemctl) the daemon runs under the unit the
# product ships, installed by the release's own `mastercontrol-ctl systemd-unit --install`
# (with its hardening drop-in), plus a drop-in deploy.conf that points it at `current` and this
# install dir's paths; elsewhere `mastercontrol-ctl up --detach`. MCTL_SYSTEMD=auto|yes|no
# (default auto) forces the choice, MCTL_UNIT_DIR (default /etc/systemd/system) moves the unit:
# for hosts where the guess is wrong, and for the tests.
set -eu

die() { code=$1; shift; echo "bootstrap: $*" >&2; exit "$code"; }
valid_id() { case $1 in '' | *[!A-Za-z0-9._-]* | [._-]* | *..*) return 1 ;; esac; }

[ $# -ge 2 ] || die 2 "usage: bootstrap.sh install|rollback|stop INSTALL_DIR ..."
action=$1
dir=$2
shift 2
case $dir in /*) ;; *) die 2 "INSTALL_DIR must be an absolute path: $dir" ;; esac
mkdir -p "$dir/releases" "$dir/state" "$dir/run" "$dir/log"

# One bootstrap at a time per install dir: a resumed deploy may meet the run it interrupted.
# The lock is a flock on an open fd, so it dies with the process: never a stale lock.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir/.bootstrap.lock"
    flock -w 300 9 || die 8 "another bootstrap holds $dir/.bootstrap.lock"
fi

current_id() {
    c=$(readlink "$dir/current" 2>/dev/null || true)
    echo "${c##*/}"
}

# ctl RELEASE_DIR ARGS...: that release's mastercontrol-ctl on this install's paths.
ctl() {
    r=$1
    shift
    "$r/venv/bin/mastercontrol-ctl" --config-dir "$r/config" --db-path "$dir/state/state.db" \
        --socket-path "$dir/run/mastercontrol.sock" --log-dir "$dir/log" "$@"
}

switch_to() {
    old=$(current_id)
    ln -sfn "releases/$1" "$dir/.current.tmp.$$"
    mv -T "$dir/.current.tmp.$$" "$dir/current"
    if [ -n "$old" ] && [ "$old" != "$1" ]; then
        printf '%s\n' "$old" >"$dir/.previous.tmp.$$"
        mv "$dir/.previous.tmp.$$" "$dir/previous"
    fi
}

use_systemd() {
    case ${MCTL_SYSTEMD:-auto} in
    yes) return 0 ;;
    no) return 1 ;;
    auto) ;;
    *) die 2 "MCTL_SYSTEMD must be auto, yes or no: $MCTL_SYSTEMD" ;;
    esac
    [ "$(id -u)" -eq 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

UNIT=mastercontrold.service
UNIT_DIR=${MCTL_UNIT_DIR:-/etc/systemd/system}

# install_unit RELEASE_DIR: the shipped unit and hardening drop-in, rendered by that release's
# ctl, then deploy.conf. The drop-in names `current`, not a release, so a switch (by this
# script or by hand, docs/operations.md) needs only a restart; it is rewritten every time so
# that an update of this script updates it too.
install_unit() {
    # A unit file has no quoting: '%' starts a specifier and a space splits a path list.
    case $dir in *[!A-Za-z0-9/._-]*) die 6 "install dir '$dir' cannot be named in a systemd unit (use letters, digits and /._-)" ;; esac
    "$1/venv/bin/mastercontrol-ctl" systemd-unit --install "$UNIT_DIR" >/dev/null ||
        die 6 "mastercontrol-ctl systemd-unit --install $UNIT_DIR failed"
    mkdir -p "$UNIT_DIR/$UNIT.d"
    cat >"$UNIT_DIR/$UNIT.d/.deploy.conf.tmp" <<EOF
# Written by Master Control's bootstrap.sh at every release switch: the shipped unit runs the
# release that current points at, with this install dir's paths:
#   $dir
[Service]
# The empty assignments clear the shipped unit's commands (a drop-in adds to them otherwise).
ExecStart=
ExecStart=$dir/current/venv/bin/mastercontrold
ExecReload=
ExecReload=$dir/current/venv/bin/mastercontrol-ctl reload
# The release's env file (its MCTL_RELEASE and the inventory's env:) and workload code.
EnvironmentFile=-$dir/current/env
Environment=PYTHONPATH=$dir/current/app
# The paths, for mastercontrold and ExecReload's ctl alike: they win over the directories the
# shipped unit's StateDirectory=, RuntimeDirectory=, LogsDirectory= and ConfigurationDirectory= name.
Environment=MCTL_CONFIG_DIR=$dir/current/config
Environment=MCTL_DB_PATH=$dir/state/state.db
Environment=MCTL_SOCKET_PATH=$dir/run/mastercontrol.sock
Environment=MCTL_LOG_DIR=$dir/log
# Writable even where the hardening drop-in's ProtectSystem= covers the install dir.
ReadWritePaths=$dir/state $dir/run $dir/log
EOF
    mv "$UNIT_DIR/$UNIT.d/.deploy.conf.tmp" "$UNIT_DIR/$UNIT.d/deploy.conf"
    systemctl daemon-reload || die 6 "systemctl daemon-reload failed"
    systemctl enable -q "$UNIT" || die 6 "systemctl enable $UNIT failed"
}

# in_release RELEASE_DIR ARGS...: ctl with the release's env file and its app/ importable,
# in a subshell: what the daemon (and so every workload) will see.
in_release() {
    (
        if [ -f "$1/env" ]; then
            set -a
            . "$1/env"
            set +a
        fi
        PYTHONPATH="$1/app${PYTHONPATH:+:$PYTHONPATH}"
        export PYTHONPATH
        ctl "$@"
    )
}

# Stop whatever daemon runs on this install, then start the one of `current`.
# (Its names are its own: rollback's $target once came back as this path.)
restart() {
    rs_rel="$dir/releases/$(current_id)"
    if use_systemd; then
        install_unit "$rs_rel"
        systemctl restart "$UNIT" || die 6 "systemctl restart $UNIT failed on $(current_id)"
        return 0
    fi
    # Any release's ctl speaks the same IPC; 7 (nothing running) is fine.
    ctl "$rs_rel" down >/dev/null 2>&1 || true
    in_release "$rs_rel" up --detach || die 6 "mastercontrold did not start on $(current_id); see $dir/log/mastercontrold.stderr"
}

# backup_state PYTHON: before a switch, an online copy (sqlite's backup API: consistent while the
# daemon writes, unlike cp of a WAL database) of the state database as the release being left
# used it, in state/backups/state.db.<that release>. The way back by hand after a migration
# the older release cannot use (docs/operations.md); pruned with the releases.
backup_state() {
    old=$(current_id)
    [ -n "$old" ] && [ -f "$dir/state/state.db" ] || return 0
    mkdir -p "$dir/state/backups"
    "$1" - "$dir/state/state.db" "$dir/state/backups/state.db.$old" <<'PY' ||
import os, sqlite3, sys
src, dest = sys.argv[1], sys.argv[2]
tmp = dest + ".tmp"
for path in (tmp, tmp + "-journal"):
    if os.path.exists(path):
        os.unlink(path)
source = sqlite3.connect(src, timeout=30)
copy = sqlite3.connect(tmp)
source.backup(copy)
copy.close()
source.close()
os.chmod(tmp, 0o600)
os.replace(tmp, dest)
PY
        echo "bootstrap: warning: no backup of $dir/state/state.db before the switch" >&2
}

# Keep the newest KEEP releases (ids start with their UTC time), never current or previous,
# the venvs some kept release still uses and the dependency layers some kept venv still uses.
prune() {
    keep=$1
    cur=$(current_id)
    prev=$(cat "$dir/previous" 2>/dev/null || true)
    excess=$(($(ls -1 "$dir/releases" | wc -l) - keep))
    for r in $(ls -1 "$dir/releases" | sort); do
        [ "$excess" -gt 0 ] || break
        if [ "$r" = "$cur" ] || [ "$r" = "$prev" ]; then continue; fi
        rm -rf "${dir:?}/releases/$r"
        excess=$((excess - 1))
    done
    for b in "$dir"/state/backups/state.db.*; do
        [ -f "$b" ] || continue
        [ -d "$dir/releases/${b##*/state.db.}" ] || rm -f "$b"
    done
    prune_unreferenced "$dir/venvs" "$dir/releases" WHEELHOUSE  # venvs no kept release uses
    prune_unreferenced "$dir/deps" "$dir/venvs" DEPS  # then layers no kept venv uses
}

# prune_unreferenced PARENT REFERRERS MARKER: remove each entry of PARENT that no directory
# under REFERRERS names in its MARKER file.
prune_unreferenced() {
    [ -d "$1" ] || return 0
    for entry in $(ls -1 "$1"); do
        used=""
        for r in "$2"/*/; do
            [ "$(cat "${r}$3" 2>/dev/null || true)" = "$entry" ] && used=yes
        done
        [ -n "$used" ] || rm -rf "${1:?}/$entry"
    done
}

# pip_install VENV RELEASE_DIR ARGS...: pip run straight from the release's pip wheel, from its
# wheelhouse only (--without-pip venvs: faster than ensurepip, and it works where Debian's
# python3-venv is not installed).
pip_install() {
    pi_venv=$1
    pi_rel=$2
    shift 2
    pipwhl=$(ls "$pi_rel"/wheelhouse/pip-*.whl 2>/dev/null | tail -n 1)
    [ -n "$pipwhl" ] || die 4 "no pip wheel in $pi_rel/wheelhouse"
    "$pi_venv/bin/python" "$pipwhl/pip" install --quiet --no-index --no-compile \
        --disable-pip-version-check --find-links "$pi_rel/wheelhouse" "$@" ||
        die 4 "pip install into $pi_venv from $pi_rel/wheelhouse failed"
}

site_packages() {
    "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

# make_venv RELEASE_DIR VENV PYTHON: the release's venv. With DEPS (the hash of the dependency
# wheels, build.py), the dependencies are one shared layer, deps/<hash>-py<X.Y>, installed once:
# the venv itself holds only the project's wheel (installed without pip) and a .pth that puts
# the layer's site-packages on its path. A release whose dependencies did not change installs
# one wheel, not twenty; each release keeps its own project code, so a rollback runs the old
# code. A layer is never changed once complete. Without DEPS (a release staged by an older
# deployer): one venv with everything, as before. (sh has no local variables: each function's
# names are its own.)
make_venv() {
    mv_rel=$1
    mv_venv=$2
    mv_py=$3
    rm -rf "$mv_venv"
    mkdir -p "$dir/venvs"
    deps=$(cat "$mv_rel/DEPS" 2>/dev/null || true)
    if [ -z "$deps" ]; then
        "$mv_py" -m venv --without-pip "$mv_venv" || die 4 "cannot create $mv_venv"
        pip_install "$mv_venv" "$mv_rel" mastercontrol
        touch "$mv_venv/.complete"
        return 0
    fi
    valid_id "$deps" || die 4 "bad DEPS in $mv_rel"
    # Per interpreter version too: a layer's site-packages is lib/pythonX.Y.
    deps="$deps-py$("$mv_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" ||
        die 4 "$mv_py does not run"
    layer="$dir/deps/$deps"
    if [ ! -f "$layer/.complete" ]; then
        rm -rf "$layer"
        mkdir -p "$dir/deps"
        "$mv_py" -m venv --without-pip "$layer" || die 4 "cannot create $layer"
        set --
        for w in "$mv_rel"/wheelhouse/*.whl; do
            case ${w##*/} in mastercontrol-*.whl | pip-*.whl) ;; *) set -- "$@" "$w" ;; esac
        done
        [ $# -eq 0 ] || pip_install "$layer" "$mv_rel" --no-deps "$@"
        touch "$layer/.complete"
    fi
    "$mv_py" -m venv --without-pip "$mv_venv" || die 4 "cannot create $mv_venv"
    site_packages "$layer" >"$(site_packages "$mv_venv")/mastercontrol-deps.pth" ||
        die 4 "cannot link $mv_venv to $layer"
    printf '%s\n' "$deps" >"$mv_venv/DEPS"
    set -- "$mv_rel"/wheelhouse/mastercontrol-*.whl
    [ -f "$1" ] || die 4 "no mastercontrol wheel in $mv_rel/wheelhouse"
    # The project's wheel by its own installer, run from the wheel (mastercontrol/deploy/wheel.py:
    # a zip extraction, where pip's start-up alone is ~2 s of the client's CPU).
    PYTHONPATH="$1" "$mv_venv/bin/python" -m mastercontrol.deploy.wheel "$1" ||
        die 4 "installing $1 into $mv_venv failed"
    touch "$mv_venv/.complete"
}

install() {
    [ $# -eq 3 ] || die 2 "usage: bootstrap.sh install INSTALL_DIR RELEASE_ID KEEP PYTHON"
    id=$1
    keep=$2
    python=$3
    valid_id "$id" || die 2 "invalid release id: $id"
    case $keep in '' | *[!0-9]*) die 2 "KEEP must be a number: $keep" ;; esac
    rel="$dir/releases/$id"
    [ -d "$rel/wheelhouse" ] || die 7 "no release $id under $dir/releases"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
        die 3 "$python is not Python 3.11 or later"
    if [ ! -f "$rel/.installed" ]; then
        # Releases built from the same wheelhouse (WHEELHOUSE names its hash) share one venv
        # under venvs/: a release that changes only configs or workload code installs nothing.
        # A shared venv is never changed once complete; the release's id reaches the daemon
        # through MCTL_RELEASE in its env file.
        hash=$(cat "$rel/WHEELHOUSE" 2>/dev/null || echo "$id")
        valid_id "$hash" || die 4 "bad WHEELHOUSE in $rel"
        venv="$dir/venvs/$hash"
        if [ ! -f "$venv/.complete" ]; then
            make_venv "$rel" "$venv" "$python"
        fi
        rm -rf "$rel/venv"
        ln -s "../../venvs/$hash" "$rel/venv"
        touch "$rel/.installed"
    fi
    # The NEW release's own validator, before anything is switched: a bad config never runs.
    if ! out=$(in_release "$rel" validate 2>&1); then
        printf '%s\n' "$out" >&2
        die 5 "release $id has an invalid configuration; nothing was switched (current: $(current_id || true))"
    fi
    if [ "$(current_id)" = "$id" ] && ctl "$rel" list >/dev/null 2>&1; then
        echo "release $id is already current and running"
    else
        backup_state "$python"
        switch_to "$id"
        restart
    fi
    prune "$keep"
    echo "installed $id"
}

rollback() {
    target=${1:-$(cat "$dir/previous" 2>/dev/null || true)}
    [ -n "$target" ] || die 7 "no previous release to roll back to"
    valid_id "$target" || die 2 "invalid release id: $target"
    [ -f "$dir/releases/$target/.installed" ] || die 7 "release $target is not installed"
    backup_state "$dir/releases/$target/venv/bin/python"
    switch_to "$target"
    restart
    echo "rolled back to $target"
}

case $action in
install) install "$@" ;;
rollback) rollback "$@" ;;
stop)
    cur=$(current_id)
    if use_systemd; then
        systemctl stop "$UNIT" || die 6 "systemctl stop $UNIT failed"
    elif [ -n "$cur" ]; then
        ctl "$dir/releases/$cur" down >/dev/null 2>&1 || true
    fi
    echo "stopped"
    ;;
*) die 2 "unknown action: $action" ;;
esac
