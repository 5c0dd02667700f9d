"""Deduplication under the faults Faust is weakest at, on the real broker with real worker processes:
a worker killed with SIGKILL in the middle of the traffic and restarted, and a second worker joining (rebalance)
while traffic flows, then the first one leaving.

The invariant checked is what a unit sees on its queue, because that is what it acts on:
- every dealing point or network has exactly ONE case: exactly one distinct case.opened event id, and all of its
  reports in that case and in no other (copies of the same event id are allowed: consumers apply by event id, and
  at-least-once delivery may repeat a record; a second case.opened id would be a second case for the same point);
- every case's updates have versions 2..V without a gap (a consumer holds an update until its predecessor came), and
  an event id always carries the same content;
- the last update's report count is the number of distinct reports of the point (retries and the same person's
  resubmissions are not counted), and every one of those reports reached the unit exactly in that case.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kafka import TopicPartition
from pipeline_probe import free_port, make_settings, metric, read_topic, scrape, services_environment, wait_for

from devkit.dedup_traffic import TrafficShape, TruthReport, ground_truth_traffic, report_groups
from devkit.local_run import Services
from schemas.envelope import decode, read_attributes
from schemas.events import CaseOpened, CaseUpdated
from schemas.topics import Topics
from signalements.kafka_clients import new_admin, new_consumer, new_producer
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

RATE_PER_S = 40.0


@dataclass
class CaseLedger:
    opened_ids: set[str] = field(default_factory=set)
    reports: dict[str, int] = field(default_factory=dict)  # report id → case version that carried it
    versions: dict[int, dict[str, int]] = field(default_factory=dict)  # version → {event id: report count}


def case_ledgers(settings: Settings, unit_ids: set[str]) -> dict[str, CaseLedger]:
    topics = Topics(settings.topic_namespace)
    ledgers: dict[str, CaseLedger] = {}
    for unit_id in unit_ids:
        for record in read_topic(settings, topics.unit(unit_id), timeout_s=15):
            event_id = read_attributes(record.headers)["ce_id"]
            payload = decode(record.headers, record.key, record.value).payload
            ledger = ledgers.setdefault(payload.case_id, CaseLedger())
            if isinstance(payload, CaseOpened):
                ledger.opened_ids.add(event_id)
                ledger.reports.setdefault(payload.report.report.report_id, 1)
                ledger.versions.setdefault(1, {})[event_id] = payload.report_count
            else:
                assert isinstance(payload, CaseUpdated)
                ledger.versions.setdefault(payload.case_version, {})[event_id] = payload.report_count
                for report in payload.new_reports:
                    ledger.reports.setdefault(report.report.report_id, payload.case_version)
    return ledgers


def all_reports_arrived(settings: Settings, traffic: list[TruthReport]) -> dict[str, CaseLedger] | None:
    ledgers = case_ledgers(settings, {t.unit_id for t in traffic})
    arrived = {rid for ledger in ledgers.values() for rid in ledger.reports}
    groups = [group for point in report_groups(traffic).values() for group in point.values()]
    return ledgers if all(group & arrived for group in groups) else None


def wait_for_every_report(settings: Settings, traffic: list[TruthReport]) -> dict[str, CaseLedger]:
    try:
        # Well inside the test's own timeout (pytest-timeout), so that a failure prints its diagnosis.
        return wait_for(lambda: all_reports_arrived(settings, traffic), timeout_s=150, what="every report in a case")
    except AssertionError as timeout:
        ledgers = case_ledgers(settings, {t.unit_id for t in traffic})
        arrived = {rid for ledger in ledgers.values() for rid in ledger.reports}
        missing = [
            (point, original) for point, groups in report_groups(traffic).items()
            for original, group in groups.items() if not group & arrived
        ]
        traced = trace_reports(settings, [rid for _, rid in missing[:5]])
        raise AssertionError(
            f"{timeout}: {len(missing)} reports missing, e.g. {traced}\n{pipeline_diagnosis(settings)}"
        ) from None


def trace_reports(settings: Settings, report_ids: list[str]) -> dict[str, str]:
    """Where each report got to: the internal topics it is on (with partition@offset), the stage that lost it."""
    topics = Topics(settings.topic_namespace)
    found: dict[str, list[str]] = {rid: [] for rid in report_ids}
    for topic in (topics.normalized, topics.enriched):
        for record in read_topic(settings, topic, timeout_s=15):
            for rid in report_ids:
                if rid.encode() in (record.value or b""):
                    found[rid].append(f"{topic.removeprefix(topics.namespace)}[{record.partition}]@{record.offset}")
    return {rid: ", ".join(places) or "on no internal topic" for rid, places in found.items()}


def pipeline_diagnosis(settings: Settings) -> str:
    """What a failed run leaves to look at: dead letters, unrouted reports and the workers' errors."""
    topics = Topics(settings.topic_namespace)
    letters = [
        f"{read_attributes(r.headers).get('ce_dlqstage')}:{read_attributes(r.headers).get('ce_dlqreason')}"
        for r in read_topic(settings, topics.dead_letter)
    ]
    unrouted = len(read_topic(settings, topics.unrouted))
    outcomes = route_outcomes(settings)
    lag = route_lag(settings)
    errors = [
        f"{log.name}: {line}"
        for log in sorted(settings.log_dir.rglob("worker.log"))
        for line in log.read_text(errors="replace").splitlines()
        if any(mark in line for mark in ("ERROR", "Traceback", "Error:", "rewound", "lowered", "replaying"))
    ]
    return (f"dead letters: {letters[:10]}; unrouted: {unrouted}; route outcomes: {outcomes}; "
            f"route lag (committed/end per partition): {lag}; worker errors: {errors[-20:]}")


def route_outcomes(settings: Settings) -> dict[str, float]:
    """What the route stage decided so far (a stalled stage and reports decided away look the same on the queues)."""
    url = f"http://{settings.metrics_host}:{settings.worker_metrics_port}/metrics"
    try:
        samples = scrape(url)
    except httpx.HTTPError as error:
        return {f"unreachable: {error}": 0}
    totals: dict[str, float] = {}
    for name, labels, value in samples:
        if name == "signalements_stage_records_out_total" and labels.get("stage") == "route":
            totals[labels["outcome"]] = totals.get(labels["outcome"], 0) + value
        elif name == "signalements_stage_records_in_total":
            totals[f"in:{labels['stage']}"] = totals.get(f"in:{labels['stage']}", 0) + value
        elif name == "signalements_case_updates_throttled_total":
            totals["throttled"] = value
    return totals


def route_lag(settings: Settings) -> dict[int, tuple[int | None, int]]:
    """The worker group's committed offset and the end offset of each partition of reports.enriched."""
    topics = Topics(settings.topic_namespace)
    admin = new_admin(settings, Role.ADMIN, "tests-route-lag")
    consumer = new_consumer(settings, Role.ADMIN, "tests-route-lag")
    try:
        group = settings.consumer_group(settings.worker_id)
        committed = admin.list_group_offsets(group).get(group, {})
        partitions = [TopicPartition(topics.enriched, p) for p in consumer.partitions_for_topic(topics.enriched) or ()]
        ends = consumer.end_offsets(partitions)
        return {tp.partition: (getattr(committed.get(tp), "offset", None), ends[tp]) for tp in partitions}
    finally:
        admin.close()
        consumer.close()


def assert_one_case_per_point(traffic: list[TruthReport], ledgers: dict[str, CaseLedger]) -> None:
    groups = report_groups(traffic)
    point_of = {t.report_id: t.point_id for t in traffic}
    for case_id, ledger in ledgers.items():
        assert len(ledger.opened_ids) == 1, f"case {case_id}: {len(ledger.opened_ids)} distinct case.opened ids"
        points = {point_of[rid] for rid in ledger.reports}
        assert len(points) == 1, f"case {case_id} merged points {points}"
        assert sorted(ledger.versions) == list(range(1, max(ledger.versions) + 1)), f"case {case_id}: version gap"
        for version, events in ledger.versions.items():
            assert len(set(events.values())) == 1, f"case {case_id} v{version}: one event id, several contents"
    cases_of_point: dict[str, set[str]] = {}
    for case_id, ledger in ledgers.items():
        for rid in ledger.reports:
            cases_of_point.setdefault(point_of[rid], set()).add(case_id)
    for point, point_groups in groups.items():
        assert len(cases_of_point.get(point, set())) == 1, f"point {point} has cases {cases_of_point.get(point)}"
        [case_id] = cases_of_point[point]
        ledger = ledgers[case_id]
        for original, group in point_groups.items():
            counted = group & set(ledger.reports)
            assert len(counted) == 1, f"point {point}: report {original} and its repeats counted {len(counted)} times"
        last = ledger.versions[max(ledger.versions)]
        assert set(last.values()) == {len(point_groups)}, f"point {point}: count {set(last.values())}"
        assert len(ledger.reports) == len(point_groups)


class TrafficSender(threading.Thread):
    """Produces the traffic's raw records at a steady rate, as the intake would; with ``pause_at``, it waits there
    until ``resume`` is set, so that a slow machine cannot let the traffic end before the fault it is meant for."""

    def __init__(self, settings: Settings, traffic: list[TruthReport], rate_per_s: float = RATE_PER_S,
                 pause_at: int | None = None) -> None:
        super().__init__(daemon=True)
        self.settings, self.traffic, self.rate_per_s, self.pause_at = settings, traffic, rate_per_s, pause_at
        self.sent = 0
        self.resume = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = new_producer(self.settings, Role.ADMIN, "tests", acks="all")
        topics = Topics(self.settings.topic_namespace)
        try:
            for report in self.traffic:
                if self.sent == self.pause_at and not self.resume.wait(timeout=300):
                    raise TimeoutError("nobody resumed the traffic")
                topic, key, value, headers = report.raw_record(topics)
                producer.send(topic, key=key, value=value, headers=headers)
                self.sent += 1
                time.sleep(1 / self.rate_per_s)
            producer.flush(timeout=30)
        except BaseException as error:  # noqa: BLE001 (surfaced by the test)
            self.error = error
        finally:
            producer.close()


def fault_traffic(seed: int) -> list[TruthReport]:
    shape = TrafficShape(points=45, max_reports_per_point=7, retry_rate=0.15, resubmission_rate=0.15,
                         network_always_phone=True, start=datetime.now(UTC) - timedelta(hours=26))
    return ground_truth_traffic(shape, seed=seed)


def routed(settings: Settings, port: int | None = None) -> float:
    url = f"http://{settings.metrics_host}:{port or settings.worker_metrics_port}/metrics"
    try:
        return metric(scrape(url), "signalements_stage_records_in_total", stage="route")
    except httpx.HTTPError:  # the worker is not serving yet
        return 0


def fault_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    # A short throttle, so that updates both go out at once and accumulate while the traffic flows.
    # A short session timeout, so that a killed worker's partitions are given to its successor within seconds.
    settings = make_settings(kafka_bootstrap, tmp_path, dedup_update_throttle_s=1.0, worker_session_timeout_s=10.0)
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    return settings


def kill_9_and_restart(services: Services) -> None:
    worker = services.processes["worker"]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    # Same state directory: after a kill the worker drops its local tables and rebuilds them from the changelog.
    services.start("worker", "worker")


def final_ledgers(settings: Settings, traffic: list[TruthReport]) -> dict[str, CaseLedger]:
    """Every unit queue's cases once every report has arrived and pending throttled updates have gone out."""
    wait_for_every_report(settings, traffic)
    time.sleep(3)
    return case_ledgers(settings, {t.unit_id for t in traffic})


def test_kill_9_in_the_middle_of_the_traffic_loses_and_duplicates_no_case(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = fault_settings(kafka_bootstrap, tmp_path)
    traffic = fault_traffic(seed=11)
    services = Services(settings.log_dir, services_environment(settings))
    sender = TrafficSender(settings, traffic)
    try:
        services.start("worker", "worker")
        sender.start()
        wait_for(lambda: routed(settings) >= len(traffic) / 3, timeout_s=180, what="a third of the traffic routed")
        kill_9_and_restart(services)
        sender.join(timeout=120)
        assert sender.error is None and sender.sent == len(traffic)
        ledgers = final_ledgers(settings, traffic)
    finally:
        services.stop()
    assert_one_case_per_point(traffic, ledgers)


def test_kill_9_before_the_first_offset_commit_loses_no_report(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A worker killed before it ever committed: its successor finds no committed offset on any partition.

    That is where faust-streaming and aiokafka leave a gap: records fetched while the tables recover are cleared from
    the stream's queues, and the seek "to the committed offset" that should fetch them again does nothing when there
    is none. The worker rewinds such partitions itself (streams/offset_rewind.py); this drives exactly that case.
    """
    settings = fault_settings(kafka_bootstrap, tmp_path).model_copy(update={"worker_commit_interval_s": 600.0})
    traffic = fault_traffic(seed=13)
    sender = TrafficSender(settings, traffic, rate_per_s=1000)
    sender.run()  # the whole backlog first: the restarted worker fetches it at once, while it recovers
    assert sender.error is None and sender.sent == len(traffic)
    services = Services(settings.log_dir, services_environment(settings))
    try:
        services.start("worker", "worker")
        wait_for(lambda: routed(settings) >= len(traffic) / 4, timeout_s=180, what="a quarter of the traffic routed")
        kill_9_and_restart(services)
        ledgers = final_ledgers(settings, traffic)
    finally:
        services.stop()
    assert_one_case_per_point(traffic, ledgers)


def test_rebalance_while_traffic_flows_loses_and_duplicates_no_case(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = fault_settings(kafka_bootstrap, tmp_path)
    traffic = fault_traffic(seed=12)
    first = Services(settings.log_dir, services_environment(settings))
    # The second worker is another machine: its own state directory and metrics port, the same consumer group.
    second_port = free_port()
    (tmp_path / "second").mkdir()
    second_env = {**services_environment(settings), "SIGNALEMENTS_STATE_DIR": str(tmp_path / "second"),
                  "SIGNALEMENTS_WORKER_METRICS_PORT": str(second_port)}
    second = Services(settings.log_dir / "second", second_env)
    # slow enough that the traffic still flows while the group rebalances twice; the last quarter waits for the
    # second worker to be ready, however long it takes on a loaded machine, and goes while the first one leaves
    sender = TrafficSender(settings, traffic, rate_per_s=8, pause_at=len(traffic) * 3 // 4)
    second_log = settings.log_dir / "second" / "worker.log"
    try:
        first.start("worker", "worker")
        sender.start()
        wait_for(lambda: routed(settings) >= len(traffic) / 5, timeout_s=180, what="a fifth of the traffic routed")
        assert sender.sent < len(traffic) * 3 // 4, "the traffic reached its pause before the second worker joined"
        second.start("worker", "worker")
        wait_for(lambda: second_log.exists() and "Worker ready" in second_log.read_text(errors="replace"),
                 timeout_s=180, what="the second worker in the group with its partitions")
        sender.resume.set()
        # the first worker leaves while the last quarter flows: its partitions move to the second, state from the
        # changelog
        first.stop()
        sender.join(timeout=120)
        assert sender.error is None and sender.sent == len(traffic)
        ledgers = final_ledgers(settings, traffic)
    finally:
        first.stop()
        second.stop()
    assert_one_case_per_point(traffic, ledgers)
