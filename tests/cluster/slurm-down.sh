#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by slurm-up.sh (by PID file, never by name).
# PURGE=1 additionally wipes controller state/logs and the accounting DB so the next start is fresh.
set -u
scancel --user="$(id -un)" 2>/dev/null || true
stop() {  # $1 = pidfile, $2 = label
  local pf=$1 pid
  [ -s "$pf" ] || return 0
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then
    echo "stopping $2 (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { echo "$2 still alive, SIGKILL"; kill -KILL "$pid"; }
  fi
  rm -f "$pf"
}
stop /run/slurmd.pid slurmd
stop /run/slurmctld.pid slurmctld
stop /run/slurmdbd.pid slurmdbd
if [ -s /run/mysqld/mysqld.pid ] && kill -0 "$(cat /run/mysqld/mysqld.pid)" 2>/dev/null; then
  [ "${PURGE:-0}" = 1 ] && mysql -e 'DROP DATABASE IF EXISTS slurm_acct_db' 2>/dev/null
  echo "stopping mariadb"; mysqladmin shutdown 2>/dev/null || stop /run/mysqld/mysqld.pid mariadb
fi
stop /run/munge/munged.pid munged
rm -f /run/slurm-up.applied.conf
if [ "${PURGE:-0}" = 1 ]; then
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/log/slurm/*
fi
exit 0
