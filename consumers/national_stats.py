"""The national statistics consumer: every unit queue (a topic pattern) into open and handled points.

One row per dealing point (case id): its département, force and month of opening, and, once a unit closed it, how
and in which month. Applying an event is idempotent by nature (an opening inserts the point if it is new, a handling
sets its outcome), so a replay or a transfer (the same case id opened on another unit's queue) never counts a point
twice. Offsets are committed after the store, as in the unit consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import BaseModel
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, case, func, select, update

from consumers.case_store import create_store_engine, insert_ignore
from consumers.store_schema import migrate, utc_now
from consumers.unit_consumer import Unreadable, read_unit_event
from schemas.envelope import DecodedEvent
from schemas.events import CaseHandled, CaseOpened, CaseOutcome
from schemas.topics import Topics
from signalements.commit_after_store import CommitAfterStore
from signalements.kafka_clients import new_consumer
from signalements.kafka_link import KafkaLink
from signalements.kafka_security import Role
from signalements.metrics import ConsumerMetrics, PipelineMetrics
from signalements.settings import Settings

log = logging.getLogger(__name__)

OPEN = "open"
CLOSING_OUTCOMES = (CaseOutcome.DISMANTLED, CaseOutcome.UNFOUNDED)

stats_metadata = MetaData()
stats_schema_migrations = Table(
    "stats_schema_migrations", stats_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", String, nullable=False),
)
points = Table(
    "points", stats_metadata,
    Column("case_id", String, primary_key=True),
    Column("departement", String, nullable=False, index=True),
    Column("force", String, nullable=False),
    Column("opened_month", String, nullable=False),
    Column("status", String, nullable=False),
    Column("handled_month", String, nullable=True),
    Column("updated_at", String, nullable=False),
)


def _create_version_1(connection: Connection) -> None:
    stats_metadata.create_all(connection, tables=[points])


STATS_MIGRATIONS = [(1, _create_version_1)]


class DepartementRank(BaseModel):
    rank: int
    departement: str
    open_points: int
    dismantled: int
    unfounded: int
    total_points: int


class MonthlyFigures(BaseModel):
    month: str
    force: str
    opened: int
    dismantled: int
    unfounded: int


@dataclass
class NationalStatsStore:
    engine: Engine

    @classmethod
    def open(cls, url: str) -> NationalStatsStore:
        engine = create_store_engine(url)
        with engine.begin() as connection:
            migrate(connection, STATS_MIGRATIONS, stats_schema_migrations)
        return cls(engine)

    def apply(self, connection: Connection, decoded: DecodedEvent) -> bool:
        """Count one event; True when it changed a figure."""
        payload = decoded.payload
        if isinstance(payload, CaseOpened):
            jurisdiction = payload.report.jurisdiction
            return self._add_point(connection, payload.case_id, jurisdiction.departement, jurisdiction.force.value,
                                   payload.opened_at.strftime("%Y-%m"))
        if isinstance(payload, CaseHandled):
            # A handling read before its opening (another unit's queue after a transfer) still counts the point.
            added = self._add_point(connection, payload.case_id, payload.departement, payload.force.value,
                                    payload.opened_at.strftime("%Y-%m"))
            if payload.outcome not in CLOSING_OUTCOMES:
                return added  # a transfer moves the point to another unit: it stays open
            changed = connection.execute(
                update(points)
                .where(points.c.case_id == payload.case_id, points.c.status == OPEN)
                .values(status=payload.outcome.value, handled_month=payload.handled_at.strftime("%Y-%m"),
                        updated_at=utc_now())
            ).rowcount
            return added or changed > 0
        return False  # updates add reports, not points

    def _add_point(self, connection: Connection, case_id: str, departement: str, force: str, month: str) -> bool:
        return insert_ignore(connection, points, {
            "case_id": case_id, "departement": departement, "force": force, "opened_month": month, "status": OPEN,
            "handled_month": None, "updated_at": utc_now(),
        })

    def departement_ranking(self) -> list[DepartementRank]:
        open_points = func.sum(case((points.c.status == OPEN, 1), else_=0))
        query = (
            select(
                points.c.departement, open_points.label("open_points"),
                func.sum(case((points.c.status == CaseOutcome.DISMANTLED.value, 1), else_=0)).label("dismantled"),
                func.sum(case((points.c.status == CaseOutcome.UNFOUNDED.value, 1), else_=0)).label("unfounded"),
                func.count().label("total_points"),
            )
            .group_by(points.c.departement)
            .order_by(open_points.desc(), points.c.departement)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [DepartementRank(rank=i, departement=str(row["departement"]), open_points=int(row["open_points"]),
                                dismantled=int(row["dismantled"]), unfounded=int(row["unfounded"]),
                                total_points=int(row["total_points"]))
                for i, row in enumerate(rows, start=1)]

    def monthly_series(self) -> list[MonthlyFigures]:
        figures: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"opened": 0, "dismantled": 0,
                                                                             "unfounded": 0})
        with self.engine.connect() as connection:
            for month, force, count in connection.execute(
                select(points.c.opened_month, points.c.force, func.count()).group_by(points.c.opened_month,
                                                                                      points.c.force)
            ):
                figures[(month, force)]["opened"] = int(count)
            for month, force, status, count in connection.execute(
                select(points.c.handled_month, points.c.force, points.c.status, func.count())
                .where(points.c.handled_month.is_not(None))
                .group_by(points.c.handled_month, points.c.force, points.c.status)
            ):
                figures[(month, force)][status] = int(count)
        return [MonthlyFigures(month=month, force=force, **counts) for (month, force), counts in sorted(figures.items())]

    def close(self) -> None:
        self.engine.dispose()


def stats_store_url(settings: Settings, database_url: str | None = None) -> str:
    if database_url or settings.stats_database_url:
        return database_url or settings.stats_database_url  # type: ignore[return-value]
    directory: Path = settings.state_dir / "stats"
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'national.sqlite3'}"


class NationalStatsConsumer:
    """Every unit queue into the statistics store; a failed session (the broker gone) is retried with new clients."""

    def __init__(self, settings: Settings, store: NationalStatsStore, metrics: ConsumerMetrics,
                 link: KafkaLink | None = None) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.link = link or KafkaLink(None, "national statistics")
        self.failure: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        CommitAfterStore("national statistics consumer", self._new_consumer, self._store_batch, self.link).run(stop)

    def _new_consumer(self) -> KafkaConsumer:
        consumer = new_consumer(
            self.settings, Role.NATIONAL_STATS, "national-stats",
            group_id=self.settings.consumer_group("national-stats"),
            auto_offset_reset="earliest",
            max_poll_records=1000,
            # Unit queues appear whenever the router meets a new unit: look for new ones every 5 s, not 5 min.
            metadata_max_age_ms=5000,
        )
        consumer.subscribe(pattern=Topics(self.settings.topic_namespace).unit_pattern)
        return consumer

    def _store_batch(self, records: list[ConsumerRecord]) -> None:
        started = time.perf_counter()
        counted: list[tuple[str, str]] = []
        with self.store.engine.begin() as connection:
            for record in records:
                try:
                    decoded = read_unit_event(record, None)
                except Unreadable as unreadable:
                    # The unit's own consumer parks the bytes; here it is only not counted (and says so).
                    log.warning("not counted %s[%d]@%d: %s", record.topic, record.partition, record.offset,
                                unreadable.code.value)
                    self.metrics.parked.labels(unreadable.code.value).inc()
                    continue
                changed = self.store.apply(connection, decoded)
                counted.append((decoded.event_type.name, "counted" if changed else "duplicate"))
        self.metrics.store_duration.labels(self.store.engine.dialect.name).observe(time.perf_counter() - started)
        for event_type, outcome in counted:
            self.metrics.events.labels(event_type, outcome).inc()


def start_national_stats(settings: Settings, store: NationalStatsStore, stop: threading.Event,
                         metrics: PipelineMetrics, link: KafkaLink | None = None) -> NationalStatsConsumer:
    """The statistics consumer in a background thread (the HTTP API serves from the same process).

    The consumer retries by itself through broker outages. Should it end for another reason, ``stop`` is set and
    its ``failure`` says why, so that the service exits non-zero rather than serve figures that no longer move.
    """
    consumer = NationalStatsConsumer(settings, store, ConsumerMetrics(metrics.registry), link)

    def run() -> None:
        try:
            consumer.run(stop)
        except BaseException as error:
            log.exception("the national statistics consumer cannot go on")
            consumer.failure = error
            stop.set()

    threading.Thread(target=run, name="national-stats", daemon=True).start()
    return consumer
