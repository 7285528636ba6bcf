"""Operator commands: ``create-topics``, ``migrate <service package>``, ``token``.

Run as ``python -m automation_shared.cli <command>``; settings come from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from automation_shared.auth import issue_token
from automation_shared.db import migrate
from automation_shared.kafka_security import kafka_client_options
from automation_shared.settings import Settings
from automation_shared.topics import all_topic_specs


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client (not started) that connects as the services do (TLS, SASL)."""
    return AIOKafkaAdminClient(**kafka_client_options(settings))


async def create_topics(settings: Settings) -> list[str]:
    """Create every platform topic that does not exist yet; returns the names created."""
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(settings.topic(spec.name), settings.partitions, 1, topic_configs=spec.configs())
            for spec in all_topic_specs()
            if settings.topic(spec.name) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process created them between list and create
        return [topic.name for topic in wanted]
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="automation")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("create-topics", help="create every platform topic and its dead-letter topic (idempotent)")
    migrate_cmd = sub.add_parser("migrate", help="upgrade a service schema to head")
    migrate_cmd.add_argument("package", help="service package, e.g. trigger_detector")
    token_cmd = sub.add_parser("token", help="print a JWT signed with the configured key")
    token_cmd.add_argument("--tenant", required=True)
    token_cmd.add_argument("--role", action="append", default=[])
    token_cmd.add_argument("--user", default="dev-user")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "create-topics":
        created = asyncio.run(create_topics(settings))
        print(f"topics created: {len(created)}", file=sys.stderr)
    elif args.command == "migrate":
        migrate(settings, args.package)
        print(f"migrated {args.package}", file=sys.stderr)
    elif args.command == "token":
        print(issue_token(settings, args.tenant, args.role or ["admin"], user_id=args.user))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
