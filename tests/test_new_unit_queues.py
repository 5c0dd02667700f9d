"""The first reports of dozens of units whose queues do not exist yet, at once and interleaved, on a busy machine:
every case reaches its unit's queue and its CROSS's queue, and no unit waits long behind another's new queue.

Seen before: a queue created on first use by the route stage lost its first case events now and then
(``NotLeaderForPartitionError`` on the new queue, the offset committed anyway, the case recorded as opened so never
sent again), and once the whole worker stalled for 90 s. Later, now and then, the worker's producer answered
``NotLeaderForPartitionError`` on a queue the admin client already saw with leaders, and its acknowledgements never
came: it had no metadata for the new topic yet (it is now asked for it, and waited for, before the first send).
Here only the worker runs (no unit consumer creates a queue ahead of it), both cores are kept busy by other
processes, and the scenario runs three times with new units."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kafka import TopicPartition
from pipeline_probe import services_environment, wait_for

from devkit.local_run import Services
from schemas.channels import Channel
from schemas.envelope import MONCOMMISSARIAT_SUBMISSION, decode, encode
from schemas.events import CaseOpened
from schemas.reports import report_id_for
from schemas.submissions import MonCommissariatSubmission
from schemas.topics import Topics
from signalements.kafka_clients import new_consumer, new_producer
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics
from streams.jurisdiction import CommuneCompetence, JurisdictionReference

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

ROUNDS = 3
UNITS_PER_ROUND = 40


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Two processes spinning, one per core: the worker competes for CPU as on a loaded host."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def new_units(settings: Settings, count: int, skip: int) -> list[CommuneCompetence]:
    """One commune each of ``count`` territorial units in as many départements as possible, none seen before."""
    by_unit: dict[str, CommuneCompetence] = {}
    for commune in JurisdictionReference.from_settings(settings).communes:
        if commune.postcodes and commune.unit_id not in by_unit and not commune.code.startswith(("75", "97")):
            by_unit[commune.unit_id] = commune
    units = list(by_unit.values())
    return units[skip * 97 % len(units):][:count]


def submission(commune: CommuneCompetence) -> MonCommissariatSubmission:
    return MonCommissariatSubmission.model_validate({
        "submission_id": f"mc-{uuid.uuid4().hex[:12]}",
        "submitted_at": datetime.now(UTC).isoformat(),
        "report": {
            "kind": "dealing_point",
            "place": {"label": f"place de la mairie {commune.postcodes[0]} {commune.name}", "street": "place de la mairie",
                      "postcode": commune.postcodes[0], "citycode": commune.code, "city": commune.name},
            "activity": "street_sales",
        },
    })


def opened_cases(settings: Settings, unit_topics: list[str], topics: Topics) -> dict[str, dict[str, float]]:
    """For each unit queue: report id -> append time of its case.opened (one consumer reads them all)."""
    consumer = new_consumer(settings, Role.ADMIN, "tests", enable_auto_commit=False)
    try:
        existing = consumer.topics()
        assigned = [TopicPartition(topic, p) for topic in unit_topics if topic in existing
                    for p in consumer.partitions_for_topic(topic) or ()]
        found: dict[str, dict[str, float]] = {}
        if not assigned:
            return found
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        deadline = time.monotonic() + 20
        while any(consumer.position(tp) < end[tp] for tp in assigned) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    event = decode(record.headers, record.key, record.value)
                    if isinstance(event.payload, CaseOpened):
                        unit = record.topic.removeprefix(f"{topics.namespace}unit.")
                        found.setdefault(unit, {})[event.payload.report.report.report_id] = record.timestamp / 1000
        return found
    finally:
        consumer.close()


@pytest.mark.timeout(900)
def test_first_cases_of_new_units_all_reach_their_queues(settings: Settings, busy_cores: None) -> None:
    topics = Topics(settings.topic_namespace)
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    services = Services(settings.log_dir, services_environment(settings))
    producer = new_producer(settings, Role.ADMIN, "tests", acks="all")
    longest_s = 0.0
    try:
        services.start("worker", "worker")
        for round_number in range(ROUNDS):
            communes = new_units(settings, UNITS_PER_ROUND, skip=round_number + 1)
            lister = new_consumer(settings, Role.ADMIN, "tests")
            listed = set(lister.topics())
            lister.close()
            existing = [commune.unit_id for commune in communes if topics.unit(commune.unit_id) in listed]
            assert not existing, f"queues exist before their first case: {existing[:5]}"
            sent: dict[str, tuple[CommuneCompetence, float]] = {}
            for commune in communes:  # interleaved: one report per unit, all at once
                body = submission(commune)
                message = encode(MONCOMMISSARIAT_SUBMISSION, body, event_id=report_id_for(
                    Channel.MONCOMMISSARIAT, body.submission_id), source="/tests", key=body.submission_id)
                producer.send(topics.raw(Channel.MONCOMMISSARIAT), key=body.submission_id.encode(),
                              value=message.value, headers=list(message.headers.items()))
                sent[report_id_for(Channel.MONCOMMISSARIAT, body.submission_id)] = (commune, time.time())
            producer.flush()

            queues = sorted({commune.unit_id for commune, _ in sent.values()}
                            | {f"cross-{commune.departement.lower()}" for commune, _ in sent.values()})
            # Report id -> time its case.opened was appended, per unit queue.
            on_queues: dict[str, dict[str, float]] = {}

            def missing(queues: list[str] = queues, on_queues: dict[str, dict[str, float]] = on_queues,
                        sent: dict[str, tuple[CommuneCompetence, float]] = sent) -> list[str]:
                on_queues.update(opened_cases(settings, [topics.unit(unit) for unit in queues], topics))
                return [rid for rid, (commune, _) in sent.items()
                        if rid not in on_queues.get(commune.unit_id, {})
                        or rid not in on_queues.get(f"cross-{commune.departement.lower()}", {})]

            wait_for(lambda: not missing(), timeout_s=180,
                     what=f"round {round_number}: every case on its unit's queue and its CROSS's")
            for rid, (commune, produced_at) in sent.items():
                longest_s = max(longest_s, on_queues[commune.unit_id][rid] - produced_at)
            services.check_alive()
        print(json.dumps({"new_units": ROUNDS * UNITS_PER_ROUND, "longest_report_to_queue_s": round(longest_s, 2)}))
        assert longest_s < 60, f"a new unit's first case took {longest_s:.1f}s to reach its queue"
    finally:
        producer.close()
        services.stop()
