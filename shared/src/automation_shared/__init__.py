"""Shared contracts and plumbing for the automation services.

Holds event contracts, topic names, settings and the Kafka/Postgres delivery plumbing
(inbox, outbox, dead letters). It holds no business logic: decisions live in the services.
"""
