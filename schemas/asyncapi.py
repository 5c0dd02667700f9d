"""The AsyncAPI 3 document of the event contract: every topic, its key, its CloudEvents headers and its payload.

Built from the same models and event types the code uses (``schemas.envelope``), so the published document says
what the pipeline does; ``signalements contract`` writes it to ``schemas/contract/asyncapi.json`` and a test
checks it with the official AsyncAPI parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.envelope import (
    BRIGADE_NUMERIQUE_SUBMISSION,
    CASE_HANDLED,
    CASE_LINKED,
    CASE_OPENED,
    CASE_UPDATED,
    DEAD_LETTER_SCHEMA,
    DEAD_LETTER_TYPE,
    EVENT_TYPES,
    JSON,
    MONCOMMISSARIAT_SUBMISSION,
    REDRIVABLE_TYPES,
    REDRIVEN_FROM_HEADER,
    REFERENCE_COMPETENCE,
    REPORT_ENRICHED,
    REPORT_NORMALIZED,
    REPORT_UNROUTED,
    SCHEMA_VERSION,
    EventType,
)
from schemas.reasons import DEAD_LETTER_REASONS
from schemas.topics import UNIT_ID_PATTERN

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DEAD_LETTER_MESSAGE = "deadLetter"


@dataclass(frozen=True)
class TopicContract:
    """One topic of the contract: its channel id in the document, its address, key and event types."""

    channel_id: str
    address: str
    key: str
    event_types: tuple[EventType, ...]
    description: str
    action: str  # what an integrated system does on it: "send" (it may produce) or "receive" (it reads)


TOPICS: tuple[TopicContract, ...] = (
    TopicContract(
        "rawMoncommissariat", "reports.raw.moncommissariat", "the submission id",
        (MONCOMMISSARIAT_SUBMISSION,), "Submissions of the police portal, as accepted by the intake.", "send",
    ),
    TopicContract(
        "rawBrigadeNumerique", "reports.raw.brigade-numerique", "the conversation id",
        (BRIGADE_NUMERIQUE_SUBMISSION,), "Submissions of Ma brigade numérique, as accepted by the intake.", "send",
    ),
    TopicContract(
        "normalized", "reports.normalized", "the report id", (REPORT_NORMALIZED,),
        "Internal: canonical reports of both channels.", "receive",
    ),
    TopicContract(
        "enriched", "reports.enriched", "the deduplication area: h3:<coarse H3 cell> of the position (or of the "
        "commune's, without one), or networks", (REPORT_ENRICHED,),
        "Internal: canonical reports with their jurisdiction, keyed by deduplication area so every report that may "
        "be a duplicate of another, whatever its unit, reaches the same partition.", "receive",
    ),
    TopicContract(
        "unitQueue", "unit.{unitId}", "the case id (a case's events stay in order)",
        (CASE_OPENED, CASE_UPDATED, CASE_HANDLED, CASE_LINKED),
        "One queue per competent unit: the cases it must handle, and case.linked for a report of its territory "
        "merged into another unit's case. Only the worker writes it; a transferred case's "
        "events carry the header signalements-transferred-from (the unit it came from).", "receive",
    ),
    TopicContract(
        "unitActions", "actions.{unitId}", "the case id",
        (CASE_HANDLED, CASE_OPENED, CASE_UPDATED),
        "What one unit's operators do with its cases, written by that unit's principal only: case.handled of its "
        "own cases; for a transfer, the case.opened and case.updated addressed to the receiving unit. The worker "
        "puts each on the queue it concerns; anything else is dead-lettered (wrong_unit).", "send",
    ),
    TopicContract(
        "unrouted", "reports.unrouted", "the report id", (REPORT_UNROUTED,),
        "Valid reports for which no competent unit was found.", "receive",
    ),
    TopicContract(
        "referenceCompetence", "reference.competence", "the code INSEE (compacted: the latest row per commune wins)",
        (REFERENCE_COMPETENCE,),
        "The competence table, one row per commune in the official open-data columns; workers follow it live.",
        "send",
    ),
)
DEAD_LETTER_TOPIC = TopicContract(
    "deadLetters", "reports.dlq", "the original record's key", (),
    "Records a stage could not process: original key and value byte for byte, the reason in the headers.", "receive",
)


def message_id(event_type: EventType) -> str:
    """``case.opened`` → ``caseOpened``: a component name AsyncAPI accepts."""
    words = event_type.name.replace("-", ".").split(".")
    return words[0] + "".join(word.capitalize() for word in words[1:])


def _header(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def cloudevents_headers(ce_type: str, dataschema: str, extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    properties = {
        "ce_specversion": _header("CloudEvents version", const="1.0"),
        "ce_id": _header("event id, derived from what the event is about: a record processed twice keeps its id"),
        "ce_source": _header("URI reference of the producing service"),
        "ce_type": _header("event type", const=ce_type),
        "ce_time": _header("RFC 3339 time of the event; on a raw record, when the intake accepted it",
                           format="date-time"),
        "ce_dataschema": _header("versioned payload schema: a reader refuses a version it does not know",
                                 const=dataschema),
        "ce_subject": _header("optional subject of the event"),
        "ce_partitionkey": _header("the record key (CloudEvents partitioning extension)"),
        "content-type": _header("content type of the record value", const=JSON),
        **(extensions or {}),
    }
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
        "properties": properties,
    }


def _kafka_key(description: str) -> dict[str, Any]:
    return {"kafka": {"key": {"type": "string", "description": description}, "bindingVersion": KAFKA_BINDING_VERSION}}


def _messages(payload_refs: dict[str, str]) -> dict[str, Any]:
    # Each event type travels on one topic: its key is that topic's key.
    keys = {event_type.name: topic.key for topic in TOPICS for event_type in topic.event_types}
    messages: dict[str, Any] = {}
    for event_type in EVENT_TYPES.values():
        messages[message_id(event_type)] = {
            "name": event_type.ce_type,
            "title": event_type.model.__name__,
            "summary": (event_type.model.__doc__ or "").strip().splitlines()[0] if event_type.model.__doc__ else "",
            "contentType": JSON,
            "headers": cloudevents_headers(
                event_type.ce_type, event_type.dataschema,
                {REDRIVEN_FROM_HEADER: _header(
                    "only on a record an operator sent back from reports.dlq (`signalements dead-letters redrive`): "
                    "the dead letter's <topic>:<partition>:<offset>"
                )} if event_type in REDRIVABLE_TYPES else None,
            ),
            "payload": {"$ref": payload_refs[event_type.model.__name__]},
            "bindings": _kafka_key(keys[event_type.name]),
        }
    messages[DEAD_LETTER_MESSAGE] = {
        "name": DEAD_LETTER_TYPE,
        "title": "DeadLetter",
        "summary": "A record a stage could not process, kept byte for byte.",
        "contentType": "application/octet-stream",
        "headers": build_dead_letter_headers(),
        "payload": {"description": "the original record's value, unchanged (any bytes)"},
        "bindings": _kafka_key(DEAD_LETTER_TOPIC.key),
    }
    return messages


def build_dead_letter_headers() -> dict[str, Any]:
    """The headers of a dead letter: its CloudEvents envelope and the extensions saying why and from where."""
    return cloudevents_headers(
        DEAD_LETTER_TYPE,
        DEAD_LETTER_SCHEMA,
        {
            "ce_dlqstage": _header("stage that refused the record", enum=["normalize", "enrich", "route"]),
            "ce_dlqreasoncode": _header(
                "machine-readable reason",
                enum=[reason.value for reason in DEAD_LETTER_REASONS],
            ),
            "ce_dlqreason": _header("which field and why; never the payload's content"),
            "ce_dlqtopic": _header("topic of the original record"),
            "ce_dlqpartition": _header("partition of the original record"),
            "ce_dlqoffset": _header("offset of the original record"),
        },
    )


def _channel(topic: TopicContract, messages: list[str]) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": topic.address,
        "description": f"{topic.description} Key: {topic.key}. Every record is a CloudEvent in Kafka binary mode.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
    }
    if "{unitId}" in topic.address:
        channel["parameters"] = {
            "unitId": {
                "description": f"the competent unit: pn-<id_service> or gn-<id_service> ({UNIT_ID_PATTERN})",
                "examples": ["pn-75-pp", "gn-74-chamonix"],
            }
        }
    return channel


def _operation(topic: TopicContract, messages: list[str]) -> dict[str, Any]:
    return {
        "action": topic.action,
        "channel": {"$ref": f"#/channels/{topic.channel_id}"},
        "summary": f"{'Produce to' if topic.action == 'send' else 'Consume'} {topic.address}",
        "messages": [{"$ref": f"#/channels/{topic.channel_id}/messages/{name}"} for name in messages],
    }


def _component_schemas() -> tuple[dict[str, str], dict[str, Any]]:
    models = sorted({event_type.model for event_type in EVENT_TYPES.values()}, key=lambda m: m.__name__)
    refs, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    payload_refs = {model.__name__: refs[(model, "validation")]["$ref"] for model in models}
    return payload_refs, as_asyncapi_schema(definitions.get("$defs", {}))


def as_asyncapi_schema(schema: Any) -> Any:
    """Pydantic writes OpenAPI's discriminator object; the AsyncAPI Schema Object wants the property name alone."""
    if isinstance(schema, list):
        return [as_asyncapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: as_asyncapi_schema(value) for key, value in schema.items()}
    discriminator = converted.get("discriminator")
    if isinstance(discriminator, dict) and "propertyName" in discriminator:
        converted["discriminator"] = discriminator["propertyName"]
    return converted


def build_asyncapi(version: str) -> dict[str, Any]:
    payload_refs, component_schemas = _component_schemas()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in (*TOPICS, DEAD_LETTER_TOPIC):
        names = [message_id(event_type) for event_type in topic.event_types] or [DEAD_LETTER_MESSAGE]
        channels[topic.channel_id] = _channel(topic, names)
        operations[f"{topic.action}{topic.channel_id[0].upper()}{topic.channel_id[1:]}"] = _operation(topic, names)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Signalements de points de deal: event contract",
            "version": f"{version}+schema.{SCHEMA_VERSION}",
            "description": (
                "Topics, keys and payloads of the reporting pipeline. Every record is a CloudEvents 1.0 event in "
                "the Kafka binary content mode: attributes in ce_* headers, the JSON payload alone as the value. "
                "Topic names take the deployment's namespace prefix (empty in production)."
            ),
        },
        "defaultContentType": JSON,
        "servers": {
            "production": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "the ministry's Kafka cluster (set KAFKA_BOOTSTRAP_SERVERS)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": _messages(payload_refs), "schemas": component_schemas},
    }
