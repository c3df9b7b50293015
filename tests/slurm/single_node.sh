#!/usr/bin/env bash
# A single-node Slurm on this machine, for the tests of `mechgrade grade-all --slurm`.
#
#   tests/slurm/single_node.sh start   # install (apt) where missing, start munge and Slurm, wait until the node is idle
#   tests/slurm/single_node.sh stop    # stop what `start` started, by the PIDs it recorded
#   tests/slurm/single_node.sh env     # the line to source: export SLURM_CONF=...
#
# Everything lives in $MECHGRADE_SLURM_DIR (default /tmp/mechgrade-slurm): slurm.conf, the
# daemons' state, logs and PID files. The clients find it through SLURM_CONF, so a Slurm already
# configured in /etc/slurm is left alone. It needs root (the daemons, apt, the munge key), as in a
# CI container. Exit status 0 only once `sinfo` shows the node idle; otherwise it says why.
set -euo pipefail

DIR="${MECHGRADE_SLURM_DIR:-/tmp/mechgrade-slurm}"
CONF="$DIR/slurm.conf"
NODE="$(hostname -s)"

say() { echo "single_node.sh: $*" >&2; }
die() { say "$*"; exit 1; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get to install it (slurm-wlm, munge)"
  say "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; } \
    || die "apt-get could not install slurm-wlm and munge"
}

start_munge() {
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    return  # a munged already answers: use it, and leave it running at the end
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  su -s /bin/sh munge -c munged || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 50); do
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
      cp /run/munge/munged.pid "$DIR/munged.pid"  # ours: stopped by `stop`
      return
    fi
    sleep 0.2
  done
  die "munged started but does not answer (see /var/log/munge/munged.log)"
}

write_config() {
  local cpus memory
  cpus="$(nproc)"
  memory="$(free -m | awk '/^Mem:/ {print $2}')"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  chown -R slurm:slurm "$DIR/state"
  cat >"$CONF" <<EOF
# written by tests/slurm/single_node.sh: one node ($NODE), one partition, no accounting daemon
ClusterName=mechgrade-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
SlurmctldPort=${MECHGRADE_SLURMCTLD_PORT:-6817}
SlurmdPort=${MECHGRADE_SLURMD_PORT:-6818}
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=600
KillWait=5
# a job over its time limit is ended within a few seconds, not at the next minute
OverTimeLimit=0
InactiveLimit=0
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
# a task over its --mem is killed (OUT_OF_MEMORY), as a site's cgroup would: here by polling each
# second the proportional set size (PSS: pages the forked workers share with their template count once)
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill,UsePss
MpiDefault=none
# a job that asks for no memory gets its share per CPU, not the whole node
DefMemPerCPU=$((memory / cpus))
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" -eq 0 ] || die "needs root (it starts munged, slurmctld and slurmd)"
  mkdir -p "$DIR"
  if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null \
     && SLURM_CONF="$CONF" sinfo -h -o %t 2>/dev/null | grep -q idle; then
    say "already running (SLURM_CONF=$CONF)"
    return
  fi
  install
  start_munge
  write_config
  export SLURM_CONF="$CONF"
  slurmctld -i -f "$CONF" || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
  slurmd -f "$CONF" || die "slurmd did not start (see $DIR/log/slurmd.log)"
  local state=""
  for _ in $(seq 120); do  # 60 s
    state="$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)"
    case "$state" in
      idle*|mix*|alloc*) say "node $NODE is $state (SLURM_CONF=$CONF)"; return ;;
    esac
    sleep 0.5
  done
  tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
  stop
  die "the node did not become idle within 60 s (sinfo: ${state:-no answer})"
}

stop_pid() {
  local file="$1" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$file"
}

stop() {
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  stop_pid "$DIR/munged.pid"  # only when `start` started it
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
