"""Deduplication state does not grow without bound: the sweep deletes closed cases and what led to them, on the
real broker with a real worker (a case window of half a second, a sweep every two seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_probe import make_settings, read_topic, services_environment, wait_for
from rocksdict import Options, Rdict

from devkit.dedup_traffic import TrafficShape, ground_truth_traffic
from devkit.local_run import Services
from schemas.topics import Topics
from signalements.kafka_clients import new_producer
from signalements.kafka_security import Role
from signalements.topic_admin import ensure_topics, pipeline_topics

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes


def test_closed_cases_are_deleted_from_the_state_and_its_changelog(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = make_settings(
        kafka_bootstrap, tmp_path, dedup_case_window_days=0.5 / 86400, dedup_sweep_interval_s=2.0,
        # a case keeps its pending reports until they are sent: a short throttle sends them
        dedup_update_throttle_s=0.5,
    )
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    traffic = ground_truth_traffic(TrafficShape(points=5, max_reports_per_point=2, retry_rate=0, resubmission_rate=0), seed=3)
    topics = Topics(settings.topic_namespace)
    changelog = f"{settings.consumer_group(settings.worker_id)}-dedup-state-changelog"
    services = Services(settings.log_dir, services_environment(settings))
    try:
        services.start("worker", "worker")
        producer = new_producer(settings, Role.ADMIN, "tests", acks="all")
        for report in traffic:
            topic, key, value, headers = report.raw_record(topics)
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush()
        producer.close()

        def state_entries() -> tuple[set[bytes], set[bytes]]:
            written, deleted = set(), set()
            for record in read_topic(settings, changelog):
                (deleted if record.value is None else written).add(record.key)
            return written, deleted

        def all_cases_deleted() -> bool:
            written, deleted = state_entries()
            cases = {key for key in written if key.startswith(b"case:")}
            return bool(cases) and cases <= deleted

        wait_for(all_cases_deleted, timeout_s=120, what="tombstones for every closed case")
        written, deleted = state_entries()
    finally:
        services.stop()
    # The changelog holds the case records only (their index entries are derived from them, kept locally).
    assert written and all(key.startswith(b"case:") for key in written), written
    # Locally too, nothing is left of the closed cases: neither their records nor their index entries.
    partitions = sorted((settings.state_dir / "faust").rglob("*dedup-state-*.db"))
    assert partitions, list((settings.state_dir / "faust").rglob("*"))
    left: list[bytes] = []
    for path in partitions:
        db = Rdict(str(path), options=Options(raw_mode=True))
        try:
            left += [bytes(key) for key in db.keys() if not bytes(key).startswith(b"__faust")]
        finally:
            db.close()
    assert left == []
