"""The loop both consumers run (a unit's queue, the national statistics): poll a batch, store it in one
transaction, and only then commit its offsets. A crash between the two stores the batch again on restart, which
the stores recognise (they apply by event id), so nothing is lost and nothing counted twice.

A session that fails (the broker gone, the store unreachable) is retried with a new Kafka consumer after a backoff
(signalements/service_loop.py); only ``CannotContinue`` ends the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from signalements.kafka_clients import close_quietly
from signalements.kafka_link import KafkaLink
from signalements.service_loop import keep_running


@dataclass
class CommitAfterStore:
    name: str
    new_consumer: Callable[[], KafkaConsumer]
    store_batch: Callable[[list[ConsumerRecord]], None]
    link: KafkaLink
    # After each stored and committed batch, and after every poll (say, to report the lag).
    after_commit: Callable[[], None] | None = None
    after_poll: Callable[[KafkaConsumer], None] | None = None

    def run(self, stop: threading.Event) -> None:
        keep_running(lambda: self._session(stop), stop, self.name, self._on_failure)

    def _session(self, stop: threading.Event) -> None:
        consumer = self.new_consumer()
        try:
            while not stop.is_set():
                batches = consumer.poll(timeout_ms=500)
                records = [record for batch in batches.values() for record in batch]
                if records:
                    self.store_batch(records)
                    consumer.commit()  # only after the store's commit
                    self.link.up()
                    if self.after_commit is not None:
                        self.after_commit()
                if self.after_poll is not None:
                    self.after_poll(consumer)
        finally:
            # Leave the group without committing: offsets are committed after the store only.
            close_quietly(lambda: consumer.close(autocommit=False), f"the {self.name}'s Kafka consumer")

    def _on_failure(self, error: BaseException) -> None:
        if isinstance(error, KafkaError):
            self.link.down(f"{self.name}: {type(error).__name__}")
