#!/usr/bin/env bash
# `make bench`: install, start a benchmark stack on its own ports and directory (never the
# `make up` or `make test` one), measure the services (bench/run.py), write
# bench/results/latest.json, then stop the bench stack (also on failure or Ctrl-C).
#
# Postgres runs with fsync ON unless BENCH_PG_FSYNC=off: the figures should include the cost of
# durable commits. Sizes and caps: BENCH_EVENTS, BENCH_E2E_EVENTS, BENCH_BASELINE_RECORDS,
# BENCH_LATENCY_SECONDS, BENCH_LATENCY_RATE, BENCH_PROJECTION_RUNS, BENCH_PROJECTION_SKIPS,
# BENCH_PHASE_SECONDS, BENCH_MAX_SECONDS, BENCH_PHASES (see bench/run.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

export STACK_NAME=bench
export STACK_DIR="$ROOT/.local/bench"
export KAFKA_PORT="${BENCH_KAFKA_PORT:-29092}"
export KAFKA_CONTROLLER_PORT="${BENCH_KAFKA_CONTROLLER_PORT:-29093}"
export PG_PORT="${BENCH_PG_PORT:-25433}"
export SERVICE_PORT_BASE="${BENCH_SERVICE_PORT_BASE:-28000}"  # unused: bench/run.py picks free ports
export PG_FSYNC="${BENCH_PG_FSYNC:-on}"
export AUTOMATION_NAMESPACE=""  # bench/run.py gives every phase its own namespace
export AUTOMATION_DEV_MODE=true  # a local stack: the services accept the development JWT key
export AUTOMATION_EGRESS_ALLOW=127.0.0.1,localhost  # the benchmark receiver is local

stack() { deploy/local/stack.sh "$@"; }
trap 'stack down' EXIT

stack install
stack wipe  # every run starts from empty Kafka and Postgres
stack infra-up
eval "$(stack env)"
export BENCH_STACK_DIR="$STACK_DIR" BENCH_LOGS="$STACK_DIR/logs/services"
echo "[bench] Postgres fsync=$PG_FSYNC; logs in ${STACK_DIR#"$ROOT"/}/logs" >&2
.venv/bin/python -m bench.run
