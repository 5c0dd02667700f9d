"""A unit's local case store: cases, their reports, held updates and the events it could not read.

SQLite by default (a file per unit, embedded, nothing to run), PostgreSQL when given a database URL: one schema
(consumers/store_schema.py) and one SQLAlchemy Core code path for both.

Events are applied idempotently: the id of every applied event is recorded in the same transaction as its effect,
so the same event twice changes nothing. An update (or a handling) that arrives before its case's opening is held
in ``held_events`` and applied, in version order, when the opening arrives: never lost, never applied twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, Table, create_engine, delete, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from consumers.store_schema import (
    applied_events,
    case_place,
    case_reports,
    cases,
    held_events,
    linked_reports,
    migrate,
    parked_events,
    utc_now,
    utc_text,
)
from schemas.envelope import CASE_HANDLED, CASE_LINKED, CASE_OPENED, CASE_UPDATED, DecodedEvent
from schemas.events import CaseHandled, CaseLinked, CaseOpened, CaseUpdated
from schemas.reports import EnrichedReport

OPEN = "open"
# Handlings carry no version: held ones are applied after every held update of their case.
HANDLING_ORDER = 2**31 - 1


class ApplyOutcome(StrEnum):
    STORED = "stored"          # a case opened
    UPDATED = "updated"        # reports added to a known case
    HANDLED = "handled"        # a case closed or transferred
    HELD = "held"              # waiting for its case's opening
    LINKED = "linked"          # a report of the unit's territory in another unit's case
    DUPLICATE = "duplicate"    # already applied (or already held): nothing changed


class CaseSort(StrEnum):
    REPORTS = "reports"
    LAST_SEEN = "last-seen"


class CaseSummary(BaseModel):
    unit_id: str
    case_id: str
    kind: str
    status: str
    case_version: int
    report_count: int
    commune_code: str
    commune_name: str
    departement: str
    force: str
    opened_at: str
    first_seen: str
    last_seen: str
    handled_at: str | None = None
    transferred_to: str | None = None
    place: str | None = None
    latitude: float | None = None
    longitude: float | None = None


class CaseCounts(BaseModel):
    """The figures at the top of a unit's desk."""

    open: int
    new_since: int  # cases opened since the given moment (the desk says: since yesterday at this time)
    handled_since: int  # cases handled since the given moment (the desk says: this month)


class CaseDetail(CaseSummary):
    channels: list[str]
    reports: list[EnrichedReport]


def store_url_for(database_url: str | None, store_dir: Path, unit_id: str) -> str:
    """The database URL of a unit: the given one (shared by units), else the unit's own SQLite file."""
    if database_url:
        return database_url
    store_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store_dir / f'{unit_id}.sqlite3'}"


def create_store_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver we ship, whatever URL style is given
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")  # first: the next pragmas may wait for another connection
        _use_write_ahead_log(cursor)  # operators read while the consumer writes
        cursor.execute("PRAGMA synchronous=FULL")  # a commit must survive a crash before offsets are committed
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        # Take the write lock up front: a deferred transaction that upgrades to writing can fail with "locked"
        # when an operator command writes at the same moment; an immediate one just waits its turn.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _use_write_ahead_log(cursor: Any, attempts: int = 100) -> None:
    """Switch the file to WAL once (the mode is stored in the file).

    The switch needs an exclusive lock and SQLite does not apply busy_timeout to it: when two processes open a new
    store at the same moment, one gets "database is locked" at once. It waits its turn here instead.
    """
    for _ in range(attempts):
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
            time.sleep(0.1)
    raise sqlite3.OperationalError("could not switch the case store to WAL: the database stayed locked")


_INSERT_IGNORE: dict[tuple[str, str], Any] = {}


def insert_ignore(connection: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert unless the primary key exists; True when a row was inserted."""
    dialect_name = connection.dialect.name
    statement = _INSERT_IGNORE.get((dialect_name, table.name))
    if statement is None:
        dialect = postgresql if dialect_name == "postgresql" else sqlite
        first_key = next(iter(table.primary_key.columns))
        # RETURNING rather than rowcount: drivers disagree on rowcount after ON CONFLICT DO NOTHING. Built once
        # without values (they go as parameters): building a statement per row cost more than the insert itself.
        statement = dialect.insert(table).on_conflict_do_nothing().returning(first_key)
        _INSERT_IGNORE[(dialect_name, table.name)] = statement
    return connection.execute(statement, values).first() is not None


class CaseWriter:
    """Applies events to one unit's cases inside one open transaction."""

    def __init__(self, connection: Connection, unit_id: str) -> None:
        self.connection = connection
        self.unit_id = unit_id

    def apply(self, decoded: DecodedEvent) -> ApplyOutcome:
        payload = decoded.payload
        if decoded.event_type == CASE_OPENED and isinstance(payload, CaseOpened):
            return self.apply_opened(decoded.event_id, payload)
        if decoded.event_type == CASE_UPDATED and isinstance(payload, CaseUpdated):
            return self.apply_updated(decoded.event_id, payload)
        if decoded.event_type == CASE_HANDLED and isinstance(payload, CaseHandled):
            return self.apply_handled(decoded.event_id, payload)
        if decoded.event_type == CASE_LINKED and isinstance(payload, CaseLinked):
            return self.apply_linked(decoded.event_id, payload)
        raise ValueError(f"not a case event: {decoded.event_type.ce_type}")

    def apply_opened(self, event_id: str, case: CaseOpened) -> ApplyOutcome:
        if not self._record_applied(event_id, case.case_id, CASE_OPENED.name, case.case_version):
            return ApplyOutcome.DUPLICATE
        jurisdiction, report = case.report.jurisdiction, case.report.report
        opened = insert_ignore(self.connection, cases, {
            "unit_id": self.unit_id, "case_id": case.case_id, "kind": report.kind.value, "status": OPEN,
            "case_version": case.case_version, "opened_at": utc_text(case.opened_at),
            "first_seen": utc_text(case.first_seen), "last_seen": utc_text(case.last_seen),
            "report_count": case.report_count, "channels": json.dumps(sorted(c.value for c in case.channels)),
            "commune_code": jurisdiction.commune_code, "commune_name": jurisdiction.commune_name,
            "departement": jurisdiction.departement, "force": jurisdiction.force.value,
            **case_place(report.place.model_dump(mode="json")),
        })
        self._add_report(case.case_id, case.report)
        self._release_held(case.case_id)
        return ApplyOutcome.STORED if opened else ApplyOutcome.DUPLICATE

    def apply_updated(self, event_id: str, update_event: CaseUpdated) -> ApplyOutcome:
        current = self._case_version(update_event.case_id)
        if current is None:
            # Not applied before either: an applied update implies its case exists.
            return self._hold(event_id, update_event.case_id, CASE_UPDATED.name, update_event.case_version, update_event)
        if not self._record_applied(event_id, update_event.case_id, CASE_UPDATED.name, update_event.case_version):
            return ApplyOutcome.DUPLICATE
        for report in update_event.new_reports:
            self._add_report(update_event.case_id, report)
        # Counts and times in an update are the case's totals so far: a late, older update only adds its reports.
        if update_event.case_version > current:
            self.connection.execute(
                update(cases).where(cases.c.unit_id == self.unit_id, cases.c.case_id == update_event.case_id).values(
                    case_version=update_event.case_version, report_count=update_event.report_count,
                    first_seen=func.min(cases.c.first_seen, utc_text(update_event.first_seen))
                    if self.connection.dialect.name == "sqlite"
                    else func.least(cases.c.first_seen, utc_text(update_event.first_seen)),
                    last_seen=utc_text(update_event.last_seen),
                    channels=json.dumps(sorted(c.value for c in update_event.channels)),
                )
            )
        return ApplyOutcome.UPDATED

    def apply_handled(self, event_id: str, handled: CaseHandled) -> ApplyOutcome:
        if self._case_version(handled.case_id) is None:
            return self._hold(event_id, handled.case_id, CASE_HANDLED.name, HANDLING_ORDER, handled)
        if not self._record_applied(event_id, handled.case_id, CASE_HANDLED.name, None):
            return ApplyOutcome.DUPLICATE
        self.connection.execute(
            update(cases).where(cases.c.unit_id == self.unit_id, cases.c.case_id == handled.case_id).values(
                status=handled.outcome.value, handled_at=utc_text(handled.handled_at),
                transferred_to=handled.transferred_to,
            )
        )
        return ApplyOutcome.HANDLED

    def apply_linked(self, event_id: str, linked: CaseLinked) -> ApplyOutcome:
        """A report of this unit's territory in another unit's case: kept beside the unit's own cases."""
        if not self._record_applied(event_id, linked.case_id, CASE_LINKED.name, None):
            return ApplyOutcome.DUPLICATE
        place = case_place(linked.report.report.place.model_dump(mode="json"))["place"]
        insert_ignore(self.connection, linked_reports, {
            "unit_id": self.unit_id, "case_id": linked.case_id, "report_id": linked.report.report.report_id,
            "owner_unit_id": linked.owner_unit_id, "owner_unit_name": linked.owner_unit_name,
            "linked_at": utc_text(linked.linked_at), "report_count": linked.report_count,
            "commune_name": linked.report.jurisdiction.commune_name, "place": place,
            "report": linked.report.model_dump_json(),
        })
        return ApplyOutcome.LINKED

    def park(
        self, *, topic: str, partition: int, offset: int, reason_code: str, reason: str,
        headers: dict[str, str], value: bytes | None,
    ) -> bool:
        return insert_ignore(self.connection, parked_events, {
            "topic": topic, "partition": partition, "offset": offset, "unit_id": self.unit_id,
            "reason_code": reason_code, "reason": reason, "headers": json.dumps(headers), "value": value,
            "parked_at": utc_now(),
        })

    def _record_applied(self, event_id: str, case_id: str, event_type: str, version: int | None) -> bool:
        return insert_ignore(self.connection, applied_events, {
            "unit_id": self.unit_id, "event_id": event_id, "case_id": case_id, "event_type": event_type,
            "case_version": version, "applied_at": utc_now(),
        })

    def _case_version(self, case_id: str) -> int | None:
        return self.connection.scalar(
            select(cases.c.case_version).where(cases.c.unit_id == self.unit_id, cases.c.case_id == case_id)
        )

    def _add_report(self, case_id: str, enriched: EnrichedReport) -> None:
        report = enriched.report
        insert_ignore(self.connection, case_reports, {
            "unit_id": self.unit_id, "case_id": case_id, "report_id": report.report_id,
            "channel": report.channel.value, "submitted_at": utc_text(report.submitted_at),
            "received_at": utc_text(report.received_at), "stored_at": utc_now(),
            "report": enriched.model_dump_json(),
        })

    def _hold(self, event_id: str, case_id: str, event_type: str, version: int, payload: BaseModel) -> ApplyOutcome:
        held = insert_ignore(self.connection, held_events, {
            "unit_id": self.unit_id, "event_id": event_id, "case_id": case_id, "event_type": event_type,
            "case_version": version, "payload": payload.model_dump_json(), "held_at": utc_now(),
        })
        return ApplyOutcome.HELD if held else ApplyOutcome.DUPLICATE

    def _release_held(self, case_id: str) -> None:
        rows = self.connection.execute(
            select(held_events.c.event_id, held_events.c.event_type, held_events.c.payload)
            .where(held_events.c.unit_id == self.unit_id, held_events.c.case_id == case_id)
            .order_by(held_events.c.case_version)
        ).all()
        if not rows:
            return
        self.connection.execute(
            delete(held_events).where(held_events.c.unit_id == self.unit_id, held_events.c.case_id == case_id)
        )
        for event_id, event_type, payload in rows:
            if event_type == CASE_UPDATED.name:
                self.apply_updated(event_id, CaseUpdated.model_validate_json(payload))
            else:
                self.apply_handled(event_id, CaseHandled.model_validate_json(payload))


class LinkedReport(BaseModel):
    case_id: str
    report_id: str
    owner_unit_id: str
    owner_unit_name: str
    linked_at: datetime
    report_count: int
    commune_name: str
    place: str | None


@dataclass
class CaseStore:
    """One unit's view of a case store (its own SQLite file, or its rows of a shared database)."""

    engine: Engine
    unit_id: str

    @classmethod
    def open(cls, url: str, unit_id: str) -> CaseStore:
        engine = create_store_engine(url)
        with engine.begin() as connection:
            migrate(connection)
        return cls(engine, unit_id)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[CaseWriter]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as connection:
            yield CaseWriter(connection, self.unit_id)

    def list_cases(self, *, sort: CaseSort = CaseSort.LAST_SEEN, status: str | None = OPEN) -> list[CaseSummary]:
        order = cases.c.report_count.desc() if sort == CaseSort.REPORTS else cases.c.last_seen.desc()
        query = select(*_summary_columns()).where(cases.c.unit_id == self.unit_id)
        if status is not None:
            query = query.where(cases.c.status == status)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(order, cases.c.last_seen.desc(), cases.c.case_id)).mappings()
            return [CaseSummary.model_validate(dict(row)) for row in rows]

    def resolve_reference(self, reference: str) -> str | None:
        """The case id a full id or a unique prefix (say the list's short reference) stands for, if any."""
        if len(reference) >= 36:
            return reference
        with self.engine.connect() as connection:
            found = connection.scalars(
                select(cases.c.case_id).where(cases.c.unit_id == self.unit_id, cases.c.case_id.startswith(reference))
                .limit(2)
            ).all()
        return found[0] if len(found) == 1 else None

    def get_case(self, case_id: str) -> CaseDetail | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(*_summary_columns(), cases.c.channels)
                .where(cases.c.unit_id == self.unit_id, cases.c.case_id == case_id)
            ).mappings().first()
            if row is None:
                return None
            reports = connection.scalars(
                select(case_reports.c.report)
                .where(case_reports.c.unit_id == self.unit_id, case_reports.c.case_id == case_id)
                .order_by(case_reports.c.received_at, case_reports.c.report_id)
            ).all()
        values = dict(row)
        values["channels"] = json.loads(values["channels"])
        values["reports"] = [EnrichedReport.model_validate_json(report) for report in reports]
        return CaseDetail.model_validate(values)

    def linked(self, limit: int = 50) -> list[LinkedReport]:
        """The latest reports of this unit's territory merged into other units' cases."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(linked_reports.c.case_id, linked_reports.c.report_id, linked_reports.c.owner_unit_id,
                       linked_reports.c.owner_unit_name, linked_reports.c.linked_at, linked_reports.c.report_count,
                       linked_reports.c.commune_name, linked_reports.c.place)
                .where(linked_reports.c.unit_id == self.unit_id)
                .order_by(linked_reports.c.linked_at.desc(), linked_reports.c.report_id).limit(limit)
            ).mappings()
            return [LinkedReport.model_validate(dict(row)) for row in rows]

    def counts(self, new_since: datetime, handled_since: datetime) -> CaseCounts:
        mine = cases.c.unit_id == self.unit_id
        with self.engine.connect() as connection:
            def count(*where: Any) -> int:
                return int(connection.scalar(select(func.count()).select_from(cases).where(mine, *where)) or 0)

            return CaseCounts(
                open=count(cases.c.status == OPEN),
                new_since=count(cases.c.opened_at >= utc_text(new_since)),
                handled_since=count(cases.c.status != OPEN, cases.c.handled_at >= utc_text(handled_since)),
            )

    def open_cases_by_place(self) -> dict[tuple[str, str], int]:
        """Open cases of this unit by (force, département): what the national dashboards rank."""
        query = (
            select(cases.c.force, cases.c.departement, func.count())
            .where(cases.c.unit_id == self.unit_id, cases.c.status == OPEN)
            .group_by(cases.c.force, cases.c.departement)
        )
        with self.engine.connect() as connection:
            return {(force, departement): int(n) for force, departement, n in connection.execute(query)}

    def count(self, table: str) -> int:
        tables = {t.name: t for t in (cases, case_reports, parked_events, applied_events, held_events, linked_reports)}
        chosen = tables[table]
        with self.engine.connect() as connection:
            return int(connection.scalar(
                select(func.count()).select_from(chosen).where(chosen.c.unit_id == self.unit_id)
            ) or 0)

    def parked(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(parked_events.c.topic, parked_events.c.partition, parked_events.c.offset,
                       parked_events.c.reason_code, parked_events.c.reason, parked_events.c.parked_at)
                .where(parked_events.c.unit_id == self.unit_id)
                .order_by(parked_events.c.topic, parked_events.c.partition, parked_events.c.offset)
            ).mappings()
            return [dict(row) for row in rows]

    def close(self) -> None:
        self.engine.dispose()


def _summary_columns() -> list[Any]:
    return [
        cases.c.unit_id, cases.c.case_id, cases.c.kind, cases.c.status, cases.c.case_version, cases.c.report_count,
        cases.c.commune_code, cases.c.commune_name, cases.c.departement, cases.c.force, cases.c.opened_at,
        cases.c.first_seen, cases.c.last_seen, cases.c.handled_at, cases.c.transferred_to,
        cases.c.place, cases.c.latitude, cases.c.longitude,
    ]
