#!/usr/bin/env bash
# `make test`: install, start a test stack on its own ports and directory (never the `make up`
# one), run the whole suite against real Kafka and real Postgres, then stop the test stack.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

export STACK_NAME=test
export KAFKA_PORT="${TEST_KAFKA_PORT:-19092}"
export KAFKA_CONTROLLER_PORT="${TEST_KAFKA_CONTROLLER_PORT:-19093}"
export PG_PORT="${TEST_PG_PORT:-15433}"
export SERVICE_PORT_BASE="${TEST_SERVICE_PORT_BASE:-18000}"
export PG_FSYNC=off  # test data is disposable
export AUTOMATION_DEV_MODE=true  # services (in-process and spawned) accept the development JWT key
export AUTOMATION_EGRESS_ALLOW=127.0.0.1,localhost  # tests allow-list their local receivers (the SSRF guard refuses loopback otherwise)
# Kafka and Postgres of the local stack, never testcontainers (the switch: conftest.py at the root)
export AUTOMATION_TEST_INFRA=stack

stack() { deploy/local/stack.sh "$@"; }
trap 'stack down' EXIT

stack install
echo "[test] lint: ruff + mypy"
.venv/bin/ruff check shared services tests deploy
.venv/bin/mypy
stack wipe  # every run starts from empty Kafka and Postgres
stack infra-up
eval "$(stack env)"
export SERVICE_PORT_BASE
.venv/bin/pytest "$@"
