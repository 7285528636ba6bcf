"""Executor service: runs action chains with retries and idempotent side effects."""

SCHEMA = "executor"
