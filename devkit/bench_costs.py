"""What a benchmark run cost the pipeline: the Kafka records it wrote per report, by kind of topic, and the CPU
time a process spent (issue 15's targets: records written per report, the worker's CPU per report)."""

from __future__ import annotations

import os
from pathlib import Path

from kafka import TopicPartition

from signalements.kafka_clients import new_admin, new_consumer
from signalements.kafka_security import Role
from signalements.settings import Settings


def topic_kind(name: str) -> str:
    """The kind of a topic of the namespace, as the figures group them."""
    if name.startswith("reports.raw."):
        return "raw"
    if name in ("reports.normalized", "reports.enriched"):
        return "internal"
    if name.startswith("unit."):
        return "unit_queues"
    if name.endswith("-changelog"):
        return "changelogs"
    return "other"


def records_written(settings: Settings) -> dict[str, int]:
    """Every record on the namespace's topics (end offsets: retention and compaction do not lower them), by kind."""
    admin = new_admin(settings, Role.ADMIN, "signalements-bench")
    try:
        names = [name for name in admin.list_topics() if name.startswith(settings.topic_namespace)]
    finally:
        admin.close()
    consumer = new_consumer(settings, Role.ADMIN, "signalements-bench")
    try:
        partitions = [TopicPartition(name, p) for name in names for p in consumer.partitions_for_topic(name) or ()]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    totals: dict[str, int] = {}
    for partition, end in ends.items():
        kind = topic_kind(partition.topic.removeprefix(settings.topic_namespace))
        totals[kind] = totals.get(kind, 0) + end
    return totals


def records_per_report(totals: dict[str, int], reports: int) -> dict[str, float]:
    """What the pipeline wrote per report (the raw topics are the intake's writing, left out of the total)."""
    written = {kind: count for kind, count in totals.items() if kind != "raw"}
    figures = {f"records_per_report_{kind}": round(count / reports, 2) for kind, count in sorted(written.items())}
    return {"records_written_per_report": round(sum(written.values()) / reports, 2), **figures}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and all its threads so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are the 14th and 15th fields of stat(5); the split starts at the 3rd
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process (from /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def last_unit_write_ms(settings: Settings) -> int | None:
    """When the worker wrote its last record to a unit queue of the namespace: the largest CreateTime of the last
    record of every unit queue partition (the worker's producer stamps each record as it sends it)."""
    consumer = new_consumer(settings, Role.ADMIN, "signalements-bench")
    try:
        names = [name for name in consumer.topics() if name.startswith(f"{settings.topic_namespace}unit.")]
        partitions = [TopicPartition(name, p) for name in names for p in consumer.partitions_for_topic(name) or ()]
        ends = {tp: end for tp, end in consumer.end_offsets(partitions).items() if end > 0}
        if not ends:
            return None
        consumer.assign(list(ends))
        for tp, end in ends.items():
            consumer.seek(tp, end - 1)
        latest: dict[TopicPartition, int] = {}
        for _ in range(20):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                latest[tp] = max([latest.get(tp, 0), *(record.timestamp for record in records)])
            if len(latest) == len(ends):
                break
        return max(latest.values()) if latest else None
    finally:
        consumer.close()
