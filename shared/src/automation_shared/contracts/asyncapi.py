"""AsyncAPI 3.0 description of every topic and event type, generated from the contracts.

Served by every service at ``/asyncapi.json``. Generated from the registry rather than from
FastStream handler signatures: our subscribers take raw bytes on purpose (so no framework
decoding can fail before the dead-letter policy runs), which would leave payloads undocumented.
"""

from __future__ import annotations

from typing import Any

from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.registry import EVENT_TYPES

# logical topic -> wire types it carries (domain.events carries upstream-defined types)
TOPIC_TYPES: dict[str, tuple[str, ...]] = {
    topics.DOMAIN_EVENTS: (),
    topics.AUTOMATION_RULES: ("automation.snapshot",),
    topics.TRIGGER_DETECTED: ("trigger.detected",),
    topics.TRIGGER_SKIPPED: ("trigger.skipped",),
    topics.RUN_STARTED: ("run.started",),
    topics.ACTION_COMPLETED: ("action.completed",),
    topics.ACTION_SCHEDULED: ("action.scheduled",),
    topics.RUN_FINISHED: ("run.finished",),
    topics.APPROVAL_REQUESTED: ("approval.requested",),
    topics.APPROVAL_DECIDED: ("approval.decided",),
    topics.AUTOMATION_COMMANDS: ("command.issued",),
}


def _message_name(wire: str) -> str:
    return wire.replace(".", "_")


def asyncapi_document(namespace: str = "") -> dict[str, Any]:
    """The AsyncAPI document of the platform's topics in ``namespace``."""
    envelope_schema = Envelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(envelope_schema.pop("$defs", {}))
    schemas["Envelope"] = envelope_schema
    messages: dict[str, Any] = {
        "domain_event": {
            "name": "domain event",
            "contentType": "application/cloudevents+json",
            "summary": "Any upstream domain event; `data` is defined by its producer.",
            "payload": {"$ref": "#/components/schemas/Envelope"},
        }
    }
    for wire, (version, model) in EVENT_TYPES.items():
        data_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(data_schema.pop("$defs", {}))
        schemas[model.__name__] = data_schema
        messages[_message_name(wire)] = {
            "name": wire,
            "contentType": "application/cloudevents+json",
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else wire,
            "headers": {"type": "object", "properties": {"content-type": {"const": "application/cloudevents+json"}}},
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {"type": "object", "properties": {
                        "type": {"const": wire},
                        "dataschemaversion": {"const": version},
                        "data": {"$ref": f"#/components/schemas/{model.__name__}"},
                    }},
                ]
            },
        }
    channels: dict[str, Any] = {}
    for spec in topics.all_topic_specs():
        base = spec.name.removesuffix(topics.DLQ_SUFFIX)
        if spec.name.endswith(topics.DLQ_SUFFIX):
            carried = [_message_name("dead_letter.recorded")]
        else:
            carried = [_message_name(t) for t in TOPIC_TYPES[base]] or ["domain_event"]
        channels[spec.name.replace(".", "_")] = {
            "address": topics.qualified(spec.name, namespace),
            "description": ("compacted" if spec.compacted else "retained forever") + f"; logical topic `{spec.name}`",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in carried},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Automation platform events", "version": "1",
                 "description": "CloudEvents 1.0 envelopes on Kafka (see the README, section Events)."},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }
