"""The national statistics consumer: every unit queue (a topic pattern) into open and handled points.

One row per dealing point (case id): its département, force and month of opening (Europe/Paris), its report count,
and, once a unit closed it, how and in which month. Applying an event is idempotent by nature (an opening inserts
the point if it is new, a handling sets its outcome, every event of the case raises its report count to the count
the event carries, never lowers it), so a replay or a transfer (the same case id opened on another unit's queue)
never counts a point, or a report, twice. Offsets are committed after the store, as in the unit consumer.
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
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, case, func, select, text, update

from consumers.case_store import create_store_engine, insert_ignore
from consumers.paris_time import paris_month
from consumers.store_schema import migrate, utc_now
from consumers.unit_consumer import Unreadable, read_unit_event
from schemas.envelope import DecodedEvent
from schemas.events import CaseHandled, CaseLinked, CaseOpened, CaseOutcome, CaseUpdated
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
    # Version 2: the reports of the point, the highest report count its events carried (a case.updated is
    # throttled, so the count may lag by the worker's SIGNALEMENTS_DEDUP_UPDATE_THROTTLE_S).
    Column("reports", Integer, nullable=False),
)
VERSION_2_POINT_COLUMNS = ("reports",)


def _create_version_1(connection: Connection) -> None:
    # The table object has today's shape: version 1 is created without the columns later versions add.
    version_1 = [Column(column.name, column.type, primary_key=column.primary_key, nullable=column.nullable,
                        index=column.index) for column in points.columns if column.name not in VERSION_2_POINT_COLUMNS]
    Table(points.name, MetaData(), *version_1).create(connection, checkfirst=True)


def _add_point_reports(connection: Connection) -> None:
    """Version 2: each point's report count; a point counted before it has its opening's one report."""
    connection.execute(text("ALTER TABLE points ADD COLUMN reports INTEGER NOT NULL DEFAULT 1"))


STATS_MIGRATIONS = [(1, _create_version_1), (2, _add_point_reports)]


class DepartementRank(BaseModel):
    rank: int
    departement: str
    open_points: int
    dismantled: int
    unfounded: int
    total_points: int
    reports: int  # the reports of the département's points (a report joining a point counts in the point's)


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
            added = self._add_point(connection, payload.case_id, jurisdiction.departement, jurisdiction.force.value,
                                    paris_month(payload.opened_at), payload.report_count)
            return added or self._raise_reports(connection, payload.case_id, payload.report_count)
        if isinstance(payload, CaseUpdated | CaseLinked):
            # Reports joining a point (a link is the owner's case): counted once the point is, never a point alone.
            return self._raise_reports(connection, payload.case_id, payload.report_count)
        if isinstance(payload, CaseHandled):
            # A handling read before its opening (another unit's queue after a transfer) still counts the point.
            added = self._add_point(connection, payload.case_id, payload.departement, payload.force.value,
                                    paris_month(payload.opened_at), payload.report_count)
            raised = self._raise_reports(connection, payload.case_id, payload.report_count)
            if payload.outcome not in CLOSING_OUTCOMES:
                return added or raised  # a transfer moves the point to another unit: it stays open
            changed = connection.execute(
                update(points)
                .where(points.c.case_id == payload.case_id, points.c.status == OPEN)
                .values(status=payload.outcome.value, handled_month=paris_month(payload.handled_at),
                        updated_at=utc_now())
            ).rowcount
            return added or raised or changed > 0
        return False

    def _add_point(self, connection: Connection, case_id: str, departement: str, force: str, month: str,
                   reports: int) -> bool:
        return insert_ignore(connection, points, {
            "case_id": case_id, "departement": departement, "force": force, "opened_month": month, "status": OPEN,
            "handled_month": None, "updated_at": utc_now(), "reports": reports,
        })

    def _raise_reports(self, connection: Connection, case_id: str, report_count: int) -> bool:
        """The point's report count up to the one an event of its case carries (events may come out of order)."""
        return connection.execute(
            update(points)
            .where(points.c.case_id == case_id, points.c.reports < report_count)
            .values(reports=report_count, updated_at=utc_now())
        ).rowcount > 0

    def departement_ranking(self) -> list[DepartementRank]:
        open_points = func.sum(case((points.c.status == OPEN, 1), else_=0))
        query = (
            select(
                points.c.departement, open_points.label("open_points"),
                func.sum(case((points.c.status == CaseOutcome.DISMANTLED.value, 1), else_=0)).label("dismantled"),
                func.sum(case((points.c.status == CaseOutcome.UNFOUNDED.value, 1), else_=0)).label("unfounded"),
                func.count().label("total_points"),
                func.sum(points.c.reports).label("reports"),
            )
            .group_by(points.c.departement)
            .order_by(open_points.desc(), points.c.departement)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [DepartementRank(rank=i, departement=str(row["departement"]), open_points=int(row["open_points"]),
                                dismantled=int(row["dismantled"]), unfounded=int(row["unfounded"]),
                                total_points=int(row["total_points"]), reports=int(row["reports"]))
                for i, row in enumerate(rows, start=1)]

    def last_change(self) -> str | None:
        """When a figure last changed (ISO UTC), None for an empty store."""
        with self.engine.connect() as connection:
            return connection.scalar(select(func.max(points.c.updated_at)))

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
