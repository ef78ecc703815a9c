#!/usr/bin/env bash
# Stop the single-node SLURM started by scripts/slurm/start.sh: exactly the PIDs recorded in
# the state dir (slurmd, slurmctld, and munged if start.sh started it), nothing matched by
# name. Removes stale pid files, including the /run/*.pid that slurmctld/slurmd can leave
# behind (Debian's package removal scripts trip over them). Idempotent.
#
# Usage: scripts/slurm/stop.sh [--quiet]
# Env:   GCSTUDY_SLURM_DIR (state dir, default /tmp/gcstudy-slurm)
set -euo pipefail

STATE=${GCSTUDY_SLURM_DIR:-/tmp/gcstudy-slurm}
QUIET=0
[[ ${1:-} == --quiet ]] && QUIET=1
say() { (( QUIET )) || echo "stop.sh: $*"; }

# Print the PID in pid file $2 if that process is alive and its name is $1.
alive_pid() {
    local name=$1 file=$2 pid
    [[ -r $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$name" ]] || return 1
    echo "$pid"
}

stopped=0
# Order: compute node, controller, then authentication.
for name in slurmd slurmctld munged; do
    file=$STATE/$name.pid
    if pid=$(alive_pid "$name" "$file"); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            say "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid)"
        stopped=$((stopped + 1))
    fi
    rm -f "$file"
done

# Stale pid files of the package defaults: remove only if no live daemon owns them.
for pair in slurmctld:/run/slurmctld.pid slurmd:/run/slurmd.pid munged:/run/munge/munged.pid; do
    name=${pair%%:*}
    file=${pair#*:}
    if [[ -e $file ]] && ! alive_pid "$name" "$file" >/dev/null; then
        rm -f "$file"
    fi
done

if (( stopped == 0 )); then
    say "nothing to stop (no live daemons recorded in $STATE)"
fi
