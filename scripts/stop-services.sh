#!/usr/bin/env bash
# Stop the daemons that scripts/services.sh itself started (and only those):
# each is recorded in $WCON_SERVICES_DIR/pids/NAME.pid as "PID SIGNAL COMM".
# A service that services.sh found already running has no PID file and is
# left alone. Usage: scripts/stop-services.sh [--only NAME[,NAME...]] [--help]
set -euo pipefail

STATE_DIR=${WCON_SERVICES_DIR:-/var/tmp/wcon-services}
PID_DIR=$STATE_DIR/pids

log() { printf '[stop-services] %s\n' "$*" >&2; }

ONLY=""
while (($#)); do
  case $1 in
    -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --only) ONLY=$2; shift 2 ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    *) log "unknown argument: $1"; exit 2 ;;
  esac
done

canonical() {
  case $1 in
    pg|postgresql) echo postgres ;; mysql) echo mariadb ;; rabbit|amqp) echo rabbitmq ;;
    stomp) echo activemq ;; mqtt) echo mosquitto ;; s3|sqs) echo moto ;; *) echo "$1" ;;
  esac
}

shopt -s nullglob
files=()
if [[ -n $ONLY ]]; then
  IFS=, read -r -a names <<<"$ONLY"
  for n in "${names[@]}"; do
    c=$(canonical "$n")
    for f in "$PID_DIR/$c.pid" "$PID_DIR/$c"-[0-9]*.pid; do [[ -f $f ]] && files+=("$f"); done
  done
else
  files=("$PID_DIR"/*.pid)
fi
if ((${#files[@]} == 0)); then
  log "nothing to stop: services.sh started no service that is recorded in $PID_DIR"
  exit 0
fi

status=0
declare -A WAITING=()
for f in "${files[@]}"; do
  name=$(basename "$f" .pid)
  read -r pid sig comm <"$f" || true
  if [[ -z ${pid:-} || ! -r /proc/$pid/comm || $(cat "/proc/$pid/comm" 2>/dev/null) != "$comm" ]]; then
    log "$name: pid ${pid:-?} ($comm) is no longer running; forgetting it"
    rm -f "$f"
    continue
  fi
  log "$name: stopping pid $pid ($comm) with SIG$sig"
  kill "-$sig" "$pid" 2>/dev/null || true
  WAITING[$name]=$pid
done

deadline=$((SECONDS + 60))
while ((${#WAITING[@]})); do
  for name in "${!WAITING[@]}"; do
    pid=${WAITING[$name]}
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name: stopped"
      rm -f "$PID_DIR/$name.pid"
      unset "WAITING[$name]"
    elif ((SECONDS >= deadline)); then
      log "$name: pid $pid still running after 60 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      if kill -0 "$pid" 2>/dev/null; then status=1; else rm -f "$PID_DIR/$name.pid"; fi
      unset "WAITING[$name]"
    fi
  done
  ((${#WAITING[@]})) && sleep 0.5
done
exit "$status"
