# mastercontrold's keeper while the master lives (started by mastercontrol/daemon/keeper.py).
# Reads the master's setting lines ("log PATH", "cgroup DIR") from stdin, a pipe whose write end
# only the master holds, until EOF (the master is gone, however it died), then execs a bare
# Python (-I -S: nothing from site-packages) for the cleanup. Stop signals stay ignored across
# the exec. Arguments: $1 Python, $2 the directory holding the mastercontrol package,
# $3 this daemon start's id, $4 the master's pid.
trap '' INT HUP TERM QUIT
printf mc-keeper >/proc/$$/comm 2>/dev/null
log= cg=
while IFS=' ' read -r key value; do
  case $key in log) log=$value ;; cgroup) cg=$value ;; esac
done
exec "$1" -I -S -c 'import sys; sys.path.insert(0, sys.argv[1])
from mastercontrol.daemon.keeper import cleanup_main
cleanup_main(sys.argv[2:])' "$2" "$3" "$4" "$log" "$cg" </dev/null
