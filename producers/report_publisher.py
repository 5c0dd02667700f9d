"""Durable writes to Kafka for the intake: a report is accepted only once the broker has acknowledged it.

A producer that failed is closed and replaced by a new one at the next write. kafka-python's idempotent producer does
not always recover by itself once it has expired records during an outage: every later send then timed out, for
minutes after the broker was back, until the intake was restarted. A new producer (a new producer id) costs one
connection; a stuck one costs every report.
"""

from __future__ import annotations

import logging
import threading

from cloudevents.core.bindings.kafka import KafkaMessage
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from signalements.kafka_clients import close_quietly, new_producer
from signalements.kafka_link import KafkaLink
from signalements.settings import Settings

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """Kafka could not take the record now; the caller should retry later."""


class ReportPublisher:
    def __init__(self, settings: Settings, role: str, timeout_s: float, link: KafkaLink | None = None,
                 client_id: str = "signalements-intake") -> None:
        self._settings = settings
        self._role = role
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._link = link or KafkaLink(None, client_id)
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    @property
    def link(self) -> KafkaLink:
        return self._link

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def _connected(self) -> KafkaProducer:
        # Connect lazily: the intake starts (and answers 503) while Kafka is down, then recovers by itself.
        with self._lock:
            if self._producer is None:
                if self._link.just_failed():
                    # Kafka failed a moment ago: say so at once rather than hold this request for a timeout too.
                    raise PublishError(f"Kafka is unreachable: {self._link.reason}")
                try:
                    self._producer = new_producer(
                        self._settings, self._role, self._client_id,
                        enable_idempotence=True,
                        linger_ms=2,
                        max_block_ms=int(self._timeout_s * 1000),
                        bootstrap_timeout_ms=int(self._timeout_s * 1000),
                        request_timeout_ms=int(self._timeout_s * 1000),
                        delivery_timeout_ms=int(self._timeout_s * 1000) + 1000,
                    )
                except KafkaError as error:
                    self._link.down(f"cannot connect: {type(error).__name__}")
                    raise PublishError(f"Kafka is unreachable: {error}") from error
            return self._producer

    def publish(self, topic: str, message: KafkaMessage) -> None:
        """Write one record and wait for its acknowledgement by all in-sync replicas."""
        producer = self._connected()
        key = message.key.encode() if isinstance(message.key, str) else message.key
        try:
            future = producer.send(topic, key=key, value=message.value, headers=list(message.headers.items()))
            future.get(timeout=self._timeout_s + 2)
        except KafkaError as error:
            self._replace(producer, error)
            raise PublishError(f"Kafka did not acknowledge the record: {type(error).__name__}") from error
        self._link.up()

    def publish_pipelined(self, topic: str, message: KafkaMessage) -> FutureRecordMetadata:
        """Send one record without waiting: for bulk loads that resolve many acknowledgements at once."""
        producer = self._connected()
        key = message.key.encode() if isinstance(message.key, str) else message.key
        try:
            return producer.send(topic, key=key, value=message.value, headers=list(message.headers.items()))
        except KafkaError as error:
            self._replace(producer, error)
            raise PublishError(f"Kafka did not take the record: {type(error).__name__}") from error

    def _replace(self, failed: KafkaProducer, error: KafkaError) -> None:
        """Drop a producer that failed; the next write makes a new one."""
        self._link.down(f"write failed: {type(error).__name__}")
        with self._lock:
            if self._producer is not failed:
                return  # another request already replaced it
            self._producer = None
        log.warning("intake: Kafka producer failed (%s); a new one is made for the next report", type(error).__name__)
        # Closing waits for nothing (timeout 0): its unsent records failed with the error above.
        threading.Thread(target=_close_quietly, args=(failed,), name="close-failed-producer", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


def _close_quietly(producer: KafkaProducer) -> None:
    close_quietly(lambda: producer.close(timeout=0), "a failed producer")
