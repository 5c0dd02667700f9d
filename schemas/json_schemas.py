"""The JSON Schema of every payload, derived from the pydantic models so the published contract cannot drift.

Each schema's ``$id`` is the event type's ``dataschema`` URN (the value of the ``ce_dataschema`` header), so a reader
can pick the schema of a record from its headers alone.
"""

from __future__ import annotations

from typing import Any

from schemas.asyncapi import build_dead_letter_headers
from schemas.envelope import DEAD_LETTER_SCHEMA, DEAD_LETTER_TYPE, EVENT_TYPES, EventType

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_file_name(event_type: EventType) -> str:
    return f"{event_type.name}.v{event_type.version}.json"


def payload_json_schema(event_type: EventType) -> dict[str, Any]:
    schema = event_type.model.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": event_type.dataschema,
        "x-cloudevents-type": event_type.ce_type,
        **schema,
    }


def dead_letter_json_schema() -> dict[str, Any]:
    """A dead letter's value is the refused record's bytes, whatever they are; what it says is in its headers."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": DEAD_LETTER_SCHEMA,
        "x-cloudevents-type": DEAD_LETTER_TYPE,
        "title": "DeadLetter",
        "description": "The value is the original record's value, byte for byte (any content). The reason and the "
        "origin are CloudEvents extension headers, described by x-kafka-headers.",
        "x-kafka-headers": build_dead_letter_headers(),
    }


def all_payload_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, one per event type and one for dead letters, in a stable order."""
    schemas = {
        schema_file_name(event_type): payload_json_schema(event_type)
        for event_type in sorted(EVENT_TYPES.values(), key=lambda e: e.name)
    }
    schemas["deadletter.v1.json"] = dead_letter_json_schema()
    return schemas
