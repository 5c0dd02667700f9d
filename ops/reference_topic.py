"""Publish the competence table to its compacted topic, from which every Faust worker holds it as a table."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from kafka import TopicPartition

from schemas.envelope import REFERENCE_COMPETENCE, encode
from schemas.identifiers import REFERENCE_ROW_ID_NAMESPACE, stable_id
from schemas.reference import CompetenceRow
from schemas.topics import Topics
from signalements.kafka_clients import new_consumer, new_producer
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics
from streams.jurisdiction import Competence

SOURCE = "/signalements/reference"


def competence_event_id(row: CompetenceRow) -> str:
    """The same row always has the same event id, so republishing an unchanged table is recognisable."""
    digest = hashlib.sha256(row.model_dump_json().encode()).hexdigest()
    return stable_id(REFERENCE_ROW_ID_NAMESPACE, row.code_commune, digest)


def publish_competence(settings: Settings, rows: Iterable[Competence]) -> int:
    """Send each row keyed by its code INSEE (acks=all); returns how many. Kafka unreachable raises to the caller."""
    topic = Topics(settings.topic_namespace).reference_competence
    ensure_topics(settings, Role.ADMIN, {topic: pipeline_topics(settings)[topic]})
    producer = new_producer(settings, Role.ADMIN, "signalements-reference", linger_ms=20)
    try:
        futures = []
        for competence in rows:
            row = CompetenceRow.model_validate(competence.as_row())
            message = encode(
                REFERENCE_COMPETENCE, row, event_id=competence_event_id(row), source=SOURCE, key=row.code_commune,
                subject=row.code_commune,
            )
            futures.append(producer.send(
                topic, key=row.code_commune.encode(), value=message.value,
                headers=list(message.headers.items()),
            ))
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # a record Kafka refused is an error, never a silent gap in the reference
        return len(futures)
    finally:
        producer.close()


def published_record_count(settings: Settings) -> int:
    """Records on the reference topic (before compaction), to tell an empty topic from a published one."""
    topic = Topics(settings.topic_namespace).reference_competence
    consumer = new_consumer(settings, Role.ADMIN, "signalements-reference")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        if not partitions:
            return 0
        beginning, end = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        return sum(end[tp] - beginning[tp] for tp in partitions)
    finally:
        consumer.close()


def publish_reference_if_empty(settings: Settings, rows: Iterable[Competence]) -> int:
    """First start of a cluster: publish the table; afterwards the topic is the reference and is left alone."""
    if published_record_count(settings) > 0:
        return 0
    return publish_competence(settings, rows)
