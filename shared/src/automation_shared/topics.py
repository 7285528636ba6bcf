"""Every Kafka topic name of the platform, in one place (docs/architecture.md, "Topics").

Handlers never spell a topic as a string literal: they use these constants and
``qualified(name, namespace)``, which prefixes a namespace so parallel stacks do not collide.
"""

from __future__ import annotations

from dataclasses import dataclass

DOMAIN_EVENTS = "domain.events"
AUTOMATION_RULES = "automation.rules"
TRIGGER_DETECTED = "trigger.detected"
TRIGGER_SKIPPED = "trigger.skipped"
RUN_STARTED = "run.started"
ACTION_COMPLETED = "action.completed"
ACTION_SCHEDULED = "action.scheduled"
RUN_FINISHED = "run.finished"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_DECIDED = "approval.decided"
AUTOMATION_COMMANDS = "automation.commands"

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is created: its base name and whether it is compacted."""

    name: str
    compacted: bool = False

    def configs(self) -> dict[str, str]:
        """Topic-level configs: event logs keep data forever; the rules topic is compacted."""
        if self.compacted:
            return {"cleanup.policy": "compact", "retention.ms": "-1"}
        return {"cleanup.policy": "delete", "retention.ms": "-1"}


EVENT_LOG_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(DOMAIN_EVENTS),
    TopicSpec(AUTOMATION_RULES, compacted=True),
    TopicSpec(TRIGGER_DETECTED),
    TopicSpec(TRIGGER_SKIPPED),
    TopicSpec(RUN_STARTED),
    TopicSpec(ACTION_COMPLETED),
    TopicSpec(ACTION_SCHEDULED),
    TopicSpec(RUN_FINISHED),
    TopicSpec(APPROVAL_REQUESTED),
    TopicSpec(APPROVAL_DECIDED),
    TopicSpec(AUTOMATION_COMMANDS),
)


def dlq(name: str) -> str:
    """The dead-letter topic of ``name`` (``<topic>.dlq``)."""
    return name + DLQ_SUFFIX


def all_topic_specs() -> tuple[TopicSpec, ...]:
    """Every topic the platform creates: the event logs and one dead-letter topic each."""
    return EVENT_LOG_TOPICS + tuple(TopicSpec(dlq(spec.name)) for spec in EVENT_LOG_TOPICS)


def qualified(name: str, namespace: str) -> str:
    """The physical topic name of ``name`` within ``namespace`` (empty namespace: unchanged)."""
    return f"{namespace}.{name}" if namespace else name
