"""Create the pipeline's topics explicitly, with their partitions, replication and retention.

The broker's auto-creation is off: a topic created by accident gets the wrong partition count, and keys would then
stop keeping one case's events in order.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.topics import Topics
from signalements.kafka_clients import new_admin
from signalements.settings import Settings


def pipeline_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """The fixed topics of the pipeline and their configs (unit queues are created on first use)."""
    topics = Topics(settings.topic_namespace)
    week = str(7 * 24 * 3600 * 1000)
    configs: dict[str, dict[str, str]] = {name: {"retention.ms": week} for name in topics.raw_all}
    configs[topics.normalized] = {"retention.ms": week}
    configs[topics.enriched] = {"retention.ms": week}
    configs[topics.unrouted] = {"retention.ms": str(settings.unit_topic_retention_ms)}
    configs[topics.dead_letter] = {"retention.ms": str(settings.unit_topic_retention_ms)}
    # The reference is state, not history: compaction keeps the latest row of every commune, forever.
    configs[topics.reference_competence] = {"cleanup.policy": "compact"}
    return configs


def raw_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """The raw topics (what the intake writes) and their configs."""
    raw = set(Topics(settings.topic_namespace).raw_all)
    return {name: config for name, config in pipeline_topics(settings).items() if name in raw}


def unit_topic_config(settings: Settings) -> dict[str, str]:
    return {"retention.ms": str(settings.unit_topic_retention_ms)}


def partitions_for(settings: Settings, topic: str) -> int:
    """How many partitions ``topic`` is created with: a unit's topics have their own count."""
    if Topics(settings.topic_namespace).is_per_unit(topic):
        return settings.unit_topic_partitions
    return settings.topic_partitions


def replicated(settings: Settings, config: dict[str, str]) -> dict[str, str]:
    """A topic's config with the replication the settings ask for (min.insync.replicas follows the factor)."""
    return {"min.insync.replicas": str(settings.topic_min_insync_replicas), **config}


def wait_until_served(settings: Settings, role: str, names: list[str], timeout_s: float = 60.0) -> None:
    """Wait until the broker serves every one of ``names``: known to its metadata, each partition with a leader.

    A topic just created is not in a broker's metadata at once (KRaft replays the creation: seen taking seconds on
    a new, busy broker). A client that reads the metadata in between takes the topic for missing; Faust then kept
    "0 partitions" for its changelogs and failed every table write.
    """
    admin = new_admin(settings, role, "signalements-admin")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                served = {d["name"] for d in admin.describe_topics(names) if is_served(d)}
            except KafkaError:  # a topic the broker does not know yet: asked again
                served = set()
            if served >= set(names):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not served after {timeout_s:.0f}s: {sorted(set(names) - served)}")
            time.sleep(0.2)
    finally:
        admin.close()


def is_served(description: dict[str, Any]) -> bool:
    """A topic as ``KafkaAdminClient.describe_topics`` describes it: known, and every partition with a leader."""
    partitions = description.get("partitions") or []
    leaders = [partition.get("leader_id") for partition in partitions]
    return description.get("error_code", 0) == 0 and bool(leaders) and all(
        leader is not None and leader >= 0 for leader in leaders)


def ensure_topics(settings: Settings, role: str, configs: dict[str, dict[str, str]]) -> list[str]:
    """Create the missing topics as ``role`` (which needs CREATE on them); return the names created.

    A principal only lists the topics it may describe: each role ensures only topics it is granted."""
    admin = new_admin(settings, role, "signalements-admin")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, partitions_for(settings, name), settings.topic_replication_factor,
                     topic_configs=replicated(settings, config))
            for name, config in configs.items()
            if name not in existing
        ]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:  # another service created it meanwhile
                pass
        return created
    finally:
        admin.close()
