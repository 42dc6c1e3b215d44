#!/bin/sh
# Master Control release bootstrap. Runs ON a client, from the release directory that
# `fab deploy` has just copied there (INSTALL_DIR/releases/<id>/bootstrap.sh). POSIX sh;
# idempotent: running it again for the same release finishes what a killed run started.
#
#   bootstrap.sh install  INSTALL_DIR RELEASE_ID KEEP PYTHON   venv, validate, switch, restart
#   bootstrap.sh rollback INSTALL_DIR [RELEASE_ID]             back to RELEASE_ID or `previous`
#   bootstrap.sh stop     INSTALL_DIR                          stop the daemon
#
# Layout: releases/<id>/{config,app,env,wheelhouse,WHEELHOUSE,RELEASE,bootstrap.sh,.installed}
# and venv -> ../../venvs/<wheelhouse hash> (shared by releases built from the same wheels),
# current -> releases/<id> (switched with ln -s tmp + mv -T, one rename(2): never half-switched),
# previous (the id current pointed at before the last switch), state/ run/ log/ of the daemon.
#
# Exit codes (mastercontrol/deploy/layout.py BOOTSTRAP_EXITS): 0 ok, 2 usage, 3 no Python 3.11,
# 4 install failed, 5 invalid config (nothing switched), 6 the daemon did not start,
# 7 no such release, 8 another bootstrap is running.
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
    [ "$(id -u)" -eq 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

UNIT=mastercontrold.service

write_unit() {
    # The unit points at `current`, so a switch needs no new unit; rewritten every time so that
    # an update of this script updates the unit too.
    cat >"/etc/systemd/system/$UNIT.tmp" <<EOF
# Written by $dir/current/bootstrap.sh (Master Control deploy); rewritten at every release switch.
[Unit]
Description=Master Control process supervisor ($dir)
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
EnvironmentFile=-$dir/current/env
Environment=PYTHONUNBUFFERED=1
Environment=PYTHONPATH=$dir/current/app
ExecStart=$dir/current/venv/bin/mastercontrold --config-dir $dir/current/config --db-path $dir/state/state.db --socket-path $dir/run/mastercontrol.sock --log-dir $dir/log
ExecReload=/bin/kill -HUP \$MAINPID
KillMode=mixed
TimeoutStopSec=60s
Restart=on-failure
RestartSec=5s
RestartPreventExitStatus=78

[Install]
WantedBy=multi-user.target
EOF
    mv "/etc/systemd/system/$UNIT.tmp" "/etc/systemd/system/$UNIT"
    systemctl daemon-reload
    systemctl enable -q "$UNIT"
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
restart() {
    target="$dir/releases/$(current_id)"
    if use_systemd; then
        write_unit
        systemctl restart "$UNIT" || die 6 "systemctl restart $UNIT failed on $(current_id)"
        return 0
    fi
    # Any release's ctl speaks the same IPC; 7 (nothing running) is fine.
    ctl "$target" down >/dev/null 2>&1 || true
    in_release "$target" up --detach || die 6 "mastercontrold did not start on $(current_id); see $dir/log/mastercontrold.stderr"
}

# Keep the newest KEEP releases (ids start with their UTC time), never current or previous,
# and the venvs some kept release still uses.
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
    [ -d "$dir/venvs" ] || return 0
    for v in $(ls -1 "$dir/venvs"); do
        used=""
        for r in "$dir"/releases/*/; do
            [ "$(cat "${r}WHEELHOUSE" 2>/dev/null || true)" = "$v" ] && used=yes
        done
        [ -n "$used" ] || rm -rf "${dir:?}/venvs/$v"
    done
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
            rm -rf "$venv"
            mkdir -p "$dir/venvs"
            # --without-pip: the wheelhouse carries pip, run straight from its wheel (faster
            # than ensurepip, and it works where Debian's python3-venv is not installed).
            "$python" -m venv --without-pip "$venv" || die 4 "cannot create $venv"
            pipwhl=$(ls "$rel"/wheelhouse/pip-*.whl 2>/dev/null | tail -n 1)
            [ -n "$pipwhl" ] || die 4 "no pip wheel in $rel/wheelhouse"
            "$venv/bin/python" "$pipwhl/pip" install --quiet --no-index --no-compile \
                --disable-pip-version-check --find-links "$rel/wheelhouse" mastercontrol ||
                die 4 "pip install from $rel/wheelhouse failed"
            touch "$venv/.complete"
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
    switch_to "$target"
    restart
    echo "rolled back to $target"
}

case $action in
install) install "$@" ;;
rollback) rollback "$@" ;;
stop)
    cur=$(current_id)
    [ -z "$cur" ] || ctl "$dir/releases/$cur" down >/dev/null 2>&1 || true
    echo "stopped"
    ;;
*) die 2 "unknown action: $action" ;;
esac
