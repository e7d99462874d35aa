#!/usr/bin/env bash
# Start (or reuse) the real local services that wcon's tests talk to.
# Run `scripts/services.sh --help` for usage.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/services.sh [--only NAME[,NAME...]] [--help]

Makes sure each test service answers on 127.0.0.1, starting the ones that do
not, then prints one line per service

    service NAME ready at HOST:PORT

followed by `export VAR=value` lines, which are also written to
$WCON_SERVICES_DIR/env.sh (default /var/tmp/wcon-services/env.sh):

    source /var/tmp/wcon-services/env.sh

Services (aliases in brackets):
  postgres   [pg, postgresql]  PostgreSQL, db `test`, trust auth  WCON_TEST_POSTGRES_URL
  mariadb    [mysql]           MariaDB, root without password     WCON_TEST_MYSQL_URL
  redis                        Redis (also installs rq)            WCON_TEST_REDIS_URL, WCON_TEST_RQ_BIN
  rabbitmq   [amqp]            RabbitMQ, guest/guest               WCON_TEST_RABBITMQ_URL
  activemq   [stomp]           ActiveMQ 5.17, STOMP transport      WCON_TEST_ACTIVEMQ_STOMP
  mosquitto  [mqtt]            Mosquitto MQTT broker               WCON_TEST_MQTT
  clickhouse                   ClickHouse HTTP interface           WCON_TEST_CLICKHOUSE_URL
  pubsub                       GCP Pub/Sub emulator                PUBSUB_EMULATOR_HOST
  moto       [s3, sqs]         moto_server (S3 + SQS)              WCON_TEST_S3_ENDPOINT, WCON_TEST_SQS_ENDPOINT

A service that already answers its protocol on its port is reused as is.
Missing packages are installed with apt-get (and moto/rq with pip into
$WCON_SERVICES_DIR/venv) only when missing. Daemons this script starts log to
$WCON_SERVICES_DIR/logs and have their PIDs recorded in $WCON_SERVICES_DIR/pids;
scripts/stop-services.sh stops exactly those.

Ports can be overridden: WCON_PG_PORT (5432), WCON_MYSQL_PORT (3306),
WCON_REDIS_PORT (6379), WCON_AMQP_PORT (5672), WCON_STOMP_PORT (61614),
WCON_OPENWIRE_PORT (61616), WCON_MQTT_PORT (1883), WCON_CLICKHOUSE_PORT (8123),
WCON_CLICKHOUSE_TCP_PORT (9000), WCON_PUBSUB_PORT (8085), WCON_MOTO_PORT (5000).
On a default port a machine-wide install (the Debian cluster/config) is
started with the machine's own command; on another port a private instance
with its state under $WCON_SERVICES_DIR is started.

WCON_SERVICES_TIMEOUT=N waits N seconds for every service instead of its
default (30-120 s).

Exit status is non-zero, naming the service and its log file, when a service
cannot be installed, started or reached.
EOF
}

HOST=127.0.0.1
STATE_DIR=${WCON_SERVICES_DIR:-/var/tmp/wcon-services}
LOG_DIR=$STATE_DIR/logs
PID_DIR=$STATE_DIR/pids
VENV=$STATE_DIR/venv
ENV_FILE=$STATE_DIR/env.sh

PG_PORT=${WCON_PG_PORT:-5432}
MYSQL_PORT=${WCON_MYSQL_PORT:-3306}
REDIS_PORT=${WCON_REDIS_PORT:-6379}
AMQP_PORT=${WCON_AMQP_PORT:-5672}
STOMP_PORT=${WCON_STOMP_PORT:-61614}
OPENWIRE_PORT=${WCON_OPENWIRE_PORT:-61616}
MQTT_PORT=${WCON_MQTT_PORT:-1883}
CH_PORT=${WCON_CLICKHOUSE_PORT:-8123}
CH_TCP_PORT=${WCON_CLICKHOUSE_TCP_PORT:-9000}
PUBSUB_PORT=${WCON_PUBSUB_PORT:-8085}
MOTO_PORT=${WCON_MOTO_PORT:-5000}

PIP_SPECS=('moto[server]>=5.1,<6' 'rq>=2,<4')

ALL_SERVICES=(postgres mariadb redis rabbitmq activemq mosquitto clickhouse pubsub moto)

declare -A PORT=(
  [postgres]=$PG_PORT [mariadb]=$MYSQL_PORT [redis]=$REDIS_PORT [rabbitmq]=$AMQP_PORT
  [activemq]=$STOMP_PORT [mosquitto]=$MQTT_PORT [clickhouse]=$CH_PORT
  [pubsub]=$PUBSUB_PORT [moto]=$MOTO_PORT
)
# Seconds to wait for a service after starting it.
declare -A TIMEOUT=(
  [postgres]=60 [mariadb]=90 [redis]=30 [rabbitmq]=120 [activemq]=120
  [mosquitto]=30 [clickhouse]=90 [pubsub]=120 [moto]=60
)
if [[ -n ${WCON_SERVICES_TIMEOUT:-} ]]; then
  for s in "${!TIMEOUT[@]}"; do TIMEOUT[$s]=$WCON_SERVICES_TIMEOUT; done
fi
# Log file(s) to look at when a service fails; start_* functions may replace it.
declare -A DEFAULT_PORT=(
  [postgres]=5432 [mariadb]=3306 [redis]=6379 [rabbitmq]=5672 [activemq]=61614
  [mosquitto]=1883 [clickhouse]=8123 [pubsub]=8085 [moto]=5000
)
# ID names a service's log, PID file and state dir: NAME on its default
# port, NAME-PORT on another one (so two instances never share them).
declare -A ID=() LOGF=()
for s in "${ALL_SERVICES[@]}"; do
  if [[ ${PORT[$s]} == "${DEFAULT_PORT[$s]}" ]]; then ID[$s]=$s; else ID[$s]=$s-${PORT[$s]}; fi
  LOGF[$s]=$LOG_DIR/${ID[$s]}.log
done
declare -A STARTED_PID=()   # PID known from `cmd &`
declare -A STOP_SIG=([postgres]=INT)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- arguments
ONLY=""
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --only) [[ $# -ge 2 ]] || die "--only needs a comma-separated list"; ONLY=$2; shift 2 ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

canonical() {
  case $1 in
    postgres|pg|postgresql) echo postgres ;;
    mariadb|mysql) echo mariadb ;;
    redis) echo redis ;;
    rabbitmq|rabbit|amqp) echo rabbitmq ;;
    activemq|stomp) echo activemq ;;
    mosquitto|mqtt) echo mosquitto ;;
    clickhouse) echo clickhouse ;;
    pubsub|gcp-pubsub) echo pubsub ;;
    moto|s3|sqs) echo moto ;;
    *) return 1 ;;
  esac
}

declare -A WANT=()
if [[ -z $ONLY ]]; then
  for s in "${ALL_SERVICES[@]}"; do WANT[$s]=1; done
else
  IFS=, read -r -a _names <<<"$ONLY"
  for n in "${_names[@]}"; do
    [[ -n $n ]] || continue
    c=$(canonical "$n") || die "unknown service '$n' (see --help)"
    WANT[$c]=1
  done
fi
SELECTED=()
for s in "${ALL_SERVICES[@]}"; do [[ -n ${WANT[$s]:-} ]] && SELECTED+=("$s"); done
((${#SELECTED[@]})) || die "no service selected"

mkdir -p "$LOG_DIR" "$PID_DIR"
# One run at a time; fd 9 is closed for every daemon started below.
exec 9>"$STATE_DIR/lock"
flock -w 900 9 || die "another services.sh run holds $STATE_DIR/lock"

# ---------------------------------------------------------------- helpers
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# PID of the process listening on 127.0.0.1:PORT (or any address), if any.
pid_on_port() {
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
}

# The Python that runs the protocol checks (standard library only). The venv's
# interpreter is the real binary; a pyenv shim costs ~0.25 s per call.
resolve_python() {
  if [[ -x $VENV/bin/python3 ]]; then PY=$VENV/bin/python3; return; fi
  PY=$(command -v python3 || true)
  if [[ $PY == */shims/* ]]; then
    PY=$(cd / && python3 -c 'import sys; print(sys.executable)' 2>/dev/null || echo "$PY")
  fi
}
resolve_python

# Real protocol handshakes in Python's standard library: amqp, stomp, mqtt.
proto_check() {
  [[ -n $PY ]] || return 1
  timeout 10 "$PY" - "$@" <<'PY'
import socket, struct, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((host, port), timeout=5)
def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise SystemExit("connection closed")
        b += c
    return b
def shortstr(v):
    v = v.encode(); return bytes([len(v)]) + v
def longstr(v):
    return struct.pack(">I", len(v)) + v
if kind == "amqp":
    def frame():
        t, ch, size = struct.unpack(">BHI", recv_exact(7))
        payload = recv_exact(size); recv_exact(1)
        return t, payload
    def method(cls, mid, args):
        p = struct.pack(">HH", cls, mid) + args
        s.sendall(struct.pack(">BHI", 1, 0, len(p)) + p + b"\xce")
    s.sendall(b"AMQP\x00\x00\x09\x01")
    t, p = frame()
    assert t == 1 and p[:4] == struct.pack(">HH", 10, 10), "no connection.start"
    method(10, 11, struct.pack(">I", 0) + shortstr("PLAIN") + longstr(b"\0guest\0guest") + shortstr("en_US"))
    t, p = frame()
    assert p[:4] == struct.pack(">HH", 10, 30), "guest/guest login refused"
    ch_max, frame_max, hb = struct.unpack(">HIH", p[4:12])
    method(10, 31, struct.pack(">HIH", ch_max, frame_max, 0))
    method(10, 40, shortstr("/") + shortstr("") + b"\0")
    t, p = frame()
    assert p[:4] == struct.pack(">HH", 10, 41), "vhost / refused"
    method(10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))
    frame()
elif kind == "stomp":
    s.sendall(b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\nheart-beat:0,0\n\n\0")
    b = b""
    while b"\0" not in b:
        c = s.recv(4096)
        if not c:
            break
        b += c
    assert b.lstrip(b"\r\n").startswith(b"CONNECTED"), b[:200]
    s.sendall(b"DISCONNECT\n\n\0")
elif kind == "mqtt":
    cid = b"wcon-services-check"
    var = struct.pack(">H", 4) + b"MQTT" + bytes([4, 2]) + struct.pack(">H", 30)
    pay = struct.pack(">H", len(cid)) + cid
    body = var + pay
    s.sendall(bytes([0x10, len(body)]) + body)
    r = recv_exact(4)
    assert r[0] == 0x20 and r[3] == 0, "CONNACK refused: %r" % r
    s.sendall(b"\xe0\x00")
else:
    raise SystemExit("unknown kind " + kind)
s.close()
PY
}

# Start a daemon in the foreground of its own session, in the background of
# this script: stdin/stdout/stderr redirected, lock fd closed. Usage:
#   spawn NAME DIR CMD...      (sets STARTED_PID[NAME])
spawn() {
  local name=$1 dir=$2; shift 2
  ( cd "$dir" && exec setsid "$@" ) </dev/null >>"$LOG_DIR/${ID[$name]}.log" 2>&1 9>&- &
  STARTED_PID[$name]=$!
}

# Run a command that daemonizes by itself, output to the service's log.
run_logged() {
  local name=$1; shift
  "$@" </dev/null >>"$LOG_DIR/${ID[$name]}.log" 2>&1 9>&-
}


# ---------------------------------------------------------------- install
PUBSUB_BIN=""
find_pubsub_emulator() {
  local c root
  for c in "${WCON_PUBSUB_EMULATOR:-}" "$(command -v cloud-pubsub-emulator || true)" \
    /usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator \
    /usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator \
    /opt/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator; do
    [[ -n $c && -x $c ]] && { PUBSUB_BIN=$c; return 0; }
  done
  if command -v gcloud >/dev/null; then
    root=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)
    c=$root/platform/pubsub-emulator/bin/cloud-pubsub-emulator
    [[ -n $root && -x $c ]] && { PUBSUB_BIN=$c; return 0; }
  fi
  return 1
}

# need PACKAGE FILE-OR-COMMAND: queue PACKAGE for apt-get unless the file or
# command it provides is already there (whatever package provided it).
need() {
  local pkg=$1 what=$2
  if [[ $what == /* ]]; then compgen -G "$what" >/dev/null && return 0
  else command -v "$what" >/dev/null && return 0; fi
  [[ " ${APT_NEEDED[*]} " == *" $pkg "* ]] || APT_NEEDED+=("$pkg")
}
install_missing() {
  APT_NEEDED=()
  if [[ -n ${WANT[postgres]:-} ]]; then
    need postgresql '/usr/lib/postgresql/*/bin/postgres'
    need postgresql-client psql; need postgresql-client pg_isready
  fi
  if [[ -n ${WANT[mariadb]:-} ]]; then
    need mariadb-server /usr/sbin/mariadbd; need mariadb-server mariadb-install-db
    need mariadb-client mariadb
  fi
  if [[ -n ${WANT[redis]:-} ]]; then need redis-server redis-server; need redis-tools redis-cli; fi
  [[ -n ${WANT[rabbitmq]:-} ]] && need rabbitmq-server rabbitmq-server
  if [[ -n ${WANT[activemq]:-} ]]; then
    need activemq /usr/share/activemq/bin/activemq.jar; need default-jre-headless java
  fi
  if [[ -n ${WANT[mosquitto]:-} ]]; then need mosquitto mosquitto; need mosquitto-clients mosquitto_pub; fi
  [[ -n ${WANT[clickhouse]:-} ]] && need clickhouse-server clickhouse-server
  if [[ -n ${WANT[clickhouse]:-}${WANT[pubsub]:-}${WANT[moto]:-} ]]; then need curl curl; fi
  [[ -n ${WANT[pubsub]:-} ]] && need default-jre-headless java
  [[ -n $PY ]] || { need python3 python3; need python3-venv /usr/lib/python3*/venv/__init__.py; }
  local -a pkgs=("${APT_NEEDED[@]}")
  if ((${#pkgs[@]})); then
    [[ $(id -u) == 0 ]] || die "packages missing (${pkgs[*]}) and not root: cannot apt-get install"
    log "installing with apt-get: ${pkgs[*]} (log: $LOG_DIR/apt.log)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"; } \
           </dev/null >>"$LOG_DIR/apt.log" 2>&1 9>&-; then
      tail -n 20 "$LOG_DIR/apt.log" >&2 || true
      die "apt-get install of ${pkgs[*]} failed; see $LOG_DIR/apt.log"
    fi
    [[ -n $PY ]] || resolve_python
  fi
  if [[ -n ${WANT[pubsub]:-} ]] && ! find_pubsub_emulator; then
    die "service pubsub: the Pub/Sub emulator (google-cloud-cli-pubsub-emulator) is not on this machine and Debian has no package for it; set WCON_PUBSUB_EMULATOR to its cloud-pubsub-emulator script"
  fi
  if [[ -n ${WANT[moto]:-}${WANT[redis]:-} ]]; then
    if [[ ! -x $VENV/bin/moto_server || ! -x $VENV/bin/rq ]]; then
      log "installing ${PIP_SPECS[*]} into $VENV (log: $LOG_DIR/pip.log)"
      if ! { { [[ -x $VENV/bin/pip ]] || "$PY" -m venv "$VENV"; } &&
             "$VENV/bin/pip" install -q "${PIP_SPECS[@]}"; } </dev/null >>"$LOG_DIR/pip.log" 2>&1 9>&-; then
        tail -n 20 "$LOG_DIR/pip.log" >&2 || true
        die "pip install of ${PIP_SPECS[*]} into $VENV failed; see $LOG_DIR/pip.log"
      fi
    fi
  fi
}

# ---------------------------------------------------------------- postgres
PG_VER=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1 || true)
pg_system_ok() {
  # The machine's Debian cluster, if it is configured as this kind sets it up
  # (trust auth from 127.0.0.1) and we are asked for the default port.
  [[ $PG_PORT == 5432 && -n $PG_VER ]] || return 1
  local hba=/etc/postgresql/$PG_VER/main/pg_hba.conf
  [[ -f $hba ]] && grep -Eq '^\s*host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"
}
check_postgres() {
  pg_isready -q -h "$HOST" -p "$PG_PORT" -t 3 2>/dev/null &&
    psql -X -q -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1
}
start_postgres() {
  [[ -n $PG_VER ]] || die "service postgres: no PostgreSQL server under /usr/lib/postgresql"
  if pg_system_ok; then
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    LOGF[postgres]="$LOG_DIR/postgres.log /var/log/postgresql/postgresql-$PG_VER-main.log"
    run_logged postgres pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main start ||
      log "pg_ctlcluster start failed (see ${LOGF[postgres]})"
  else
    local base=$STATE_DIR/postgres-$PG_PORT
    install -d -o postgres -g postgres -m 0700 "$base" "$base/run"
    if [[ ! -s $base/data/PG_VERSION ]]; then
      log "postgres: initdb in $base/data"
      run_logged postgres setpriv --reuid=postgres --regid=postgres --init-groups -- \
        "/usr/lib/postgresql/$PG_VER/bin/initdb" -D "$base/data" -A trust -U postgres -E UTF8 ||
        die "service postgres: initdb failed; see ${LOGF[postgres]}"
    fi
    spawn postgres "$base" setpriv --reuid=postgres --regid=postgres --init-groups -- \
      "/usr/lib/postgresql/$PG_VER/bin/postgres" -D "$base/data" -c listen_addresses="$HOST" \
      -c port="$PG_PORT" -c unix_socket_directories="$base/run"
  fi
}
ready_postgres() {
  if [[ $(psql -X -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -Atc \
          "select 1 from pg_database where datname='test'" 2>/dev/null) != 1 ]]; then
    psql -X -q -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -c 'create database test' >/dev/null ||
      die "service postgres: cannot create database test"
  fi
  psql -X -q -h "$HOST" -p "$PG_PORT" -U postgres -d test -Atc 'select 1' >/dev/null ||
    die "service postgres: cannot connect to database test as postgres (trust auth?)"
}

# ---------------------------------------------------------------- mariadb
MY_SOCK=/run/mysqld/mysqld.sock
check_mariadb() {
  mariadb --no-defaults --connect-timeout=3 -h "$HOST" -P "$MYSQL_PORT" -uroot -e 'select 1' >/dev/null 2>&1
}
fix_mariadb() {
  # Port answers but root@127.0.0.1 without password does not work: grant it
  # through the unix socket (root via unix_socket auth), as this kind has it.
  mariadb --no-defaults -S "$MY_SOCK" -uroot -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" >/dev/null 2>&1 || true
}
start_mariadb() {
  if [[ $MYSQL_PORT == 3306 && -d /var/lib/mysql/mysql && -f /etc/mysql/my.cnf ]]; then
    install -d -o mysql -g mysql /run/mysqld
    LOGF[mariadb]="$LOG_DIR/mariadb.log /var/log/mysql/error.log"
    # A mariadbd that is still shutting down makes start-stop-daemon --oknodo
    # a no-op: let it finish first.
    local i
    for ((i = 0; i < 60; i++)); do
      start-stop-daemon --status --exec /usr/sbin/mariadbd || break
      ((i == 0)) && log "mariadb: waiting for a mariadbd that is shutting down"
      sleep 1
    done
    run_logged mariadb start-stop-daemon --start --oknodo --background \
      --output "$LOG_DIR/mariadb.log" --exec /usr/sbin/mariadbd ||
      die "service mariadb: start-stop-daemon failed; see ${LOGF[mariadb]}"
  else
    local base=$STATE_DIR/mariadb-$MYSQL_PORT
    MY_SOCK=$base/mysqld.sock
    install -d -o mysql -g mysql "$base"
    if [[ ! -d $base/data/mysql ]]; then
      log "mariadb: mariadb-install-db in $base/data"
      run_logged mariadb mariadb-install-db --no-defaults --user=mysql --datadir="$base/data" \
        --auth-root-authentication-method=normal --skip-test-db ||
        die "service mariadb: mariadb-install-db failed; see ${LOGF[mariadb]}"
    fi
    cat >"$base/init.sql" <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS test;
SQL
    chown mysql:mysql "$base/init.sql"
    spawn mariadb "$base" /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$base/data" \
      --bind-address="$HOST" --port="$MYSQL_PORT" --socket="$MY_SOCK" --pid-file="$base/mariadbd.pid" \
      --skip-name-resolve --init-file="$base/init.sql" --character-set-server=utf8mb4
  fi
}
ready_mariadb() {
  mariadb --no-defaults -h "$HOST" -P "$MYSQL_PORT" -uroot -e 'CREATE DATABASE IF NOT EXISTS test' ||
    die "service mariadb: cannot create database test as root"
}

# ---------------------------------------------------------------- redis
check_redis() {
  [[ $(timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}
start_redis() {
  local dir=$STATE_DIR/redis-$REDIS_PORT
  mkdir -p "$dir"
  spawn redis "$dir" redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize no \
    --save '' --appendonly no --dir "$dir"
}

# ---------------------------------------------------------------- rabbitmq
check_rabbitmq() { proto_check amqp "$HOST" "$AMQP_PORT" >/dev/null 2>&1; }
start_rabbitmq() {
  if [[ $AMQP_PORT == 5672 && -f /etc/rabbitmq/rabbitmq-env.conf ]] &&
     grep -q '127.0.0.1:5672' /etc/rabbitmq/rabbitmq.conf 2>/dev/null; then
    # The machine's broker, with the machine's own start command.
    LOGF[rabbitmq]="$LOG_DIR/rabbitmq.log /var/log/rabbitmq/rabbit@localhost.log"
    run_logged rabbitmq rabbitmq-server -detached ||
      die "service rabbitmq: rabbitmq-server -detached failed; see ${LOGF[rabbitmq]}"
  else
    local base=$STATE_DIR/rabbitmq-$AMQP_PORT
    mkdir -p "$base/mnesia" "$base/log"
    chown -R rabbitmq:rabbitmq "$base" 2>/dev/null || true
    printf 'listeners.tcp.local = %s:%s\nloopback_users.guest = true\n' "$HOST" "$AMQP_PORT" >"$base/rabbitmq.conf"
    LOGF[rabbitmq]="${LOGF[rabbitmq]} $base/log/wcon$AMQP_PORT@localhost.log"
    spawn rabbitmq "$base" env RABBITMQ_NODENAME="wcon$AMQP_PORT@localhost" \
      RABBITMQ_NODE_IP_ADDRESS="$HOST" RABBITMQ_NODE_PORT="$AMQP_PORT" \
      RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000)) RABBITMQ_MNESIA_BASE="$base/mnesia" \
      RABBITMQ_LOG_BASE="$base/log" RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" ERL_EPMD_ADDRESS="$HOST" \
      rabbitmq-server
  fi
}

# ---------------------------------------------------------------- activemq
check_activemq() { proto_check stomp "$HOST" "$STOMP_PORT" >/dev/null 2>&1; }
start_activemq() {
  local home=/usr/share/activemq base=$STATE_DIR/${ID[activemq]}
  [[ -f $home/bin/activemq.jar ]] || die "service activemq: $home/bin/activemq.jar missing (package activemq)"
  mkdir -p "$base/conf" "$base/data" "$base/tmp"
  cat >"$base/conf/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <!-- written by wcon scripts/services.sh -->
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="wcon-test"
          persistent="false" dataDirectory="$base/data">
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://$HOST:$OPENWIRE_PORT"/>
      <transportConnector name="stomp" uri="stomp://$HOST:$STOMP_PORT"/>
    </transportConnectors>
  </broker>
</beans>
EOF
  # Debian's ActiveMQ logs through log4j 1.2: to stdout, i.e. into our log.
  cat >"$base/conf/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d | %-5p | %m | %c | %t%n
EOF
  spawn activemq "$base" java -Xms64m -Xmx384m -Djava.awt.headless=true \
    --add-reads=java.xml=java.logging \
    --add-opens java.base/java.security=ALL-UNNAMED --add-opens java.base/java.net=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.util=ALL-UNNAMED \
    --add-opens java.naming/javax.naming.spi=ALL-UNNAMED \
    --add-opens java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED \
    --add-opens java.base/java.util.concurrent=ALL-UNNAMED \
    --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED \
    -Djava.io.tmpdir="$base/tmp" \
    -Dactivemq.classpath="$base/conf:$home/lib/" -Dactivemq.home="$home" \
    -Dactivemq.base="$base" -Dactivemq.conf="$base/conf" -Dactivemq.data="$base/data" \
    -jar "$home/bin/activemq.jar" start "xbean:file:$base/conf/activemq.xml"
}

# ---------------------------------------------------------------- mosquitto
check_mosquitto() { proto_check mqtt "$HOST" "$MQTT_PORT" >/dev/null 2>&1; }
start_mosquitto() {
  if [[ $MQTT_PORT == 1883 && -f /etc/mosquitto/mosquitto.conf ]] && id mosquitto >/dev/null 2>&1; then
    # The machine's broker with its own command. Its pid/data/log dirs must
    # belong to mosquitto, or it dies silently after -d.
    install -d -o mosquitto -g mosquitto /run/mosquitto /var/lib/mosquitto /var/log/mosquitto
    LOGF[mosquitto]="$LOG_DIR/mosquitto.log /var/log/mosquitto/mosquitto.log"
    run_logged mosquitto mosquitto -d -c /etc/mosquitto/mosquitto.conf ||
      die "service mosquitto: mosquitto -d failed; see ${LOGF[mosquitto]}"
  else
    local base=$STATE_DIR/mosquitto-$MQTT_PORT user=root
    id mosquitto >/dev/null 2>&1 && user=mosquitto
    install -d -o "$user" "$base"
    # log_dest stderr: the log file is opened by this shell, before the
    # broker drops privileges.
    printf 'listener %s %s\nallow_anonymous true\npersistence false\nlog_dest stderr\nuser %s\n' \
      "$MQTT_PORT" "$HOST" "$user" >"$base/mosquitto.conf"
    spawn mosquitto "$base" mosquitto -c "$base/mosquitto.conf"
  fi
}

# ---------------------------------------------------------------- clickhouse
check_clickhouse() {
  [[ $(curl -fsS -m 3 "http://$HOST:$CH_PORT/ping" 2>/dev/null) == Ok.* ]] &&
    [[ $(curl -fsS -m 5 --data-binary 'SELECT 1' "http://$HOST:$CH_PORT/" 2>/dev/null) == 1 ]]
}
start_clickhouse() {
  local base=$STATE_DIR/${ID[clickhouse]} bin
  bin=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)
  [[ -x $bin ]] || die "service clickhouse: clickhouse-server not installed"
  mkdir -p "$base/data" "$base/tmp" "$base/user_files" "$base/format_schemas"
  cat >"$base/config.xml" <<EOF
<?xml version="1.0"?>
<!-- written by wcon scripts/services.sh -->
<yandex>
  <logger>
    <level>information</level>
    <log>$LOG_DIR/${ID[clickhouse]}-server.log</log>
    <errorlog>$LOG_DIR/${ID[clickhouse]}-server.err.log</errorlog>
    <size>100M</size>
    <count>2</count>
  </logger>
  <listen_host>$HOST</listen_host>
  <http_port>$CH_PORT</http_port>
  <tcp_port>$CH_TCP_PORT</tcp_port>
  <max_connections>1024</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>$base/data/</path>
  <tmp_path>$base/tmp/</tmp_path>
  <user_files_path>$base/user_files/</user_files_path>
  <format_schema_path>$base/format_schemas/</format_schema_path>
  <users_config>$base/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
  cat >"$base/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <use_uncompressed_cache>0</use_uncompressed_cache>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
        <read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
EOF
  LOGF[clickhouse]="${LOGF[clickhouse]} $LOG_DIR/${ID[clickhouse]}-server.err.log"
  spawn clickhouse "$base" "$bin" --config-file="$base/config.xml"
}

# ---------------------------------------------------------------- pubsub
check_pubsub() {
  # REST surface of the emulator: list topics of a project.
  curl -fsS -m 3 "http://$HOST:$PUBSUB_PORT/v1/projects/wcon-test/topics" >/dev/null 2>&1
}
start_pubsub() {
  local base=$STATE_DIR/${ID[pubsub]}
  mkdir -p "$base"
  spawn pubsub "$base" env JAVA_OPTS="${JAVA_OPTS:-} -Xmx256m" "$PUBSUB_BIN" --host="$HOST" --port="$PUBSUB_PORT"
}

# ---------------------------------------------------------------- moto
check_moto() {
  # S3 ListBuckets and SQS ListQueues (moto routes on the credential scope).
  curl -fsS -m 3 "http://$HOST:$MOTO_PORT/" 2>/dev/null | grep -q ListAllMyBucketsResult &&
    curl -fsS -m 3 "http://$HOST:$MOTO_PORT/" -d 'Action=ListQueues&Version=2012-11-05' \
      -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0' \
      2>/dev/null | grep -q ListQueuesResponse
}
start_moto() {
  local base=$STATE_DIR/${ID[moto]}
  mkdir -p "$base"
  spawn moto "$base" "$VENV/bin/moto_server" -H "$HOST" -p "$MOTO_PORT"
}

# ---------------------------------------------------------------- main
install_missing

declare -A STARTED=() DEADLINE=() FIXED=() RETRIED=()
PENDING=()
for s in "${SELECTED[@]}"; do
  if "check_$s"; then
    # Reused. Forget a PID file of ours that no longer names the process
    # holding the port (it died and someone else started the service).
    pidfile=$PID_DIR/${ID[$s]}.pid
    if [[ -f $pidfile ]]; then
      read -r oldpid _ <"$pidfile" || true
      holder=$(ss -Hltnp "sport = :${PORT[$s]}" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | xargs || true)
      if [[ -n $holder && " $holder " != *" ${oldpid:-x} "* ]]; then
        log "$s: $pidfile named pid ${oldpid:-?}, but pid $holder holds the port; forgetting it"
        rm -f "$pidfile"
      fi
    fi
    continue
  fi
  if port_open "${PORT[$s]}"; then
    log "$s: something listens on $HOST:${PORT[$s]} but does not answer yet; waiting for it"
  else
    log "$s: not running on $HOST:${PORT[$s]}; starting it"
    "start_$s"
    STARTED[$s]=1
  fi
  DEADLINE[$s]=$((SECONDS + ${TIMEOUT[$s]}))
  PENDING+=("$s")
done

fail_service() {
  local s=$1 why=$2 f
  if [[ -z ${STARTED[$s]:-} ]]; then
    local holder
    holder=$(ss -Hltnp "sport = :${PORT[$s]}" 2>/dev/null | grep -o 'users:.*' | head -n1 || true)
    why="$why (not started by this script: port ${PORT[$s]} is held by ${holder:-another process}; free it or set another port)"
  fi
  printf '[services] ERROR: service %s %s at %s:%s; look at: %s\n' "$s" "$why" "$HOST" "${PORT[$s]}" "${LOGF[$s]}" >&2
  for f in ${LOGF[$s]}; do
    [[ -f $f ]] && { printf '[services] --- last lines of %s\n' "$f" >&2; tail -n 15 "$f" >&2; }
  done
  FAILED+=("$s")
}

FAILED=()
while ((${#PENDING[@]})); do
  next=()
  for s in "${PENDING[@]}"; do
    if "check_$s"; then
      log "$s: answering after $((SECONDS - DEADLINE[$s] + TIMEOUT[$s])) s"
      continue
    fi
    if [[ $s == mariadb && -z ${FIXED[$s]:-} ]] && port_open "${PORT[$s]}"; then
      FIXED[$s]=1; fix_mariadb
    fi
    pid=${STARTED_PID[$s]:-}
    # A command that daemonizes by itself (pg_ctlcluster, rabbitmq-server
    # -detached, start-stop-daemon, mosquitto -d) gives no PID to watch: if the
    # port is still closed after 20 s, run the start command once more.
    if [[ -n ${STARTED[$s]:-} && -z $pid && -z ${RETRIED[$s]:-} ]] &&
       ((SECONDS >= DEADLINE[$s] - TIMEOUT[$s] + 20)) && ! port_open "${PORT[$s]}"; then
      RETRIED[$s]=1
      log "$s: port ${PORT[$s]} still closed after 20 s; running its start command again"
      "start_$s"
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      fail_service "$s" "exited (pid $pid) before answering"
    elif ((SECONDS >= DEADLINE[$s])); then
      fail_service "$s" "did not answer within ${TIMEOUT[$s]} s"
    else
      next+=("$s")
    fi
  done
  PENDING=("${next[@]}")
  ((${#PENDING[@]})) && sleep 1
done

# Record the PIDs of what this run started (for stop-services.sh).
for s in "${!STARTED[@]}"; do
  [[ " ${FAILED[*]} " == *" $s "* ]] && continue
  pid=$(pid_on_port "${PORT[$s]}")
  [[ -n $pid ]] || pid=${STARTED_PID[$s]:-}
  if [[ -n $pid && -r /proc/$pid/comm ]]; then
    printf '%s %s %s\n' "$pid" "${STOP_SIG[$s]:-TERM}" "$(cat "/proc/$pid/comm")" >"$PID_DIR/${ID[$s]}.pid"
  else
    log "$s: could not find the PID of the started daemon; stop-services.sh will not stop it"
  fi
done

((${#FAILED[@]} == 0)) || die "not ready: ${FAILED[*]}"

for s in "${SELECTED[@]}"; do
  if declare -F "ready_$s" >/dev/null; then "ready_$s"; fi
done

ENV_LINES=()
addenv() { ENV_LINES+=("export $1=$(printf '%q' "$2")"); }
for s in "${SELECTED[@]}"; do
  echo "service $s ready at $HOST:${PORT[$s]}"
  case $s in
    postgres) addenv WCON_TEST_POSTGRES_URL "postgres://postgres@$HOST:$PG_PORT/test" ;;
    mariadb) addenv WCON_TEST_MYSQL_URL "mysql://root@$HOST:$MYSQL_PORT/test" ;;
    redis) addenv WCON_TEST_REDIS_URL "redis://$HOST:$REDIS_PORT/"
           addenv WCON_TEST_RQ_BIN "$VENV/bin/rq" ;;
    rabbitmq) addenv WCON_TEST_RABBITMQ_URL "amqp://guest:guest@$HOST:$AMQP_PORT/%2f" ;;
    activemq) addenv WCON_TEST_ACTIVEMQ_STOMP "$HOST:$STOMP_PORT" ;;
    mosquitto) addenv WCON_TEST_MQTT "$HOST:$MQTT_PORT" ;;
    clickhouse) addenv WCON_TEST_CLICKHOUSE_URL "http://$HOST:$CH_PORT" ;;
    pubsub) addenv PUBSUB_EMULATOR_HOST "$HOST:$PUBSUB_PORT" ;;
    moto) addenv WCON_TEST_S3_ENDPOINT "http://$HOST:$MOTO_PORT"
          addenv WCON_TEST_SQS_ENDPOINT "http://$HOST:$MOTO_PORT" ;;
  esac
done
printf '%s\n' "${ENV_LINES[@]}"
{
  echo "# written by wcon scripts/services.sh on $(date -u +%FT%TZ) for: ${SELECTED[*]}"
  printf '%s\n' "${ENV_LINES[@]}"
} >"$ENV_FILE.tmp"
mv "$ENV_FILE.tmp" "$ENV_FILE"
