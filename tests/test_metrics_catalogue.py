"""The metrics catalogue (signalements/metrics.py) follows the project's conventions and docs/monitoring.md documents it."""

from __future__ import annotations

import re

from prometheus_client.metrics import MetricWrapperBase

from signalements.metrics import ConsumerMetrics, PipelineMetrics
from signalements.settings import PROJECT_ROOT

ALLOWED_LABELS = {
    "stage", "channel", "outcome", "reason", "force", "departement", "group_kind",
    "version", "schema_version", "reference_version",
    # The unit consumer's own: case event types (opened, updated, handled), its queues' partitions, store backend.
    "event_type", "partition", "backend",
    # The worker's changelog partitions: active or standby.
    "partition_role",
    # The intake's integrated clients: a handful, named by the operator (a key no client holds counts as "unknown").
    "client",
}


def catalogue() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Exposed name (with the `_total` of counters) -> (type, label names)."""
    pipeline = PipelineMetrics()
    # The unit consumer's own metrics are part of the catalogue too, on the same registry as the shared ones.
    consumer = ConsumerMetrics(pipeline.registry)
    metrics = [
        m for group in (pipeline, consumer) for m in vars(group).values() if isinstance(m, MetricWrapperBase)
    ]
    entries: dict[str, tuple[str, tuple[str, ...]]] = {}
    for metric in metrics:
        # The client has no public accessor for a metric's type, name and label names.
        kind = str(metric._type)  # noqa: SLF001
        name = str(metric._name) + ("_total" if kind == "counter" else "")  # noqa: SLF001
        entries[name] = (kind, tuple(metric._labelnames))  # noqa: SLF001
    return entries


def test_names_and_labels_follow_the_conventions() -> None:
    for name, (kind, labels) in catalogue().items():
        assert name.startswith("signalements_"), name
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
        assert set(labels) <= ALLOWED_LABELS, f"{name}: unbounded or unknown labels {set(labels) - ALLOWED_LABELS}"


def test_the_documented_table_is_the_catalogue() -> None:
    readme = (PROJECT_ROOT / "docs" / "monitoring.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(signalements_\w+)` \| (\w+) \|([^|]*)\|", readme, flags=re.MULTILINE)
    documented = {name: (kind, tuple(label.strip() for label in labels.split(",") if label.strip())) for name, kind, labels in rows}
    assert documented == catalogue()
