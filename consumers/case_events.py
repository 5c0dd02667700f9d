"""A case event ready to produce onto a unit queue, and producing them in order (keyed by case id)."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaProducer
from pydantic import BaseModel

from schemas.envelope import EventType, encode


@dataclass(frozen=True)
class CaseEvent:
    """One event ready to produce: its type, payload, event id and key (the case id)."""

    event_type: EventType
    payload: BaseModel
    event_id: str

    @property
    def key(self) -> str:
        return str(getattr(self.payload, "case_id"))  # noqa: B009 (every case event has one; BaseModel does not say)


def publish(producer: KafkaProducer, topic: str, events: list[CaseEvent], source: str = "/signalements/synthetic") -> None:
    """Produce the events in order (keyed by case id) and wait until the broker has them all."""
    futures = []
    for event in events:
        message = encode(event.event_type, event.payload, event_id=event.event_id, source=source, key=event.key)
        futures.append(producer.send(
            topic, key=event.key.encode(), value=message.value, headers=list(message.headers.items())
        ))
    producer.flush()
    for future in futures:
        future.get(timeout=30)
