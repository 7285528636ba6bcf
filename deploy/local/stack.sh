#!/usr/bin/env bash
# The local real stack, without Docker: Apache Kafka (KRaft, official jars from Maven Central,
# Java 17) and a private PostgreSQL cluster, both on 127.0.0.1, plus the four services as
# separate processes. Everything lives under $STACK_DIR; every process we start is recorded by
# pid so `down` stops exactly what `up` started. `up` also starts the front door: nginx on
# 127.0.0.1:$SERVICE_PORT_BASE (8000) routing the APIs' path prefixes as the Kubernetes Ingress does.
#
# Usage: deploy/local/stack.sh <install|infra-up|services-up|frontdoor-up|up|down|status|logs|env>
# Ports and directories come from the environment (see the defaults below); `make test` runs a
# second stack on other ports with its own STACK_DIR so it never collides with `make up`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

STACK_NAME="${STACK_NAME:-dev}"
STACK_DIR="${STACK_DIR:-$ROOT/.local/$STACK_NAME}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
PG_PORT="${PG_PORT:-5433}"
PG_DB="${PG_DB:-automation}"
PG_USER="${PG_USER:-automation}"
SERVICE_PORT_BASE="${SERVICE_PORT_BASE:-8000}"
PARTITIONS="${AUTOMATION_PARTITIONS:-6}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/local/kafka/pom.xml)"
KAFKA_LIBS="$ROOT/.local/kafka/$KAFKA_VERSION/libs"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
NGINX_BIN="${NGINX_BIN:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}"
# kustomize renders deploy/k8s in tests/test_deploy.py; built from source with `go install` (pinned)
KUSTOMIZE_VERSION="v5.8.1"
KUSTOMIZE="$ROOT/.local/bin/kustomize"

# service name : python package : port offset
SERVICES=(
  "trigger-detector:trigger_detector:1"
  "executor:executor:2"
  "approvals:approvals:3"
  "timeline-projector:timeline_projector:4"
)

log() { printf '[stack:%s] %s\n' "$STACK_NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
export AUTOMATION_DATABASE_URL="${AUTOMATION_DATABASE_URL:-postgresql+asyncpg://$PG_USER:$PG_USER@127.0.0.1:$PG_PORT/$PG_DB}"
export AUTOMATION_NAMESPACE="${AUTOMATION_NAMESPACE:-}"
export AUTOMATION_PARTITIONS="$PARTITIONS"
# A local stack: the services accept the built-in development JWT key (they refuse it otherwise).
export AUTOMATION_DEV_MODE="${AUTOMATION_DEV_MODE:-true}"
export AUTOMATION_EGRESS_ALLOW="${AUTOMATION_EGRESS_ALLOW:-127.0.0.1,localhost}"  # the local stack: webhooks go to the local sink

# ---------------------------------------------------------------- install
install_python() {
  if ! command -v uv >/dev/null 2>&1; then
    log "installing uv with pip"
    python3 -m pip install --quiet uv || die "could not install uv"
  fi
  local stamp="$VENV/.installed"
  local inputs
  inputs="$(cat requirements.lock shared/pyproject.toml services/*/pyproject.toml | sha256sum | cut -c1-16)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$inputs" ]]; then return 0; fi
  log "installing Python dependencies into .venv (requirements.lock)"
  [[ -x "$PY" ]] || uv venv --quiet --python "${PYTHON:-python3}" "$VENV"
  VIRTUAL_ENV="$VENV" uv pip install --quiet -r requirements.lock
  VIRTUAL_ENV="$VENV" uv pip install --quiet --no-deps -e shared \
    -e services/trigger-detector -e services/executor -e services/approvals -e services/timeline-projector
  # bytecode up front: uv installs none, and where PYTHONDONTWRITEBYTECODE is set every service
  # process compiled its ~1,000 modules at each start (6.5 s -> 2.5 s to import two services, measured)
  log "compiling Python bytecode"
  "$PY" -m compileall -q -j 0 "$VENV/lib" shared/src services/*/src >/dev/null \
    || log "bytecode compilation incomplete; modules compile when imported"
  echo "$inputs" >"$stamp"
}

install_kafka() {
  if [[ -f "$KAFKA_LIBS/.complete" ]]; then return 0; fi
  command -v java >/dev/null || die "java (17+) is required for Kafka"
  command -v mvn >/dev/null || die "maven is required to fetch the Kafka jars"
  log "fetching Apache Kafka $KAFKA_VERSION jars with Maven"
  rm -rf "$KAFKA_LIBS" && mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f deploy/local/kafka/pom.xml dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >&2 || die "maven could not fetch Kafka"
  touch "$KAFKA_LIBS/.complete"
}

install_postgres() {
  if [[ -n "$PG_BIN" && -x "$PG_BIN/initdb" ]]; then return 0; fi
  log "PostgreSQL server binaries not found; installing the Debian package"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    die "PostgreSQL binaries missing and not root: install postgresql"
  fi
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
}

install_nginx() { # the front door of `make up` (Debian's nginx; nothing else of it is used)
  if [[ -x "$NGINX_BIN" ]]; then return 0; fi
  if [[ $(id -u) -ne 0 ]]; then
    log "nginx not found and not root: install nginx for the front door of 'make up'"
    return 0
  fi
  log "nginx not found; installing the Debian package (the front door)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null \
    || die "could not install nginx"
  NGINX_BIN="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
}

install_kustomize() { # offline rendering of deploy/k8s in the tests; Go's module tooling, pinned version
  if [[ -x "$KUSTOMIZE" && "$("$KUSTOMIZE" version 2>/dev/null)" == "$KUSTOMIZE_VERSION" ]]; then return 0; fi
  if ! command -v go >/dev/null 2>&1; then
    log "go not found: kustomize $KUSTOMIZE_VERSION not installed (tests/test_deploy.py needs it)"
    return 0
  fi
  log "building kustomize $KUSTOMIZE_VERSION (go install into .local/bin)"
  GOBIN="$ROOT/.local/bin" GOFLAGS=-buildvcs=false \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2 || die "could not build kustomize"
}

cmd_install() { install_python; install_kafka; install_postgres; install_nginx; install_kustomize; }

# ---------------------------------------------------------------- processes
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() { # host port seconds
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
}

# ---------------------------------------------------------------- kafka
kafka_up() {
  local dir="$STACK_DIR/kafka" pidf="$STACK_DIR/pids/kafka.pid"
  mkdir -p "$dir/data" "$STACK_DIR/pids" "$STACK_DIR/logs"
  if pid_alive "$pidf"; then log "kafka already running (pid $(cat "$pidf"))"; return 0; fi
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=$PARTITIONS
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  local cp="$KAFKA_LIBS/*"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    log "formatting Kafka storage (KRaft, standalone controller)"
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.yaml" -cp "$cp" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" --standalone >&2
  fi
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx${KAFKA_HEAP:-768m} -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.yaml" \
    -cp "$cp" kafka.Kafka "$dir/server.properties" >"$STACK_DIR/logs/kafka.log" 2>&1 &
  echo $! >"$pidf"
  wait_port 127.0.0.1 "$KAFKA_PORT" 90 || { tail -n 30 "$STACK_DIR/logs/kafka.log" >&2; die "kafka did not open its port"; }
}

# ---------------------------------------------------------------- postgres
as_pg() { # run a command as the unprivileged postgres OS user when we are root
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_datadir() {
  local want="$STACK_DIR/pgdata"
  if [[ $(id -u) -eq 0 ]]; then
    mkdir -p "$want" && chown postgres: "$want"
    # the repository may live under a directory the postgres user cannot enter (mktemp -d)
    if ! runuser -u postgres -- test -w "$want" 2>/dev/null; then
      want="/var/tmp/automation-pg-$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-12)"
      mkdir -p "$want" && chown postgres: "$want" && chmod 700 "$want"
    fi
  else
    mkdir -p "$want"
  fi
  printf '%s' "$want"
}

pg_up() {
  local data pidf="$STACK_DIR/pids/postgres.pid"
  mkdir -p "$STACK_DIR/pids" "$STACK_DIR/logs"
  data="$(pg_datadir)"
  echo "$data" >"$STACK_DIR/pgdata.path"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "initialising PostgreSQL cluster in $data"
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "postgres already running"
  else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    # the log lives beside the data directory: the postgres user may not reach $STACK_DIR
    local logf="$data.log"
    touch "$logf" && { [[ $(id -u) -ne 0 ]] || chown postgres: "$logf"; }
    ln -sf "$logf" "$STACK_DIR/logs/postgres.log"
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logf" -w -t 60 \
      -o "-h 127.0.0.1 -p $PG_PORT -k $data -c max_connections=200 -c fsync=${PG_FSYNC:-on}" start >/dev/null
  fi
  head -n 1 "$data/postmaster.pid" >"$pidf"
  as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q <<SQL
SELECT 'CREATE ROLE $PG_USER LOGIN PASSWORD ''$PG_USER''' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER')\gexec
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
SQL
}

pg_down() {
  [[ -f "$STACK_DIR/pgdata.path" ]] || return 0
  local data; data="$(cat "$STACK_DIR/pgdata.path")"
  if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
  rm -f "$STACK_DIR/pids/postgres.pid"
}

pg_kill() { # crash-stop (no checkpoint, connections cut): what resilience tests simulate an outage with
  [[ -f "$STACK_DIR/pgdata.path" ]] || die "no postgres data directory recorded for stack $STACK_NAME"
  local data; data="$(cat "$STACK_DIR/pgdata.path")"
  log "crash-stopping PostgreSQL (pg_ctl stop -m immediate)"
  as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null
}

# ---------------------------------------------------------------- topics + migrations
provision() {
  log "creating topics (partitions=$PARTITIONS, namespace='${AUTOMATION_NAMESPACE}')"
  "$PY" -m automation_shared.cli create-topics
  for entry in "${SERVICES[@]}"; do
    IFS=: read -r _name pkg _off <<<"$entry"
    "$PY" -m automation_shared.cli migrate "$pkg"
  done
}

# ---------------------------------------------------------------- services
service_port() { echo $((SERVICE_PORT_BASE + $1)); }

services_up() {
  mkdir -p "$STACK_DIR/pids" "$STACK_DIR/logs"
  for entry in "${SERVICES[@]}"; do
    IFS=: read -r name pkg off <<<"$entry"
    local pidf="$STACK_DIR/pids/$name.pid" port; port="$(service_port "$off")"
    if pid_alive "$pidf"; then log "$name already running (pid $(cat "$pidf"))"; continue; fi
    log "starting $name on 127.0.0.1:$port"
    AUTOMATION_SERVICE_NAME="$name" nohup "$PY" -m uvicorn --factory "$pkg.main:create_app" \
      --host 127.0.0.1 --port "$port" --no-access-log >>"$STACK_DIR/logs/$name.log" 2>&1 &
    echo $! >"$pidf"
  done
  local sink_pidf="$STACK_DIR/pids/webhook-sink.pid"
  if ! pid_alive "$sink_pidf"; then
    SINK_PORT="$(service_port 9)" nohup "$PY" "$ROOT/deploy/local/webhook_sink.py" \
      >>"$STACK_DIR/logs/webhook-sink.log" 2>&1 &
    echo $! >"$sink_pidf"
  fi
  for entry in "${SERVICES[@]}"; do
    IFS=: read -r name pkg off <<<"$entry"
    local url; url="http://127.0.0.1:$(service_port "$off")/health/ready"
    local deadline=$((SECONDS + 90))
    until curl -fsS "$url" >/dev/null 2>&1; do
      pid_alive "$STACK_DIR/pids/$name.pid" || { tail -n 40 "$STACK_DIR/logs/$name.log" >&2; die "$name exited"; }
      ((SECONDS < deadline)) || { tail -n 40 "$STACK_DIR/logs/$name.log" >&2; die "$name not ready"; }
      sleep 0.5
    done
    log "$name ready: $url"
  done
}

# ---------------------------------------------------------------- front door
frontdoor_up() { # nginx on SERVICE_PORT_BASE, the Ingress's routes (deploy/local/frontdoor.py)
  local dir="$STACK_DIR/frontdoor" pidf="$STACK_DIR/pids/frontdoor.pid" port
  port="$(service_port 0)"
  mkdir -p "$dir/tmp" "$STACK_DIR/pids" "$STACK_DIR/logs"
  if pid_alive "$pidf"; then log "front door already running (pid $(cat "$pidf"))"; return 0; fi
  [[ -x "$NGINX_BIN" ]] || die "nginx is required for the front door: deploy/local/stack.sh install (as root) installs it"
  local upstreams=() user=()
  for entry in "${SERVICES[@]}"; do
    IFS=: read -r name _pkg off <<<"$entry"
    upstreams+=("$name=127.0.0.1:$(service_port "$off")")
  done
  # nginx started as root runs its workers as this user
  if [[ $(id -u) -eq 0 ]]; then user=(--user "nobody $(id -gn nobody)"); fi
  "$PY" deploy/local/frontdoor.py local --listen "127.0.0.1:$port" --dir "$dir" "${user[@]}" "${upstreams[@]}" \
    >"$dir/nginx.conf"
  "$NGINX_BIN" -t -q -c "$dir/nginx.conf" -e "$dir/error.log" || die "nginx refused $dir/nginx.conf"
  ln -sf "$dir/error.log" "$STACK_DIR/logs/frontdoor-error.log"
  log "starting the front door (nginx) on 127.0.0.1:$port"
  # in the foreground (no daemon): the pid we record is nginx's master, which `down` stops
  nohup "$NGINX_BIN" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' \
    >>"$STACK_DIR/logs/frontdoor.log" 2>&1 &
  echo $! >"$pidf"
  wait_port 127.0.0.1 "$port" 15 || { tail -n 20 "$dir/error.log" >&2; die "the front door did not open port $port"; }
  log "front door ready: http://127.0.0.1:$port/api/v1/… (the Ingress's routes)"
}

stop_pidfile() { # name pidfile
  local pidf="$2"
  [[ -f "$pidf" ]] || return 0
  local pid; pid="$(cat "$pidf")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
}

cmd_down() {
  stop_pidfile frontdoor "$STACK_DIR/pids/frontdoor.pid"
  for entry in "${SERVICES[@]}"; do
    IFS=: read -r name _pkg _off <<<"$entry"
    stop_pidfile "$name" "$STACK_DIR/pids/$name.pid"
  done
  stop_pidfile webhook-sink "$STACK_DIR/pids/webhook-sink.pid"
  stop_pidfile kafka "$STACK_DIR/pids/kafka.pid"
  pg_down
}

cmd_status() {
  printf '%-20s %-8s %s\n' COMPONENT PID STATE
  for comp in kafka postgres trigger-detector executor approvals timeline-projector webhook-sink frontdoor; do
    local pidf="$STACK_DIR/pids/$comp.pid" state="stopped" pid="-"
    if pid_alive "$pidf"; then pid="$(cat "$pidf")"; state="running"; fi
    printf '%-20s %-8s %s\n' "$comp" "$pid" "$state"
  done
}

cmd_env() {
  echo "export KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
  echo "export AUTOMATION_DATABASE_URL=$AUTOMATION_DATABASE_URL"
  echo "export AUTOMATION_NAMESPACE=$AUTOMATION_NAMESPACE"
  echo "export AUTOMATION_EGRESS_ALLOW=$AUTOMATION_EGRESS_ALLOW"
  echo "export AUTOMATION_DEV_MODE=$AUTOMATION_DEV_MODE"
}

case "${1:-}" in
  install) cmd_install ;;
  kafka-up) kafka_up ;;
  pg-up) pg_up ;;
  pg-kill) pg_kill ;;
  infra-up) cmd_install; pg_up; kafka_up; provision ;;
  services-up) services_up ;;
  frontdoor-up) frontdoor_up ;;
  up) cmd_install; pg_up; kafka_up; provision; services_up; frontdoor_up ;;
  down) cmd_down ;;
  wipe) cmd_down
    if [[ -f "$STACK_DIR/pgdata.path" ]]; then data="$(cat "$STACK_DIR/pgdata.path")"; rm -rf "$data" "$data.log"; fi
    rm -rf "$STACK_DIR" ;;
  demo) SERVICE_PORT_BASE="$SERVICE_PORT_BASE" "$PY" "$ROOT/deploy/local/demo.py" ;;
  status) cmd_status ;;
  logs) tail -n "${LINES_:-50}" -F "$STACK_DIR"/logs/*.log ;;
  env) cmd_env ;;
  *) echo "usage: $0 <install|infra-up|services-up|frontdoor-up|up|down|wipe|demo|status|logs|env>" >&2; exit 2 ;;
esac
