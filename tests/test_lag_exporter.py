"""The lag exporter on the real broker: records produced and partly committed, lag read from Kafka's offsets."""

from __future__ import annotations

from pipeline_probe import parse_metrics, wait_for
from prometheus_client import generate_latest

from ops.lag_exporter import (
    ConsumerLagReader,
    LagPublisher,
    UnitPlace,
    collect_once,
    place_of_unit,
    unit_places_from_reference,
)
from schemas.channels import Channel
from schemas.topics import Topics
from signalements.kafka_clients import new_admin, new_consumer, new_producer
from signalements.kafka_security import Role
from signalements.metrics import PipelineMetrics
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics, unit_topic_config

POLICE_UNIT, GENDARMERIE_UNIT = "pn-75-pp", "gn-74-chamonix-mont-blanc"


def produce(settings: Settings, topic: str, count: int) -> None:
    producer = new_producer(settings, Role.ADMIN, "tests", acks="all")
    try:
        for index in range(count):
            producer.send(topic, key=f"k{index}".encode(), value=b"{}")
        producer.flush(timeout=30)
    finally:
        producer.close()


def consume_and_commit(settings: Settings, topic: str, group: str, count: int) -> None:
    """A consumer of ``group`` that reads ``count`` records and commits exactly their offsets."""
    consumer = new_consumer(
        settings, Role.ADMIN, "tests", topic, group_id=group,
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=1,
    )
    try:
        read = 0

        def poll_one() -> bool:
            nonlocal read
            for batch in consumer.poll(timeout_ms=500).values():
                read += len(batch)
                consumer.commit()
            return read >= count

        wait_for(poll_one, timeout_s=60, what=f"{count} records of {topic}")
    finally:
        consumer.close(autocommit=False)


def exported(metrics: PipelineMetrics) -> list[tuple[str, dict[str, str], float]]:
    return parse_metrics(generate_latest(metrics.registry).decode())


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float | None:
    found = [v for n, sample_labels, v in samples if n == name and sample_labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


def test_lag_by_stage_force_and_departement(settings: Settings) -> None:
    topics = Topics(settings.topic_namespace)
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    ensure_topics(settings, Role.ADMIN, {topics.unit(u): unit_topic_config(settings) for u in (POLICE_UNIT, GENDARMERIE_UNIT)})
    produce(settings, topics.raw(Channel.MONCOMMISSARIAT), 4)
    produce(settings, topics.normalized, 2)
    produce(settings, topics.unit(POLICE_UNIT), 7)
    produce(settings, topics.unit(GENDARMERIE_UNIT), 5)
    # The gendarmerie unit's consumer has read 3 of its 5 cases; the police unit's consumer never ran.
    consume_and_commit(settings, topics.unit(GENDARMERIE_UNIT), settings.consumer_group(f"unit-consumer.{GENDARMERIE_UNIT}"), 3)

    admin = new_admin(settings, Role.ADMIN, "tests")
    metrics = PipelineMetrics()
    try:
        reader = ConsumerLagReader(settings, admin, unit_places_from_reference(settings))
        assert collect_once(reader, LagPublisher(metrics), metrics)
    finally:
        admin.close()

    samples = exported(metrics)
    lag = "signalements_consumer_lag_records"
    assert value(samples, lag, group_kind="unit-consumer", stage="consume", force="PN", departement="75") == 7
    assert value(samples, lag, group_kind="unit-consumer", stage="consume", force="GN", departement="74") == 2
    assert value(samples, lag, group_kind="worker", stage="normalize", force="", departement="") == 4
    assert value(samples, lag, group_kind="worker", stage="enrich", force="", departement="") == 2
    assert value(samples, lag, group_kind="worker", stage="route", force="", departement="") == 0
    maximum = "signalements_consumer_lag_max_records"
    assert value(samples, maximum, group_kind="unit-consumer", stage="consume") == 7
    assert value(samples, "signalements_consumer_groups", group_kind="unit-consumer") == 2
    assert value(samples, "signalements_consumer_groups", group_kind="worker") == 1
    assert (value(samples, "signalements_lag_collected_timestamp_seconds") or 0) > 0
    # No unit id in any label of the shared metrics.
    assert not any(POLICE_UNIT in v or GENDARMERIE_UNIT in v for _, labels, _ in samples for v in labels.values())


def test_a_deleted_unit_queue_disappears_from_the_lag(settings: Settings) -> None:
    topics = Topics(settings.topic_namespace)
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    ensure_topics(settings, Role.ADMIN, {topics.unit(u): unit_topic_config(settings) for u in (POLICE_UNIT, GENDARMERIE_UNIT)})
    produce(settings, topics.unit(GENDARMERIE_UNIT), 3)
    admin = new_admin(settings, Role.ADMIN, "tests")
    metrics = PipelineMetrics()
    publisher = LagPublisher(metrics)
    try:
        reader = ConsumerLagReader(settings, admin, unit_places_from_reference(settings))
        assert collect_once(reader, publisher, metrics)
        gn = {"group_kind": "unit-consumer", "stage": "consume", "force": "GN", "departement": "74"}
        assert value(exported(metrics), "signalements_consumer_lag_records", **gn) == 3
        admin.delete_topics([topics.unit(GENDARMERIE_UNIT)])
        wait_for(lambda: topics.unit(GENDARMERIE_UNIT) not in admin.list_topics(), timeout_s=30, what="deletion")
        assert collect_once(reader, publisher, metrics)
    finally:
        admin.close()
    samples = exported(metrics)
    assert value(samples, "signalements_consumer_lag_records", **gn) is None
    assert value(samples, "signalements_consumer_groups", group_kind="unit-consumer") == 1


def test_units_missing_from_the_reference_keep_their_force() -> None:
    places = {"pn-75-pp": UnitPlace("PN", "75")}
    assert place_of_unit("pn-75-pp", places) == UnitPlace("PN", "75")
    assert place_of_unit("gn-01-new", places) == UnitPlace("GN", "unknown")
    assert place_of_unit("cross-13", places) == UnitPlace("CROSS", "13")
    assert place_of_unit("cross-2a", places) == UnitPlace("CROSS", "2A")
