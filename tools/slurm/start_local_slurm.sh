#!/usr/bin/env bash
# Start a real one-node Slurm on this machine, for the tests (tests/slurm) and
# for trying the slurm/*.sbatch scripts by hand. Idempotent: running it again
# while the cluster is up changes nothing (it restarts the daemons only when
# the slurm.conf it would write differs from the running one).
#
#   bash tools/slurm/start_local_slurm.sh     # then: sbatch slurm/observe.sbatch CONFIG
#   bash tools/slurm/stop_local_slurm.sh
#
# Needs root (Debian 12, no systemd needed). What it does:
#   1. apt-get installs slurmctld slurmd slurm-client munge if missing;
#   2. creates /etc/munge/munge.key if absent, starts munged as the munge user;
#   3. writes $SLURM_CONF (default /etc/slurm/slurm.conf; an existing file not
#      written by this script is left alone and the script fails) and gres.conf:
#      one node "localhost", partition "debug" (default), no cgroups
#      (proctrack/linuxproc, task/none), state and spool under $SINK_SLURM_DIR;
#   4. starts slurmctld and `slurmd -N localhost`, waits until sinfo shows the
#      node idle.
#
# The node advertises the machine's real memory, and by default at least
# SINK_SLURM_CPUS (32) CPUs and SINK_SLURM_GPUS (4) count-only "gpu" GRES
# (SlurmdParameters=config_overrides), so that the GPU-cluster #SBATCH defaults
# of slurm/*.sbatch (4 tasks per node, a GPU and 8 CPUs each) are schedulable
# here unchanged. Nothing is bound to those GPUs (no device files); the runs use
# the CPU. Set SINK_SLURM_CPUS=0 and SINK_SLURM_GPUS=0 for the real CPU count
# and no GRES.
#
# Environment: SINK_SLURM_DIR (default /tmp/sink-slurm): state, spool, logs, pid
# files. SLURM_CONF: where slurm.conf goes. SINK_SLURM_TIMEOUT (60): seconds to
# wait for the node.
set -euo pipefail

DIR=${SINK_SLURM_DIR:-/tmp/sink-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
CONF_DIR=$(dirname "$CONF")
WANT_CPUS=${SINK_SLURM_CPUS:-32}
GPUS=${SINK_SLURM_GPUS:-4}
TIMEOUT=${SINK_SLURM_TIMEOUT:-60}
MARK="# written by sink tools/slurm/start_local_slurm.sh"

say() { printf 'start_local_slurm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts munged/slurmctld/slurmd)"

# ---- 1. packages
missing=()
for p in slurmctld slurmd slurm-client munge; do
  # not `dpkg -s`: it also succeeds for a removed package whose config files remain
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi
for b in munged slurmctld slurmd sinfo sbatch; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || die "$b not found after installing the Slurm packages"
done
export PATH="$PATH:/usr/sbin:/sbin"

# ---- 2. munge
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  mkdir -p /etc/munge
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile=/etc/munge/munge.key --force
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
fi
chown -R munge:munge /etc/munge
chmod 700 /etc/munge
chmod 400 /etc/munge/munge.key
for d in /run/munge /var/lib/munge /var/log/munge; do
  mkdir -p "$d"
  chown munge:munge "$d"
done
chmod 755 /run/munge
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  say "starting munged"
  rm -f /run/munge/munge.socket.2 /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged || die "munged failed to start (see /var/log/munge/munged.log)"
  for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
  munge_ok || die "munged started but munge -n | unmunge fails (see /var/log/munge/munged.log)"
fi

# ---- 3. slurm.conf
mkdir -p "$DIR/state" "$DIR/spool" "$CONF_DIR"
read -r REAL_CPUS REAL_MEM < <(slurmd -C | awk '/^NodeName/ {
  for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  print v["CPUs"], v["RealMemory"] }')
[ -n "${REAL_CPUS:-}" ] && [ -n "${REAL_MEM:-}" ] || die "slurmd -C did not report CPUs and RealMemory"
CPUS=$REAL_CPUS
[ "$WANT_CPUS" -gt "$CPUS" ] && CPUS=$WANT_CPUS
NODE_GRES=""
GRES_TYPES=""
[ "$GPUS" -gt 0 ] && { NODE_GRES=" Gres=gpu:$GPUS"; GRES_TYPES="GresTypes=gpu"; }

NEW=$(cat <<EOF
$MARK
# A one-node test cluster; not for production. Node: real memory, CPUs=$CPUS
# (real $REAL_CPUS), ${GPUS} count-only gpu GRES.
ClusterName=sinklocal
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=3600
KillWait=10
InactiveLimit=0
SlurmdTimeout=120
$GRES_TYPES
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM${NODE_GRES} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
)
NEW_GRES=""
if [ "$GPUS" -gt 0 ]; then
  # Slurm drops a GPU without a device file, so each fake GPU gets a plain file.
  mkdir -p "$DIR/fakegpu"
  for ((g = 0; g < GPUS; g++)); do : >"$DIR/fakegpu/gpu$g"; done
  NEW_GRES=$(printf '%s\nNodeName=localhost Name=gpu File=%s/fakegpu/gpu[0-%d]\n' "$MARK" "$DIR" $((GPUS - 1)))
fi

# slurmd loads a cgroup plugin even with proctrack/linuxproc; on a cgroup v2 host without
# systemd it must not insist on a systemd scope (untested here: this machine has cgroup v1).
NEW_CGROUP=""
[ -e /sys/fs/cgroup/cgroup.controllers ] && NEW_CGROUP=$(printf '%s\nIgnoreSystemdOnFailure=yes\n' "$MARK")

if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script; not touching it (set SLURM_CONF to another path)"
fi

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
changed=0
if [ ! -e "$CONF" ] || [ "$(cat "$CONF")" != "$NEW" ]; then changed=1; fi
if [ -e "$CONF_DIR/gres.conf" ] && [ "$(cat "$CONF_DIR/gres.conf")" != "$NEW_GRES" ]; then
  grep -qF "$MARK" "$CONF_DIR/gres.conf" || die "$CONF_DIR/gres.conf exists and was not written by this script"
  changed=1
fi
if [ -e "$CONF_DIR/cgroup.conf" ] && [ "$(cat "$CONF_DIR/cgroup.conf")" != "$NEW_CGROUP" ]; then
  grep -qF "$MARK" "$CONF_DIR/cgroup.conf" || die "$CONF_DIR/cgroup.conf exists and was not written by this script"
  changed=1
fi
[ -z "$NEW_GRES" ] || [ -e "$CONF_DIR/gres.conf" ] || changed=1
[ -z "$NEW_CGROUP" ] || [ -e "$CONF_DIR/cgroup.conf" ] || changed=1
if [ "$changed" -eq 1 ]; then
  if pid_alive "$DIR/slurmctld.pid" || pid_alive "$DIR/slurmd.pid"; then
    say "slurm.conf changed: restarting the daemons"
    SINK_SLURM_DIR="$DIR" bash "$(dirname "$0")/stop_local_slurm.sh" --keep-munge
  fi
  printf '%s\n' "$NEW" >"$CONF"
  if [ -n "$NEW_GRES" ]; then printf '%s\n' "$NEW_GRES" >"$CONF_DIR/gres.conf"; else rm -f "$CONF_DIR/gres.conf"; fi
  if [ -n "$NEW_CGROUP" ]; then printf '%s\n' "$NEW_CGROUP" >"$CONF_DIR/cgroup.conf"; else rm -f "$CONF_DIR/cgroup.conf"; fi
  say "wrote $CONF"
fi
export SLURM_CONF="$CONF"

# ---- 4. daemons
if ! pid_alive "$DIR/slurmctld.pid"; then
  say "starting slurmctld (log $DIR/slurmctld.log)"
  slurmctld || die "slurmctld failed to start; last lines of $DIR/slurmctld.log:
$(tail -n 20 "$DIR/slurmctld.log" 2>/dev/null)"
fi
if ! pid_alive "$DIR/slurmd.pid"; then
  say "starting slurmd -N localhost (log $DIR/slurmd.log)"
  slurmd -N localhost || die "slurmd failed to start; last lines of $DIR/slurmd.log:
$(tail -n 20 "$DIR/slurmd.log" 2>/dev/null)"
fi

# ---- wait for the node
state=""
for _ in $(seq $((TIMEOUT * 2))); do
  state=$(sinfo -h -n localhost -o '%T' 2>/dev/null | head -n1 || true)
  case "$state" in
    idle|mixed|allocated|completing) say "node localhost is $state"; exit 0 ;;
    drained|draining|down|down\*|drained\*|fail|failing|inval)
      # a node left down by an earlier run (e.g. restarted daemons): bring it back
      scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
die "node localhost not idle after ${TIMEOUT}s (sinfo state '${state:-none}'); see $DIR/slurmctld.log and $DIR/slurmd.log:
$(tail -n 10 "$DIR/slurmctld.log" 2>/dev/null)
$(tail -n 10 "$DIR/slurmd.log" 2>/dev/null)"
