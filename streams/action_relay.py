"""A unit's actions on its cases reach the queues they concern through the worker, never written there by the unit.

A unit's principal may write one topic: its own actions topic (``actions.<unit id>``, ops/access_control.py). It
cannot write another unit's queue, nor its own. The relay reads every actions topic, checks each action against
the topic it came on (which is what the broker authenticated), and publishes it unchanged (same bytes, same event
id) where it belongs:

- ``case.handled`` of the writing unit's own case: on that unit's queue (its consumer and the national statistics
  read it there);
- ``case.opened`` / ``case.updated`` for another unit: a transfer, on the receiving unit's queue, with the header
  ``signalements-transferred-from`` naming the unit it came from (set here, from the topic: the writer cannot
  forge it).

Anything else (unreadable, another unit's handling, an event type a unit does not send) goes to the dead-letter
topic with its original bytes and the reason. Each action is acknowledged on its destination before the action's
offset is committed (signalements/commit_after_store.py), so a crash repeats an action and never loses one; the
consumers apply it once, by event id.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError

from schemas.envelope import CASE_HANDLED, CASE_OPENED, CASE_UPDATED, EnvelopeError, decode
from schemas.reasons import ReasonCode
from schemas.topics import Topics
from signalements.commit_after_store import CommitAfterStore
from signalements.kafka_clients import close_quietly, new_consumer, new_producer
from signalements.kafka_link import KafkaLink
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, unit_topic_config
from streams.dead_letter import build_dead_letter

log = logging.getLogger(__name__)

TRANSFERRED_FROM_HEADER = "signalements-transferred-from"
SOURCE = "/signalements/worker/action-relay"
STAGE = "action-relay"
SEND_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Routed:
    """Where an action goes: a unit queue (with the headers to add) or the dead-letter topic (with why)."""

    topic: str
    extra_headers: tuple[tuple[str, bytes], ...] = ()
    refused: tuple[ReasonCode, str] | None = None


def route_action(topics: Topics, record: ConsumerRecord) -> Routed:
    """Where ``record``, read on an actions topic, belongs."""
    writer = topics.unit_of_actions(record.topic)
    if writer is None:
        return Routed(topics.dead_letter, refused=(ReasonCode.WRONG_UNIT, f"{record.topic} is no unit's actions topic"))
    try:
        decoded = decode(record.headers, record.key, record.value)
    except ValidationError as error:
        return Routed(topics.dead_letter, refused=(ReasonCode.INVALID_PAYLOAD, str(error)[:500]))
    except EnvelopeError as error:
        return Routed(topics.dead_letter, refused=(ReasonCode.INVALID_ENVELOPE, str(error)))
    unit_id = str(getattr(decoded.payload, "unit_id", ""))
    if decoded.event_type == CASE_HANDLED:
        if unit_id != writer:
            return Routed(topics.dead_letter, refused=(
                ReasonCode.WRONG_UNIT, f"unit {writer} handled a case of unit {unit_id!r}"))
        return Routed(topics.unit(writer))
    if decoded.event_type in (CASE_OPENED, CASE_UPDATED):
        if unit_id == writer:
            return Routed(topics.dead_letter, refused=(
                ReasonCode.WRONG_UNIT, f"unit {writer} cannot open or update its own cases (only the worker does)"))
        try:
            destination = topics.unit(unit_id)
        except ValueError as error:
            return Routed(topics.dead_letter, refused=(ReasonCode.WRONG_UNIT, str(error)))
        return Routed(destination, extra_headers=((TRANSFERRED_FROM_HEADER, writer.encode()),))
    return Routed(topics.dead_letter, refused=(
        ReasonCode.UNEXPECTED_EVENT_TYPE, f"{decoded.event_type.ce_type} is not a unit's action"))


class ActionRelay:
    """Reads every unit's actions topic (a pattern: new units' topics are picked up within seconds)."""

    def __init__(self, settings: Settings, link: KafkaLink | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_namespace)
        self.link = link or KafkaLink(None, "action relay")
        self._producer: KafkaProducer | None = None
        self._queues_ready: set[str] = set()

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="action-relay", daemon=True)
        thread.start()
        return thread

    def run(self, stop: threading.Event) -> None:
        try:
            CommitAfterStore("action relay", self._new_consumer, self.relay_batch, self.link).run(stop)
        finally:
            if self._producer is not None:
                close_quietly(self._producer.close, "the action relay's producer")

    def _new_consumer(self) -> KafkaConsumer:
        if self._producer is not None:  # a failed session: its producer may be cut off too
            close_quietly(self._producer.close, "the action relay's producer")
            self._producer = None
        consumer = new_consumer(
            self.settings, Role.WORKER, "signalements-action-relay",
            group_id=self.settings.consumer_group(f"{self.settings.worker_id}-actions"),
            auto_offset_reset="earliest", metadata_max_age_ms=5000,
        )
        consumer.subscribe(pattern=self.topics.actions_pattern)
        return consumer

    def _send_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = new_producer(self.settings, Role.WORKER, "signalements-action-relay",
                                          enable_idempotence=True)
        return self._producer

    def relay_batch(self, records: list[ConsumerRecord]) -> None:
        producer = self._send_producer()
        futures = []
        for record in records:
            routed = route_action(self.topics, record)
            if routed.refused is not None:
                code, reason = routed.refused
                log.warning("action refused from %s offset %d: %s", record.topic, record.offset, code.value)
                letter = build_dead_letter(
                    stage=STAGE, reason_code=code.value, reason=reason, topic=record.topic,
                    partition=record.partition, offset=record.offset, key=record.key, value=record.value,
                    headers=record.headers, source=SOURCE)
                futures.append(producer.send(routed.topic, key=letter.key, value=letter.value, headers=letter.headers))
                continue
            self._ensure_queue(routed.topic)
            headers = [(name, value) for name, value in record.headers if name != TRANSFERRED_FROM_HEADER]
            futures.append(producer.send(routed.topic, key=record.key, value=record.value,
                                         headers=headers + list(routed.extra_headers)))
        for future in futures:  # every action acknowledged before its offset is committed
            future.get(timeout=SEND_TIMEOUT_S)

    def _ensure_queue(self, topic: str) -> None:
        # A transfer to a unit the router has not yet written to: its queue may not exist yet.
        if topic not in self._queues_ready:
            ensure_topics(self.settings, Role.WORKER, {topic: unit_topic_config(self.settings)})
            self._queues_ready.add(topic)
