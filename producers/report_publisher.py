"""Durable writes to Kafka for the intake: a report is accepted only once the broker has acknowledged it."""

from __future__ import annotations

import threading

from cloudevents.core.bindings.kafka import KafkaMessage
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata


class PublishError(RuntimeError):
    """Kafka could not take the record now; the caller should retry later."""


class ReportPublisher:
    def __init__(self, bootstrap_servers: str, timeout_s: float, client_id: str = "signalements-intake") -> None:
        self._bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def _connected(self) -> KafkaProducer:
        # Connect lazily: the intake starts (and answers 503) while Kafka is down, then recovers by itself.
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self._bootstrap_servers.split(","),
                        client_id=self._client_id,
                        acks="all",
                        enable_idempotence=True,
                        linger_ms=2,
                        max_block_ms=int(self._timeout_s * 1000),
                        bootstrap_timeout_ms=int(self._timeout_s * 1000),
                        request_timeout_ms=int(self._timeout_s * 1000),
                        delivery_timeout_ms=int(self._timeout_s * 1000) + 1000,
                    )
                except KafkaError as error:
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
            raise PublishError(f"Kafka did not acknowledge the record: {error}") from error

    def publish_pipelined(self, topic: str, message: KafkaMessage) -> FutureRecordMetadata:
        """Send one record without waiting: for bulk loads that resolve many acknowledgements at once."""
        producer = self._connected()
        key = message.key.encode() if isinstance(message.key, str) else message.key
        try:
            return producer.send(topic, key=key, value=message.value, headers=list(message.headers.items()))
        except KafkaError as error:
            raise PublishError(f"Kafka did not take the record: {error}") from error

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
