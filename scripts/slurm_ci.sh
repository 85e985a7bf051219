#!/bin/bash
# A single-node Slurm 22.05 "cluster" on localhost for CI and the Slurm tests (tests/test_slurm.py).
#
#   scripts/slurm_ci.sh start   # install if missing, start munged, MariaDB, slurmdbd, slurmctld, slurmd
#   scripts/slurm_ci.sh stop    # stop them again (by pid file), cancelling leftover jobs first
#
# Everything lives under $SLURM_CI_BASE (default /tmp/scaling-slurm-ci). `start` ends by printing
#   export SLURM_CONF=$SLURM_CI_BASE/slurm.conf
# which every client command (sbatch, sacct, submitit) needs.
# Knobs: SLURM_CI_INSTALL=0 (never apt-get), SLURM_CI_ACCOUNTING=0 (no slurmdbd: sacct fails and submitit
# reports UNKNOWN), SLURM_CI_CPUS=N (CPUs advertised, default nproc).
# Settings tuned on this machine kind (see docs in the header of each block): a requeued job restarts
# after ~6 s instead of ~145 s, and submit->start takes well under a second.
set -euo pipefail
BASE=${SLURM_CI_BASE:-/tmp/scaling-slurm-ci}
INSTALL=${SLURM_CI_INSTALL:-1}
WITH_ACCOUNTING=${SLURM_CI_ACCOUNTING:-1}
T0=$(date +%s%N)
say() { echo "[slurm_ci $(( ($(date +%s%N) - T0) / 1000000 )) ms] $*" >&2; }
wait_for() { # wait_for <seconds> <cmd...>
  local n=$(( $1 * 10 )); shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "slurm_ci: timed out waiting for: $*" >&2; return 1
}

stop_one() { # stop_one <name> <pidfile>: SIGTERM, wait up to 10 s, then SIGKILL
  local pf=$2 pid
  [ -s "$pf" ] || return 0
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { say "$1 ($pid) ignored SIGTERM; SIGKILL"; kill -9 "$pid"; }
    say "$1 ($pid) stopped"
  fi
  rm -f "$pf"
}

cmd_stop() {
  export SLURM_CONF="$BASE/slurm.conf"
  # cancel leftover jobs so slurmstepd children do not outlive slurmd
  if [ -s "$BASE/run/slurmctld.pid" ] && kill -0 "$(cat "$BASE/run/slurmctld.pid")" 2>/dev/null; then
    timeout 5 scancel --user="$(id -un)" 2>/dev/null || true
  fi
  stop_one slurmd "$BASE/run/slurmd.pid"
  stop_one slurmctld "$BASE/run/slurmctld.pid"
  stop_one slurmdbd "$BASE/run/slurmdbd.pid"
  stop_one mariadbd "$BASE/mysql/mysqld.pid"
  stop_one munged "$BASE/munge/munged.pid"
}

install_if_missing() {
  local need=() pkgs=""
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null || need+=(slurm-wlm)
  command -v munged >/dev/null || need+=(munge)
  if [ "$WITH_ACCOUNTING" = 1 ]; then
    command -v slurmdbd >/dev/null || need+=(slurmdbd)
    command -v mariadbd >/dev/null || need+=(mariadb-server)
  fi
  [ ${#need[@]} -eq 0 ] && return 0
  pkgs="${need[*]}"
  # exit status 3 = "cannot install here" (tests skip on it unless SCALING_REQUIRE_SLURM is set)
  if [ "$INSTALL" != 1 ]; then echo "slurm_ci: missing $pkgs and SLURM_CI_INSTALL=0" >&2; exit 3; fi
  if [ "$(id -u)" != 0 ]; then echo "slurm_ci: missing $pkgs and not root (cannot apt-get)" >&2; exit 3; fi
  command -v apt-get >/dev/null || { echo "slurm_ci: missing $pkgs and no apt-get" >&2; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$BASE"
  { apt-get update -q && apt-get install -y -q --no-install-recommends $pkgs; } >"$BASE/apt.log" 2>&1 \
    || { tail -n 30 "$BASE/apt.log" >&2; echo "slurm_ci: apt-get install $pkgs failed" >&2; exit 3; }
  say "installed $pkgs"
}

cmd_start() {
  install_if_missing
  cmd_stop 2>/dev/null || true   # a previous run under the same BASE
  # fresh state every time (stale node/job state => drained node, duplicate job ids in sacct)
  rm -rf "$BASE/state" "$BASE/run" "$BASE/log" "$BASE/mysql"
  mkdir -p "$BASE"/{state/ctld,state/d,run,log,munge}
  chmod 755 "$BASE" "$BASE/munge"

  # munged refuses a key owned by another user when run as root: use our own root-owned 0400 copy
  if [ ! -s "$BASE/munge/munge.key" ]; then
    if [ -s /etc/munge/munge.key ]; then install -m 0400 -o "$(id -u)" -g "$(id -g)" /etc/munge/munge.key "$BASE/munge/munge.key"
    else mungekey -c -k "$BASE/munge/munge.key"; chmod 0400 "$BASE/munge/munge.key"; fi
  fi
  munged --socket="$BASE/munge/munge.socket.2" --key-file="$BASE/munge/munge.key" \
         --pid-file="$BASE/munge/munged.pid" --log-file="$BASE/munge/munged.log" --seed-file="$BASE/munge/munged.seed"
  wait_for 10 test -S "$BASE/munge/munge.socket.2"
  say "munged up"

  local cpus mem acct user
  user=$(id -un)
  cpus=${SLURM_CI_CPUS:-$(nproc)}
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  if [ "$WITH_ACCOUNTING" = 1 ]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# persistent connections to slurmdbd ignore AuthInfo=socket=...; the munge socket goes here instead
AccountingStoragePass=$BASE/munge/munge.socket.2
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
  else
    acct="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  fi

  cat > "$BASE/slurm.conf" <<EOF
# Single-node Slurm 22.05 for CI, generated by scripts/slurm_ci.sh
ClusterName=ci
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also the delay before a requeued job may start again (default 120 s)
AuthInfo=socket=$BASE/munge/munge.socket.2,cred_expire=5
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$BASE/state/ctld
SlurmdSpoolDir=$BASE/state/d
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# let NodeName CPUs/RealMemory differ from the hardware without draining the node
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$acct
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
# defaults (batch_sched_delay=3, sched_interval=60) make requeue->restart take ~2.5 min
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
SelectType=select/cons_tres
# CR_Core, not CR_Core_Memory: jobs without --mem would otherwise take all memory and serialize
SelectTypeParameters=CR_Core
MaxArraySize=1001
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
# with a GraceTime, preempted jobs first get their --signal (submitit: USR2) => checkpoint + requeue
SlurmctldParameters=preempt_send_user_signal
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=low Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=30
PartitionName=high Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=10
EOF
  export SLURM_CONF="$BASE/slurm.conf"

  if [ "$WITH_ACCOUNTING" = 1 ]; then
    mkdir -p "$BASE/mysql/data"
    mariadb-install-db --no-defaults --datadir="$BASE/mysql/data" --user="$user" \
        --auth-root-authentication-method=socket >"$BASE/mysql/install.log" 2>&1
    setsid mariadbd --no-defaults --datadir="$BASE/mysql/data" --socket="$BASE/mysql/mysqld.sock" \
        --pid-file="$BASE/mysql/mysqld.pid" --bind-address=127.0.0.1 --port=3306 --user="$user" \
        --log-error="$BASE/mysql/error.log" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        </dev/null >/dev/null 2>&1 &
    wait_for 30 mariadb --no-defaults -S "$BASE/mysql/mysqld.sock" -u root -e 'select 1'
    mariadb --no-defaults -S "$BASE/mysql/mysqld.sock" -u root -e "
      CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
    say "mariadbd up"
    # slurmdbd.conf is read from beside \$SLURM_CONF; it must be 0600 and owned by SlurmUser
    cat > "$BASE/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$BASE/munge/munge.socket.2
DbdHost=localhost
DbdPort=6819
SlurmUser=$user
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$BASE/slurmdbd.conf"
    slurmdbd
    wait_for 30 sacctmgr -n list cluster
    say "slurmdbd up"
  fi

  slurmctld   # registers cluster "ci" in slurmdbd by itself
  wait_for 30 scontrol ping
  say "slurmctld up"
  slurmd -N localhost   # the node is "localhost", not the real hostname
  node_idle() { [ "$(sinfo -h -n localhost -o %T | head -1)" = idle ]; }
  wait_for 30 node_idle
  say "slurmd up, node idle"
  if [ "$WITH_ACCOUNTING" = 1 ]; then
    wait_for 30 sh -c 'sacctmgr -n -P list cluster format=cluster,controlport | grep -q "^ci|6817"'
    say "cluster registered in slurmdbd"
  fi
  echo "export SLURM_CONF=$SLURM_CONF"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  *) echo "usage: $0 start|stop   (base dir: \$SLURM_CI_BASE, default /tmp/scaling-slurm-ci)" >&2; exit 2 ;;
esac
