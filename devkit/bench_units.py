"""Every unit of France on the cluster (issue 17): a queue and an actions topic for each of about 6,100 units, the
time to create them, the brokers' memory with them, and the time the brokers take to start again holding them.

The unit ids are synthetic (the competence table shipped is a demonstration): what is measured is the number of
topics and partitions, not who they belong to. Everything runs in a namespace of its own, deleted at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from devkit.bench_costs import rss_mb
from devkit.local_broker import LocalCluster
from schemas.topics import Topics
from signalements.kafka_clients import new_admin
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import partitions_for, replicated, unit_topic_config, wait_until_served

RESTART_TIMEOUT_S = 1800.0  # every node loads each of its replicas' logs before it answers: minutes
BATCH = 500  # topics per CreateTopics request: a few seconds of work for the controller each


def synthetic_unit_ids(count: int) -> list[str]:
    return [f"gn-bench-{number:05d}" for number in range(1, count + 1)]


def unit_topic_names(settings: Settings, unit_ids: list[str]) -> list[str]:
    topics = Topics(settings.topic_namespace)
    return [name for unit_id in unit_ids for name in (topics.unit(unit_id), topics.actions(unit_id))]


def batches(names: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(names), size):
        yield names[start:start + size]


def create_unit_topics(settings: Settings, names: list[str]) -> None:
    admin = new_admin(settings, Role.ADMIN, "signalements-bench-units", request_timeout_ms=120_000)
    config = replicated(settings, unit_topic_config(settings))
    try:
        for batch in batches(names):
            try:
                admin.create_topics([NewTopic(name, partitions_for(settings, name), settings.topic_replication_factor,
                                              topic_configs=config) for name in batch], timeout_ms=120_000)
            except TopicAlreadyExistsError:  # a batch retried after a timeout: its topics are there
                pass
    finally:
        admin.close()


def wait_all_served(settings: Settings, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for batch in batches(names):
        wait_until_served(settings, Role.ADMIN, batch, timeout_s=max(1.0, deadline - time.monotonic()))


def delete_unit_topics(settings: Settings, names: list[str]) -> None:
    admin = new_admin(settings, Role.ADMIN, "signalements-bench-units", request_timeout_ms=120_000)
    try:
        for batch in batches(names):
            admin.delete_topics(batch, timeout_ms=120_000)
    finally:
        admin.close()


def brokers_rss_mb(cluster: LocalCluster | None) -> float | None:
    """Resident memory of every running node (JVM heap in use, page tables, mapped index files); None for a
    cluster this machine does not run."""
    if cluster is None:
        return None
    pids = [node.running_pid() for node in cluster.nodes]
    return round(sum(rss_mb(pid) for pid in pids if pid is not None), 1)


def _say(figures: dict[str, object]) -> None:
    # each figure as soon as measured: a run cut short (a node that does not come back) keeps what it measured
    print(f"[bench-units] {figures}", file=sys.stderr, flush=True)


def run_units_bench(settings: Settings, units: int, restart: bool = True) -> dict[str, object]:
    """Create a queue and an actions topic per unit, measure, delete them. On the local broker or cluster it also
    reads the brokers' memory and (``restart``) stops and starts them; on another cluster only the times."""
    cluster = LocalCluster.from_settings(settings) if settings.uses_local_broker else None
    if cluster is not None and cluster.running_pid() is None:
        cluster.start()
    settings = settings.pinned_to_cluster().model_copy(
        update={"topic_namespace": f"{settings.topic_namespace}benchunits{int(time.time())}."})
    names = unit_topic_names(settings, synthetic_unit_ids(units))
    rss_before = brokers_rss_mb(cluster)
    started = time.monotonic()
    create_unit_topics(settings, names)
    wait_all_served(settings, names, timeout_s=600)
    create_s = time.monotonic() - started
    time.sleep(5)  # the followers' fetchers settle
    figures: dict[str, object] = {
        "units": units, "topics": len(names),
        "partitions": sum(partitions_for(settings, name) for name in names),
        "replication": settings.topic_replication_factor, "nodes": len(cluster.nodes) if cluster else None,
        "create_s": round(create_s, 1), "brokers_rss_mb_before": rss_before,
        "brokers_rss_mb_after": brokers_rss_mb(cluster),
    }
    _say(figures)
    try:
        if restart and cluster is not None:
            stop_started = time.monotonic()
            cluster.stop()
            figures["stop_s"] = round(time.monotonic() - stop_started, 1)
            _say(figures)
            started = time.monotonic()
            cluster.start(timeout_s=RESTART_TIMEOUT_S)
            figures["start_s"] = round(time.monotonic() - started, 1)
            _say(figures)
            wait_all_served(settings, names, timeout_s=600)
            figures["start_to_all_served_s"] = round(time.monotonic() - started, 1)
            figures["brokers_rss_mb_restarted"] = brokers_rss_mb(cluster)
    finally:
        started = time.monotonic()
        delete_unit_topics(settings, names)
        figures["delete_s"] = round(time.monotonic() - started, 1)
    figures["namespace"] = settings.topic_namespace
    return figures
