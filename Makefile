# Local stack and tests. `make up` / `make test` work from a fresh clone (see README.md).
SHELL := /bin/bash
STACK := deploy/local/stack.sh
PY := .venv/bin/python
TENANT ?= demo
ROLE ?= admin

.PHONY: up down status logs token test fuzz test-stack-up test-stack-down lint bench install lock

install:            ## install Python deps (.venv), fetch Kafka jars, check Postgres binaries
	@$(STACK) install

up:                 ## start Kafka, Postgres, the four services, load demo rules and traffic
	@$(STACK) up
	@$(STACK) demo

down:               ## stop exactly what `make up` started
	@$(STACK) down

status:             ## what is running
	@$(STACK) status

logs:               ## follow every log of the stack
	@$(STACK) logs

token:              ## print a JWT: make token TENANT=<id> ROLE=<role>
	@$(STACK) install >/dev/null
	@$(PY) -m automation_shared.cli token --tenant "$(TENANT)" --role "$(ROLE)"

test:               ## install, start a separate test stack, run the whole suite, stop it
	@deploy/local/test.sh

fuzz:               ## the API contract fuzz suite with 1,000 examples per operation, on the test stack
	@FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} FUZZ_PROFILES=$${FUZZ_PROFILES:-fuzz-a/admin,fuzz-b/viewer} \
		deploy/local/test.sh tests/test_api_fuzz.py -p no:cacheprovider -s

bench:              ## install, start a separate bench stack, measure throughput/latency/RSS, write bench/results/latest.json
	@deploy/local/bench.sh

lint:               ## ruff and mypy (strict on shared/ and every domain/)
	@$(STACK) install >/dev/null
	@.venv/bin/ruff check shared services tests deploy
	@.venv/bin/mypy

lock:               ## re-resolve dependencies and rewrite requirements.lock
	@uv lock -q && uv export --all-packages --all-groups --no-hashes --no-emit-workspace --no-header \
		--format requirements-txt -o requirements.lock -q
