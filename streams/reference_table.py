"""Live changes of the competence table: rows from the compacted reference topic, applied to the worker's reference.

Every worker holds the topic as an in-memory table (all partitions, from the beginning, then live), so a row
published for one commune (a commune moving from police to gendarmerie zone) changes where the next report of that
commune goes, in every running worker, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.reference import CompetenceRow
from schemas.validation import describe_validation_error
from signalements.kafka_clients import bootstrap_list
from signalements.kafka_security import Role, kafka_python_security
from signalements.settings import Settings
from streams.jurisdiction import Competence, JurisdictionReference

log = logging.getLogger(__name__)


def apply_competence_record(reference: JurisdictionReference, key: bytes | None, value: bytes | None) -> str:
    """Apply one record of the reference topic; returns the outcome: applied, unchanged or invalid."""
    if value is None:
        # A tombstone would make a commune unroutable: the worker keeps the row it has and says so.
        log.warning("reference topic: tombstone for %r ignored, the commune keeps its unit", key)
        return "invalid"
    try:
        row = CompetenceRow.model_validate_json(value)
        competence = Competence.from_row(row.model_dump())
    except (ValidationError, ValueError) as error:
        detail = describe_validation_error(error) if isinstance(error, ValidationError) else str(error)
        log.warning("reference topic: row %r refused: %s", key, detail)
        return "invalid"
    if key is not None and key.decode(errors="replace") != competence.commune_code:
        log.warning("reference topic: key %r differs from code_commune %s", key, competence.commune_code)
        return "invalid"
    if reference.competence.rows.get(competence.commune_code) == competence:
        return "unchanged"
    reference.set_competence(competence)
    log.info("reference topic: commune %s now %s (%s)", competence.commune_code, competence.unit_id,
             competence.force.value)
    return "applied"


class ReferenceFollower:
    """Every worker's copy of the reference topic: all partitions, from the beginning, then live.

    It reads without a consumer group, so every worker sees every row (a Faust global table would be the natural
    fit, but faust-streaming 0.15.3 stops a worker's streams when a row arrives during the table's recovery; see
    docs/jurisdiction.md). ``caught_up`` is set once the rows present at start-up are applied: the enrich stage waits
    for it, so no report is resolved with a reference older than the topic.
    """

    def __init__(self, settings: Settings, topic: str, reference: JurisdictionReference,
                 on_outcome: Callable[[str], None]) -> None:
        self.settings = settings
        self.topic = topic
        self.reference = reference
        self.on_outcome = on_outcome
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        # Subscribed without a group: aiokafka assigns this consumer every partition of the topic.
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=bootstrap_list(self.settings.bootstrap_servers), group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest", client_id="signalements-reference-follower",
            **kafka_python_security(self.settings, Role.WORKER),
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            while True:
                if not self.caught_up.is_set() and await self._reached(consumer, end):
                    log.info("reference topic: %d rows held", len(self.reference.competence.rows))
                    self.caught_up.set()
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.on_outcome(apply_competence_record(self.reference, record.key, record.value))
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The topic's partitions; the topic is created before the worker starts, so its absence is an error."""
        for _ in range(60):
            assigned = consumer.assignment()
            if assigned:
                return sorted(assigned)
            await asyncio.sleep(0.5)
        # Retried by the worker (keep_running_async): the broker may be away, or the topic not created yet.
        raise RuntimeError(f"reference topic {self.topic} has no partition to read; does it exist? "
                           "(`signalements topics` creates it)")

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
        for partition, offset in end.items():
            if await consumer.position(partition) < offset:
                return False
        return True
