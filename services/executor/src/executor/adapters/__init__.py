"""Executor adapters: tables and repository, the webhook sender, clock and metrics."""
