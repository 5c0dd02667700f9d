"""Consumer lag from Kafka offsets, exported under the project's metric names (``signalements lag-exporter``).

Lag is read from the broker, not from the consumers themselves, so a stopped or stuck consumer still shows its queue
growing. Every ``lag_exporter_interval_s`` the exporter asks Kafka, with kafka-python's ``KafkaAdminClient``:

- ``list_topics`` + ``describe_topics``: the worker's input topics and every unit queue (``unit.<unit_id>``);
- ``list_partition_offsets`` with ``OffsetSpec.LATEST`` / ``EARLIEST``: end and start offset of each partition;
- ``list_group_offsets``: the committed offsets of the Faust worker's group and of each ``unit-consumer.<unit_id>``.

Lag of a partition = end offset - committed offset; a partition the group never committed counts everything it still
holds (end - earliest), which is what a consumer with ``auto_offset_reset=earliest`` will have to read.
The worker's lag is split by the stage reading the topic; unit groups are summed by force and département, and the
largest single unit's lag is exported separately, so no unit id ever becomes a label.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError
from prometheus_client import Gauge

from schemas.channels import Channel
from schemas.topics import Topics
from signalements.kafka_clients import close_quietly, new_admin
from signalements.kafka_link import KafkaLink, readiness_of
from signalements.kafka_security import Role, check_access
from signalements.metrics import GroupKind, PipelineMetrics, Stage
from signalements.settings import Settings

log = logging.getLogger(__name__)

UNIT_CONSUMER_GROUP_PREFIX = "unit-consumer."  # consumers/unit_consumer.py names each unit's group this way
FORCE_OF_UNIT_PREFIX = {"pn": "PN", "gn": "GN", "cross": "CROSS"}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class UnitPlace:
    """The bounded labels a unit's lag is summed under."""

    force: str
    departement: str


@dataclass(frozen=True)
class GroupLag:
    group_kind: GroupKind
    group_id: str
    stage: Stage
    place: UnitPlace
    lag: int


def unit_places_from_reference(settings: Settings) -> dict[str, UnitPlace]:
    """Force and département of each unit of the jurisdiction reference (a unit covering several départements, like
    the Préfecture de police, is counted under the lowest one, so every unit has exactly one place)."""
    from streams.jurisdiction import JurisdictionReference

    reference = JurisdictionReference.from_settings(settings)
    places: dict[str, UnitPlace] = {}
    for commune in sorted(reference.communes, key=lambda c: c.code):
        places.setdefault(commune.unit_id, UnitPlace(str(commune.force.value), commune.departement))
    return places


def place_of_unit(unit_id: str, places: dict[str, UnitPlace]) -> UnitPlace:
    """A unit missing from the reference (e.g. created by a newer worker) still gets its force from its id prefix."""
    known = places.get(unit_id)
    if known is not None:
        return known
    prefix, _, rest = unit_id.partition("-")
    if prefix == "cross":  # a CROSS serves exactly its département, named in its id
        return UnitPlace(FORCE_OF_UNIT_PREFIX[prefix], rest.upper())
    return UnitPlace(FORCE_OF_UNIT_PREFIX.get(prefix, UNKNOWN), UNKNOWN)


class ConsumerLagReader:
    """Reads the lag of the pipeline's consumer groups (one namespace) from the broker's offsets."""

    def __init__(self, settings: Settings, admin: KafkaAdminClient, places: dict[str, UnitPlace]) -> None:
        self.settings = settings
        self.admin = admin
        self.places = places
        self.topics = Topics(settings.topic_namespace)
        self.worker_group = settings.consumer_group(settings.worker_id)
        # The stage of the worker that reads each of its input topics.
        self.worker_stages = {self.topics.raw(channel): Stage.NORMALIZE for channel in Channel}
        self.worker_stages[self.topics.normalized] = Stage.ENRICH
        self.worker_stages[self.topics.enriched] = Stage.ROUTE

    def unit_topics(self, existing: Iterable[str]) -> dict[str, str]:
        """Unit queue topic -> unit id, for every unit queue that exists on the cluster."""
        prefix = self.topics.namespace + "unit."
        return {topic: topic[len(prefix):] for topic in existing if topic.startswith(prefix)}

    def read(self) -> list[GroupLag]:
        existing = set(self.admin.list_topics())
        unit_topics = self.unit_topics(existing)
        worker_topics = [topic for topic in self.worker_stages if topic in existing]
        partitions = self._partitions(worker_topics + sorted(unit_topics))
        latest = self.admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
        earliest = self.admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions})
        unit_groups = {topic: self.settings.consumer_group(UNIT_CONSUMER_GROUP_PREFIX + unit) for topic, unit in
                       unit_topics.items()}
        committed = self.admin.list_group_offsets({group: None for group in [self.worker_group, *unit_groups.values()]})

        def partition_lag(group: str, tp: TopicPartition) -> int:
            offset = committed.get(group, {}).get(tp)
            start: int = offset.offset if offset is not None and offset.offset >= 0 else earliest[tp].offset
            end: int = latest[tp].offset
            return max(0, end - start)

        lags: list[GroupLag] = []
        worker_place = UnitPlace("", "")
        for topic in worker_topics:
            stage = self.worker_stages[topic]
            lag = sum(partition_lag(self.worker_group, tp) for tp in partitions if tp.topic == topic)
            lags.append(GroupLag(GroupKind.WORKER, self.worker_group, stage, worker_place, lag))
        for topic, group in unit_groups.items():
            lag = sum(partition_lag(group, tp) for tp in partitions if tp.topic == topic)
            place = place_of_unit(unit_topics[topic], self.places)
            lags.append(GroupLag(GroupKind.UNIT_CONSUMER, group, Stage.CONSUME, place, lag))
        return lags

    def _partitions(self, topics: list[str]) -> list[TopicPartition]:
        if not topics:
            return []
        return [
            TopicPartition(described["name"], partition["partition_index"])
            for described in self.admin.describe_topics(topics)
            for partition in described["partitions"]
        ]


class LagPublisher:
    """Puts a lag reading into the catalogue's gauges, removing label sets that disappeared since the last one."""

    def __init__(self, metrics: PipelineMetrics) -> None:
        self.metrics = metrics
        self._published: dict[str, set[tuple[str, ...]]] = defaultdict(set)

    def publish(self, lags: list[GroupLag]) -> None:
        summed: dict[tuple[str, ...], int] = defaultdict(int)
        largest: dict[tuple[str, ...], int] = defaultdict(int)
        groups: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for lag in lags:
            summed[(lag.group_kind.value, lag.stage.value, lag.place.force, lag.place.departement)] += lag.lag
            key = (lag.group_kind.value, lag.stage.value)
            largest[key] = max(largest[key], lag.lag)
            groups[(lag.group_kind.value,)].add(lag.group_id)
        self._replace("lag", self.metrics.consumer_lag, summed)
        self._replace("max", self.metrics.consumer_lag_max, largest)
        self._replace("groups", self.metrics.consumer_groups, {k: len(v) for k, v in groups.items()})

    def _replace(self, name: str, gauge: Gauge, values: dict[tuple[str, ...], int]) -> None:
        for stale in self._published[name] - set(values):
            gauge.remove(*stale)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        self._published[name] = set(values)


def collect_once(reader: ConsumerLagReader, publisher: LagPublisher, metrics: PipelineMetrics) -> bool:
    """One reading; a broker error is counted and logged, and the previous values stay until the next success
    (the ``signalements_lag_collected_timestamp_seconds`` gauge says how old they are)."""
    try:
        lags = reader.read()
    except Exception as error:  # kafka-python raises more than KafkaError while its broker flaps
        metrics.lag_collection_errors.labels(type(error).__name__).inc()
        log.warning("reading consumer lag failed: %s", type(error).__name__,
                    exc_info=None if isinstance(error, KafkaError) else error)
        return False
    publisher.publish(lags)
    metrics.lag_collected.set_to_current_time()
    return True


def run_lag_exporter(settings: Settings, stop: threading.Event) -> None:
    """Read the lag every interval until ``stop``; while Kafka is away, keep serving the last values and retry
    with a new admin client each time (one that lost its broker may never get its metadata back)."""
    from signalements import __version__

    places = unit_places_from_reference(settings)
    metrics = PipelineMetrics()
    metrics.set_build_info(__version__)
    link = KafkaLink(metrics.kafka_connected, "lag exporter")
    publisher = LagPublisher(metrics)
    metrics.serve(settings.metrics_host, settings.lag_exporter_port, readiness_of(link))
    check_access(settings, Role.MONITORING)
    log.info("lag exporter on %s:%d, reading %s every %.1fs", settings.metrics_host,
             settings.lag_exporter_port, settings.bootstrap_servers, settings.lag_exporter_interval_s)
    admin: KafkaAdminClient | None = None
    try:
        while not stop.is_set():
            try:
                if admin is None:
                    admin = new_admin(settings, Role.MONITORING, "signalements-lag-exporter")
            except KafkaError as error:
                metrics.lag_collection_errors.labels(type(error).__name__).inc()
                link.down(f"cannot connect: {type(error).__name__}")
            else:
                if collect_once(ConsumerLagReader(settings, admin, places), publisher, metrics):
                    link.up()
                else:
                    link.down("reading the offsets failed")
                    _close_admin(admin)
                    admin = None
            stop.wait(settings.lag_exporter_interval_s)
    finally:
        if admin is not None:
            _close_admin(admin)


def _close_admin(admin: KafkaAdminClient) -> None:
    close_quietly(admin.close, "the lag exporter's admin client")
