"""The broker's boundaries, proved on the real secured broker with each role's own credentials and the client's
exact error: a unit reads only its own queue and writes only its own actions, the intake writes only the raw
topics, the national statistics write nothing, and a wrong password or an untrusted certificate is refused at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import TopicPartition
from kafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from pipeline_probe import SettingsFactory, grant_units
from pydantic import SecretStr

from devkit.dev_pki import DevelopmentCA
from ops.access_control import AccessControl, topic_access, unit_roles
from schemas.channels import Channel
from schemas.topics import Topics
from signalements.kafka_clients import new_consumer, new_producer
from signalements.kafka_security import KafkaAccessRefused, Role, check_access, principal_name, unit_role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, partitions_for, pipeline_topics

UNIT_A, UNIT_B = "pn-75-11", "gn-74-chamonix-mont-blanc"


@pytest.fixture(scope="module")
def granted(settings_factory: SettingsFactory) -> Settings:
    """A namespace whose services and two units are granted, with one record on each unit's queue."""
    settings = settings_factory("access")
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    grant_units(settings, [UNIT_A, UNIT_B])
    topics = Topics(settings.topic_namespace)
    producer = new_producer(settings, Role.ADMIN, "tests")
    try:
        for unit_id in (UNIT_A, UNIT_B):
            producer.send(topics.unit(unit_id), key=b"case", value=f"for {unit_id}".encode()).get(timeout=30)
    finally:
        producer.close()
    return settings


def read_all(settings: Settings, role: str, topic: str) -> list[bytes]:
    """Every record of ``topic`` as ``role`` sees it, from the beginning (its end offsets asked first)."""
    consumer = new_consumer(settings, role, "tests-boundary", request_timeout_ms=10_000)
    try:
        partitions = [TopicPartition(topic, p) for p in range(partitions_for(settings, topic))]
        end = consumer.end_offsets(partitions)  # an unauthorized topic fails here, with the broker's own error
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + 10
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            values += [record.value for batch in consumer.poll(timeout_ms=300).values() for record in batch]
        return values
    finally:
        consumer.close()


def write(settings: Settings, role: str, topic: str, idempotent: bool = True) -> None:
    # A principal that may write nowhere cannot even start an idempotent producer (ClusterAuthorizationFailed):
    # ``idempotent=False`` asks the broker about the topic itself.
    producer = new_producer(settings, role, "tests-boundary", max_block_ms=10_000, enable_idempotence=idempotent)
    try:
        producer.send(topic, key=b"k", value=b"forged").get(timeout=15)
    finally:
        producer.close()


def refused_quickly(action: Callable[[], object], error: type[Exception], within_s: float = 10.0) -> Exception:
    started = time.monotonic()
    with pytest.raises(error) as raised:
        action()
    assert time.monotonic() - started < within_s, "refused, but only after a long wait"
    return raised.value


def test_a_unit_reads_its_own_queue_and_never_another_units(granted: Settings) -> None:
    topics = Topics(granted.topic_namespace)
    assert read_all(granted, unit_role(UNIT_A), topics.unit(UNIT_A)) == [f"for {UNIT_A}".encode()]
    assert read_all(granted, Role.ADMIN, topics.unit(UNIT_B)) == [f"for {UNIT_B}".encode()]
    error = refused_quickly(lambda: read_all(granted, unit_role(UNIT_A), topics.unit(UNIT_B)),
                            TopicAuthorizationFailedError)
    assert topics.unit(UNIT_B) in str(error)
    # Nor the pipeline's internal topics, where every unit's reports pass.
    for internal in (topics.normalized, topics.enriched, topics.raw(Channel.MONCOMMISSARIAT)):
        refused_quickly(lambda topic=internal: read_all(granted, unit_role(UNIT_A), topic),
                        TopicAuthorizationFailedError)


def test_a_unit_cannot_join_another_units_consumer_group(granted: Settings) -> None:
    topics = Topics(granted.topic_namespace)
    consumer = new_consumer(granted, unit_role(UNIT_A), "tests-boundary", topics.unit(UNIT_A),
                            group_id=granted.consumer_group(f"unit-consumer.{UNIT_B}"))
    try:
        refused_quickly(lambda: consumer.poll(timeout_ms=5000), GroupAuthorizationFailedError)
    finally:
        consumer.close()


@pytest.mark.parametrize("target", ["raw", "own queue", "other queue", "other actions", "normalized"])
def test_a_unit_writes_nothing_but_its_own_actions(granted: Settings, target: str) -> None:
    topics = Topics(granted.topic_namespace)
    topic = {"raw": topics.raw(Channel.MONCOMMISSARIAT), "own queue": topics.unit(UNIT_A),
             "other queue": topics.unit(UNIT_B), "other actions": topics.actions(UNIT_B),
             "normalized": topics.normalized}[target]
    error = refused_quickly(lambda: write(granted, unit_role(UNIT_A), topic), TopicAuthorizationFailedError)
    assert topic in str(error)
    write(granted, unit_role(UNIT_A), topics.actions(UNIT_A))  # what it may write: accepted


def test_the_intake_writes_the_raw_topics_and_reads_nothing_else(granted: Settings) -> None:
    topics = Topics(granted.topic_namespace)
    write(granted, Role.INTAKE, topics.raw(Channel.BRIGADE_NUMERIQUE))
    for topic in (topics.unit(UNIT_A), topics.normalized, topics.dead_letter):
        refused_quickly(lambda topic=topic: read_all(granted, Role.INTAKE, topic), TopicAuthorizationFailedError)
    for topic in (topics.normalized, topics.unit(UNIT_A), topics.reference_competence):
        refused_quickly(lambda topic=topic: write(granted, Role.INTAKE, topic), TopicAuthorizationFailedError)


def test_the_national_statistics_read_the_unit_queues_and_write_nothing(granted: Settings) -> None:
    topics = Topics(granted.topic_namespace)
    assert read_all(granted, Role.NATIONAL_STATS, topics.unit(UNIT_B)) == [f"for {UNIT_B}".encode()]
    for topic in (topics.unit(UNIT_A), topics.raw(Channel.MONCOMMISSARIAT), topics.actions(UNIT_A)):
        refused_quickly(lambda topic=topic: write(granted, Role.NATIONAL_STATS, topic, idempotent=False),
                        TopicAuthorizationFailedError)
    error = refused_quickly(lambda: write(granted, Role.NATIONAL_STATS, topics.unit(UNIT_A)), KafkaError)
    assert "ClusterAuthorizationFailed" in str(error)
    refused_quickly(lambda: read_all(granted, Role.NATIONAL_STATS, topics.raw(Channel.MONCOMMISSARIAT)),
                    TopicAuthorizationFailedError)


def test_monitoring_sees_offsets_but_reads_no_record(granted: Settings) -> None:
    topics = Topics(granted.topic_namespace)
    consumer = new_consumer(granted, Role.MONITORING, "tests-boundary")
    try:
        partitions = [TopicPartition(topics.unit(UNIT_A), p) for p in range(granted.unit_topic_partitions)]
        assert sum(consumer.end_offsets(partitions).values()) == 1  # the lag exporter's view
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        refused_quickly(lambda: [consumer.poll(timeout_ms=1000) for _ in range(5)], TopicAuthorizationFailedError)
    finally:
        consumer.close()


def test_a_wrong_password_is_refused_at_once_with_the_reason(granted: Settings) -> None:
    wrong = granted.model_copy(update={
        "kafka_username": principal_name(granted, unit_role(UNIT_A)), "kafka_password": SecretStr("not-the-password")})
    error = refused_quickly(lambda: check_access(wrong, unit_role(UNIT_A)), KafkaAccessRefused, within_s=5)
    assert "SaslAuthenticationFailed" in str(error) and principal_name(granted, unit_role(UNIT_A)) in str(error)

    # A service started with it says so and exits, instead of retrying forever.
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "consume", "--unit", UNIT_A], capture_output=True, text=True, timeout=60,
        env={**os.environ, **wrong.as_environment()})
    assert result.returncode == 2, result.stderr
    assert "refused principal" in result.stderr and "not-the-password" not in result.stderr
    assert time.monotonic() - started < 30


def test_a_broker_certificate_from_another_ca_is_refused_at_once(granted: Settings, tmp_path: Path) -> None:
    other_ca = DevelopmentCA(tmp_path / "other-ca").ensure()
    untrusting = granted.model_copy(update={"kafka_ssl_cafile": other_ca.certificate_file})
    error = refused_quickly(lambda: check_access(untrusting, Role.INTAKE), KafkaAccessRefused, within_s=5)
    assert "not trusted" in str(error) and str(other_ca.certificate_file) in str(error)


def test_grant_and_revoke_are_idempotent_and_say_what_they_changed(granted: Settings) -> None:
    unit_c = "pn-13-marseille-nord"
    environment = {**os.environ, **granted.as_environment()}

    def access(*args: str) -> list[str]:
        result = subprocess.run([sys.executable, "-m", "cli.main", "access", *args], capture_output=True, text=True,
                                timeout=60, env=environment)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    granted_lines = access("grant", "--unit", unit_c)
    principal = f"User:{principal_name(granted, unit_role(unit_c))}"
    assert f"{principal}: allowed READ topic {Topics(granted.topic_namespace).unit(unit_c)}" in granted_lines
    assert any("SCRAM-SHA-512 credential created" in line for line in granted_lines)
    assert access("grant", "--unit", unit_c) == []
    check_access(granted, unit_role(unit_c))
    username = principal_name(granted, unit_role(unit_c))
    had = granted.model_copy(update={
        "kafka_username": username, "kafka_password": SecretStr((granted.credentials_dir / username).read_text().strip())})

    revoked = access("revoke", "--unit", unit_c)
    assert any("SCRAM credential deleted" in line for line in revoked)
    assert any(f"{principal}: removed READ" in line for line in revoked)
    assert access("revoke", "--unit", unit_c) == []
    assert not (granted.credentials_dir / username).exists()
    refused_quickly(lambda: check_access(had, unit_role(unit_c)), KafkaAccessRefused)  # even with its old password
    assert AccessControl(granted).grant(unit_roles([unit_c]))  # granted again: a new credential
    check_access(granted, unit_role(unit_c))


def test_access_show_gives_each_topics_retention_and_who_may_do_what(granted: Settings) -> None:
    topics = Topics(granted.topic_namespace)
    shown = {access.topic: access for access in topic_access(granted)}
    queue = shown[topics.unit(UNIT_A)]
    assert queue.retention_ms == granted.unit_topic_retention_ms and queue.retention == "90 d"
    assert f"User:{principal_name(granted, unit_role(UNIT_A))} READ" in queue.rights
    assert f"User:{principal_name(granted, unit_role(UNIT_B))} READ" not in queue.rights
    assert f"User:{principal_name(granted, Role.NATIONAL_STATS)} READ" in queue.rights
    assert not any(right.endswith(" WRITE") and "unit-" in right for right in queue.rights)
