"""The project's Prometheus metrics, one catalogue shared by every service.

Names follow Prometheus conventions (one ``signalements_`` prefix, ``_total`` counters, ``_seconds`` histograms).
Labels take bounded values only: stage, channel, outcome, reason, force. Never a report id or a unit id.
Each service builds one ``PipelineMetrics`` on its own registry and passes it to what it runs.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from schemas.envelope import SCHEMA_VERSION

# From 5 ms to 5 min: a report should reach its unit in well under a second, but a backed-up queue must still show.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Stage(StrEnum):
    INTAKE = "intake"
    NORMALIZE = "normalize"
    ENRICH = "enrich"
    ROUTE = "route"
    CONSUME = "consume"


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
        self.dead_letters = Counter(
            "signalements_dead_letters", "Records sent to the dead-letter topic, by stage and reason",
            ["stage", "reason"], registry=r,
        )
        self.unrouted = Counter(
            "signalements_unrouted_reports", "Valid reports with no competent unit, by reason", ["reason"], registry=r
        )
        self.dedup_outcomes = Counter(
            "signalements_dedup_outcomes", "Enriched reports by deduplication outcome (opened, merged, duplicate, resubmission)",
            ["outcome"], registry=r,
        )
        self.cases_opened = Counter(
            "signalements_cases_opened", "case.opened events sent to unit queues", ["force"], registry=r
        )
        self.cases_updated = Counter(
            "signalements_cases_updated", "case.updated events sent to unit queues", ["force"], registry=r
        )
        self.dedup_state_entries = Gauge(
            "signalements_dedup_state_entries", "Entries in the deduplication state of this worker's partitions (estimate)",
            registry=r,
        )
        self.case_updates_throttled = Counter(
            "signalements_case_updates_throttled",
            "Reports merged into a case that had an event less than the throttle interval ago (sent later, accumulated)",
            registry=r,
        )
        self.build_info = Gauge(
            "signalements_build_info", "Versions of the running service (value is always 1)",
            ["version", "schema_version", "reference_version"], registry=r,
        )

    def set_build_info(self, version: str, reference_version: str = "") -> None:
        self.build_info.labels(version, str(SCHEMA_VERSION), reference_version).set(1)

    def serve(self, host: str, port: int) -> None:
        """Expose ``/metrics`` on its own HTTP port (for services that have no web server of their own)."""
        start_http_server(port, addr=host, registry=self.registry)
