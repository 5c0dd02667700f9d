"""What the consumer tests use: a running consumer (in-process or as a real process), producing case events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pipeline_probe import grant_units

from consumers.case_events import CaseEvent, publish
from consumers.case_store import CaseStore, store_url_for
from consumers.unit_consumer import run_unit_consumers
from devkit.throwaway_postgres import create_database
from schemas.topics import Topics
from signalements.kafka_clients import new_admin, new_producer
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, unit_topic_config
from streams.action_relay import ActionRelay


@contextmanager
def consuming(settings: Settings, unit_ids: list[str]) -> Iterator[threading.Thread]:
    """The unit consumers of ``unit_ids`` running in this process (the same code the command runs), each as its
    unit's principal."""
    grant_units(settings, unit_ids)
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            run_unit_consumers(settings, unit_ids, stop)
        except BaseException as error:  # noqa: BLE001 (surfaced by the test through the thread's liveness)
            failures.append(error)

    thread = threading.Thread(target=run, name="test-consumers")
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures


@contextmanager
def relaying_actions(settings: Settings) -> Iterator[None]:
    """The worker's action relay running in this process, as the worker's principal: what units write on their
    actions topics reaches the queues (streams/action_relay.py)."""
    stop = threading.Event()
    thread = ActionRelay(settings).start(stop)
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def produce(settings: Settings, unit_id: str, events: list[CaseEvent]) -> None:
    """Case events on a unit's queue (as the worker would put them), the unit granted to read them."""
    grant_units(settings, [unit_id])
    topic = Topics(settings.topic_namespace).unit(unit_id)
    ensure_topics(settings, Role.ADMIN, {topic: unit_topic_config(settings)})
    producer = new_producer(settings, Role.ADMIN, "tests", acks="all")
    try:
        publish(producer, topic, events)
    finally:
        producer.close()


def produce_raw(
    settings: Settings, unit_id: str, key: bytes, value: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    topic = Topics(settings.topic_namespace).unit(unit_id)
    ensure_topics(settings, Role.ADMIN, {topic: unit_topic_config(settings)})
    producer = new_producer(settings, Role.ADMIN, "tests", acks="all")
    try:
        producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)
    finally:
        producer.close()


def open_store(settings: Settings, unit_id: str) -> CaseStore:
    return CaseStore.open(store_url_for(settings.consumer_database_url, settings.unit_store_dir, unit_id), unit_id)


def committed_offsets(settings: Settings, unit_id: str) -> dict[int, int]:
    """The unit group's committed offset per partition (absent: nothing committed)."""
    admin = new_admin(settings, Role.ADMIN, "tests")
    try:
        group = settings.consumer_group(f"unit-consumer.{unit_id}")
        offsets = admin.list_group_offsets(group).get(group, {})
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        admin.close()


STORE_BACKENDS = ["sqlite", "postgresql"]


def with_store_backend(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """``settings`` whose unit stores are SQLite files (the default) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return settings
    server = request.getfixturevalue("postgres_server")
    return settings.model_copy(update={"consumer_database_url": create_database(server)})
