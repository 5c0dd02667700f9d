"""Unit queues: created on first use with the configured partitions, replication and retention; keyed by case id so
a case's events stay in order; one consumer process for every unit of a département, one group per unit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from consumer_probe import committed_offsets, open_store, produce
from kafka.admin import ConfigResource, ConfigResourceType
from pipeline_probe import grant_units, read_topic, wait_for

from consumers.unit_directory import UnknownDepartement, units_of_departement
from devkit.synthetic_cases import PARIS_11, SyntheticUnit, case_opened, case_updated
from schemas.channels import Force
from schemas.topics import Topics
from signalements.kafka_clients import new_admin
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, partitions_for, unit_topic_config
from streams.jurisdiction import JurisdictionReference

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

MAMOUDZOU = SyntheticUnit("pn-976-mamoudzou", "97611", "Mamoudzou", "976", Force.POLICE)
DEMBENI = SyntheticUnit("gn-976-dembeni", "97607", "Dembeni", "976", Force.GENDARMERIE)


def test_a_unit_queue_is_created_on_first_use_with_its_configuration(settings: Settings) -> None:
    settings = settings.model_copy(update={"unit_topic_partitions": 4, "unit_topic_retention_ms": 123_456_789})
    topic = Topics(settings.topic_namespace).unit("gn-2a-sartene")

    assert ensure_topics(settings, Role.ADMIN, {topic: unit_topic_config(settings)}) == [topic]
    assert ensure_topics(settings, Role.ADMIN, {topic: unit_topic_config(settings)}) == []  # the second service creates nothing

    admin = new_admin(settings, Role.ADMIN, "tests")
    try:
        described = admin.describe_topics([topic])[0]
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    assert len(described["partitions"]) == 4
    assert {len(p["replica_nodes"]) for p in described["partitions"]} == {settings.topic_replication_factor}
    assert "123456789" in repr(configs)


def test_a_units_topics_have_one_partition_and_the_pipelines_their_own_count() -> None:
    settings = Settings(topic_namespace="ns.")
    topics = Topics(settings.topic_namespace)
    assert partitions_for(settings, topics.unit("pn-75-pp")) == 1
    assert partitions_for(settings, topics.actions("gn-2a-sartene")) == 1
    assert partitions_for(settings, topics.enriched) == partitions_for(settings, topics.dead_letter) == 3
    assert partitions_for(settings, "unit.pn-75-pp") == 3, "another namespace's queue is not this pipeline's unit's"
    assert partitions_for(settings.model_copy(update={"unit_topic_partitions": 2}), topics.unit("pn-75-pp")) == 2


def test_unit_ids_follow_the_published_scheme() -> None:
    topics = Topics("")
    assert topics.unit("pn-75-pp") == "unit.pn-75-pp"
    assert topics.unit("cross-13") == "unit.cross-13"
    for bad in ("PN-75", "pn_75", "75-pp", "pn-", "pn-75-pp/../x"):
        with pytest.raises(ValueError):
            topics.unit(bad)


def test_the_events_of_a_case_share_its_key_and_partition_in_order(settings: Settings) -> None:
    events = [case_opened(PARIS_11, "ordered")] + [case_updated(PARIS_11, "ordered", v) for v in range(2, 7)]
    produce(settings, PARIS_11.unit_id, events)

    records = [r for r in read_topic(settings, Topics(settings.topic_namespace).unit(PARIS_11.unit_id))
               if r.key == events[0].key.encode()]
    assert len({r.partition for r in records}) == 1
    assert [r.offset for r in records] == sorted(r.offset for r in records)
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [e.event_id for e in events]


def test_units_of_a_departement_come_from_the_jurisdiction_reference() -> None:
    reference = JurisdictionReference.from_settings(Settings())
    mayotte = units_of_departement(reference, "976")
    assert {MAMOUDZOU.unit_id, DEMBENI.unit_id, "cross-976"} <= set(mayotte)
    assert mayotte == sorted(mayotte) and len(mayotte) == len(set(mayotte))
    # Every commune of the département is served by one of them, and no unit of another département is.
    assert {c.unit_id for c in reference.communes if c.departement == "976"} == set(mayotte) - {"cross-976"}
    assert units_of_departement(reference, "2a") == sorted(units_of_departement(reference, "2A"))
    with pytest.raises(UnknownDepartement):
        units_of_departement(reference, "99")


def test_one_process_consumes_every_unit_of_a_departement_one_group_each(settings: Settings, tmp_path: Path) -> None:
    mamoudzou, dembeni = case_opened(MAMOUDZOU, "dep-1"), case_opened(DEMBENI, "dep-2")
    produce(settings, MAMOUDZOU.unit_id, [mamoudzou])
    produce(settings, DEMBENI.unit_id, [dembeni])

    from consumers.unit_directory import units_of_departement
    from streams.jurisdiction import JurisdictionReference

    grant_units(settings, units_of_departement(JurisdictionReference.from_settings(settings), "976"))
    log = (tmp_path / "consume.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "consume", "--departement", "976"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **settings.as_environment()},
    )
    try:
        for unit, event in ((MAMOUDZOU, mamoudzou), (DEMBENI, dembeni)):
            store = open_store(settings, unit.unit_id)
            wait_for(lambda store=store, event=event: store.get_case(event.key) is not None, timeout_s=120,
                     what=f"the case of {unit.unit_id}")
            wait_for(lambda unit=unit: sum(committed_offsets(settings, unit.unit_id).values()) == 1,
                     what=f"{unit.unit_id}'s own group committed")
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0, (tmp_path / "consume.log").read_text()
