#!/usr/bin/env bash
# Stop the one-node Slurm started by tools/slurm/start_local_slurm.sh: cancels
# its jobs, stops slurmd and slurmctld (by their pid files under
# $SINK_SLURM_DIR) and munged. Idempotent: does nothing when nothing runs.
#
#   bash tools/slurm/stop_local_slurm.sh [--keep-munge] [--purge]
#
# --keep-munge  leave munged running
# --purge       also delete $SINK_SLURM_DIR (job state, logs); slurm.conf stays
set -euo pipefail
DIR=${SINK_SLURM_DIR:-/tmp/sink-slurm}
KEEP_MUNGE=0
PURGE=0
for a in "$@"; do
  case "$a" in
    --keep-munge) KEEP_MUNGE=1 ;;
    --purge) PURGE=1 ;;
    *) echo "usage: $0 [--keep-munge] [--purge]" >&2; exit 2 ;;
  esac
done
export PATH="$PATH:/usr/sbin:/sbin"
say() { printf 'stop_local_slurm: %s\n' "$*" >&2; }

# stop_pid NAME PIDFILE: TERM, wait up to 15 s, then KILL
stop_pid() {
  local name=$1 f=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name did not stop; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

if [ -s "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
  scancel --user=root >/dev/null 2>&1 || true   # the test cluster's jobs only (it runs as root)
  sleep 1
fi
stop_pid slurmd "$DIR/slurmd.pid"
stop_pid slurmctld "$DIR/slurmctld.pid"
if [ "$KEEP_MUNGE" -eq 0 ]; then
  stop_pid munged /run/munge/munged.pid
fi
if [ "$PURGE" -eq 1 ]; then
  rm -rf "$DIR"
fi
exit 0
