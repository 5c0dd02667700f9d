"""The project's Prometheus metrics, one catalogue shared by every service.

Names follow Prometheus conventions (one ``signalements_`` prefix, ``_total`` counters, ``_seconds`` histograms).
Labels take bounded values only: stage, channel, outcome, reason, force, departement, group_kind. Never a report id
or a unit id: a unit's own figures belong to its consumer service, not to the pipeline's shared metrics.
Each service builds one ``PipelineMetrics`` on its own registry and passes it to what it runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from enum import StrEnum
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from schemas.envelope import SCHEMA_VERSION

# From 5 ms to 5 min: a report should reach its unit in well under a second, but a backed-up queue must still show.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Stage(StrEnum):
    INTAKE = "intake"
    NORMALIZE = "normalize"
    DEDUP = "dedup"
    ENRICH = "enrich"
    ROUTE = "route"
    CONSUME = "consume"


class GroupKind(StrEnum):
    """The two kinds of consumer group whose lag the lag exporter reports (ops/lag_exporter.py)."""

    WORKER = "worker"
    UNIT_CONSUMER = "unit-consumer"


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Counter(
            "signalements_stage_records_in", "Records taken in by a stage", ["stage", "channel"], registry=r
        )
        self.records_out = Counter(
            "signalements_stage_records_out",
            "Records a stage passed on, by outcome (e.g. accepted, normalized, routed, unrouted, stored, duplicate)",
            ["stage", "channel", "outcome"],
            registry=r,
        )
        self.records_failed = Counter(
            "signalements_stage_records_failed", "Records a stage could not process, by reason",
            ["stage", "channel", "reason"], registry=r,
        )
        self.stage_duration = Histogram(
            "signalements_stage_duration_seconds", "Time a stage spends on one record", ["stage"],
            buckets=STAGE_BUCKETS, registry=r,
        )
        self.routing_latency = Histogram(
            "signalements_routing_latency_seconds",
            "From intake acceptance to the case event's acknowledgement on the unit queue",
            ["channel", "force"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.end_to_end_latency = Histogram(
            "signalements_end_to_end_latency_seconds",
            "From intake acceptance to storage by the unit consumer",
            ["channel", "force"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.intake_produce_duration = Histogram(
            "signalements_intake_produce_duration_seconds",
            "Time the intake waits for Kafka to acknowledge one record (acks=all)",
            ["channel"], buckets=STAGE_BUCKETS, registry=r,
        )
        self.intake_auth_refused = Counter(
            "signalements_intake_auth_refused",
            "Reports the intake refused for their credential (401 missing or unknown key, 403 channel not allowed)",
            ["client", "channel", "reason"], registry=r,
        )
        self.dead_letters = Counter(
            "signalements_dead_letters", "Records sent to the dead-letter topic, by stage and reason",
            ["stage", "reason"], registry=r,
        )
        self.unrouted = Counter(
            "signalements_unrouted_reports", "Valid reports with no competent unit, by reason", ["reason"], registry=r
        )
        self.positions_outside_commune = Counter(
            "signalements_positions_outside_commune",
            "Reports resolved by their code or name whose position is kilometres outside that commune (flagged)",
            ["channel"], registry=r,
        )
        # Deduplication (the route stage merges reports about one point into one case). The outcomes are bounded:
        # opened (a new case), merged (a new report joined an open case), duplicate (the same submission again),
        # resubmission (the same person's same report again).
        self.dedup_outcomes = Counter(
            "signalements_dedup_outcomes", "Reports by deduplication outcome", ["channel", "outcome"], registry=r
        )
        self.cases_opened = Counter(
            "signalements_cases_opened", "Cases opened, by force and département of the competent unit",
            ["force", "departement"], registry=r,
        )
        self.cases_updated = Counter(
            "signalements_cases_updated", "Updates of open cases (a report merged), by force and département",
            ["force", "departement"], registry=r,
        )
        self.cases_linked = Counter(
            "signalements_cases_linked",
            "Reports merged into another unit's case (its unit told by case.linked), by force and département of the "
            "report's unit", ["force", "departement"], registry=r,
        )
        self.open_cases = Gauge(
            "signalements_open_cases", "Open cases in the unit stores a consumer process serves, by force and département",
            ["force", "departement"], registry=r,
        )
        self.dedup_state_entries = Gauge(
            "signalements_dedup_state_entries", "Open cases the deduplication state holds (all units)", registry=r
        )
        self.recovery_remaining = Gauge(
            "signalements_worker_recovery_remaining_records",
            "Changelog records the worker has still to read: active (its partitions wait for them) or standby "
            "(its copies of other workers' partitions, for a quick takeover)",
            ["partition_role"], registry=r,
        )
        self.case_updates_throttled = Counter(
            "signalements_case_updates_throttled",
            "Case updates held back because the case was updated very recently", registry=r,
        )
        # Consumer lag, from Kafka offsets (the lag exporter). Unit consumer groups are summed by force and
        # département, never labelled by unit; the max says whether any single unit's queue is backing up.
        self.consumer_lag = Gauge(
            "signalements_consumer_lag_records",
            "Records on the topics not yet committed by the consumer groups (end offset - committed offset)",
            ["group_kind", "stage", "force", "departement"], registry=r,
        )
        self.consumer_lag_max = Gauge(
            "signalements_consumer_lag_max_records",
            "The largest lag of a single consumer group of this kind (e.g. the most backed-up unit queue)",
            ["group_kind", "stage"], registry=r,
        )
        self.consumer_groups = Gauge(
            "signalements_consumer_groups", "Consumer groups whose lag is measured", ["group_kind"], registry=r
        )
        self.lag_collected = Gauge(
            "signalements_lag_collected_timestamp_seconds", "When the lag was last read from Kafka successfully",
            registry=r,
        )
        self.lag_collection_errors = Counter(
            "signalements_lag_collection_errors", "Failed reads of the consumer lag from Kafka, by reason",
            ["reason"], registry=r,
        )
        self.reference_updates = Counter(
            "signalements_reference_updates",
            "Competence rows a worker took from the reference topic, by outcome (applied, unchanged, invalid)",
            ["outcome"], registry=r,
        )
        self.kafka_connected = Gauge(
            "signalements_kafka_connected",
            "1 while the service's last exchange with Kafka succeeded, 0 while it is cut off (it keeps retrying)",
            registry=r,
        )
        self.build_info = Gauge(
            "signalements_build_info", "Versions of the running service (value is always 1)",
            ["version", "schema_version", "reference_version"], registry=r,
        )

    def set_build_info(self, version: str, reference_version: str = "") -> None:
        self.build_info.labels(version, str(SCHEMA_VERSION), reference_version).set(1)

    def serve(self, host: str, port: int, readiness: Readiness | None = None) -> None:
        """``/metrics``, ``/healthz`` and ``/readyz`` on their own HTTP port, for services without a web server.

        ``/healthz`` says the process is alive; ``/readyz`` answers 503 with the reason while ``readiness`` names
        one (cut off from Kafka), so a supervisor restarts a dead service but leaves a waiting one alone.
        """
        server = make_server(host, port, _service_routes(self.registry, readiness), _ThreadingServer, _QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()


# What makes a service not ready, or None when it is.
Readiness = Callable[[], str | None]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's name)
        """Prometheus scrapes every few seconds: no access log."""


def _service_routes(registry: CollectorRegistry, readiness: Readiness | None) -> Callable[..., Iterable[bytes]]:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "alive"})
        if path == "/readyz":
            reason = readiness() if readiness else None
            if reason is None:
                return _json(start_response, "200 OK", {"status": "ready"})
            return _json(start_response, "503 Service Unavailable", {"status": "not ready", "detail": reason})
        served: Iterable[bytes] = metrics_app(environ, start_response)
        return served

    return app


def _json(start_response: Callable[..., Any], status: str, body: dict[str, str]) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class ConsumerMetrics:
    """What a per-unit consumer process (and the national statistics consumer) exposes beside PipelineMetrics.

    No unit id label, even though a consumer process serves named units: a process may serve a whole
    département's units, and the per-group lag of every unit is the lag exporter's job. ``partition`` is bounded
    by the unit topics' partition count; with several units in one process the lag of a partition is summed over
    them.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.events = Counter(
            "signalements_consumer_events",
            "Case events read from unit queues, by event type (case.opened, case.updated, case.handled) and outcome"
            " (stored, updated, handled, held, duplicate, parked)",
            ["event_type", "outcome"], registry=r,
        )
        self.parked = Counter(
            "signalements_consumer_parked_events",
            "Events parked because they could not be read (unknown schema version, unreadable payload...), by reason",
            ["reason"], registry=r,
        )
        self.lag = Gauge(
            "signalements_unit_consumer_lag_records",
            "Records on the unit queues not yet read by this process, by partition (summed over its units)",
            ["partition"], registry=r,
        )
        self.store_duration = Histogram(
            "signalements_consumer_store_transaction_seconds",
            "Time to apply one polled batch to the case store and commit it, by store backend (sqlite, postgresql)",
            ["backend"], buckets=STAGE_BUCKETS, registry=r,
        )
