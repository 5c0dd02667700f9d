"""A unit's local case store (SQLite): cases, their reports, and the events it could not read.

Events are applied idempotently: the id of every applied event is recorded in the same transaction as its effect,
so the same event twice changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from schemas.events import CaseOpened

SCHEMA = """
CREATE TABLE IF NOT EXISTS applied_events (
    event_id   TEXT PRIMARY KEY,
    case_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    case_id      TEXT PRIMARY KEY,
    unit_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open',
    opened_at    TEXT NOT NULL,
    first_seen   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    report_count INTEGER NOT NULL,
    channels     TEXT NOT NULL,
    commune_code TEXT NOT NULL,
    commune_name TEXT NOT NULL,
    departement  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS case_reports (
    case_id      TEXT NOT NULL REFERENCES cases(case_id),
    report_id    TEXT NOT NULL,
    channel      TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    stored_at    TEXT NOT NULL,
    report       TEXT NOT NULL,
    PRIMARY KEY (case_id, report_id)
);
CREATE TABLE IF NOT EXISTS parked_events (
    topic      TEXT NOT NULL,
    partition  INTEGER NOT NULL,
    "offset"   INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    headers    TEXT NOT NULL,
    value      BLOB,
    parked_at  TEXT NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
"""


@dataclass(frozen=True)
class StoredCase:
    case_id: str
    kind: str
    status: str
    report_count: int
    commune_code: str
    first_seen: str
    last_seen: str


class CaseStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit must survive a crash before offsets are committed
        self._db.executescript(SCHEMA)
        self._db.commit()

    def apply_case_opened(self, event_id: str, case: CaseOpened) -> bool:
        """Apply within the current transaction; False when this event was already applied."""
        now = datetime.now(UTC).isoformat()
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO applied_events VALUES (?, ?, ?, ?)", (event_id, case.case_id, "case.opened", now)
        )
        if cursor.rowcount == 0:
            return False
        jurisdiction, report = case.report.jurisdiction, case.report.report
        self._db.execute(
            "INSERT OR IGNORE INTO cases (case_id, unit_id, kind, opened_at, first_seen, last_seen, report_count,"
            " channels, commune_code, commune_name, departement) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                case.case_id, case.unit_id, report.kind.value, case.opened_at.isoformat(),
                case.first_seen.isoformat(), case.last_seen.isoformat(), case.report_count,
                json.dumps([channel.value for channel in case.channels]),
                jurisdiction.commune_code, jurisdiction.commune_name, jurisdiction.departement,
            ),
        )
        self._db.execute(
            "INSERT OR IGNORE INTO case_reports VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                case.case_id, report.report_id, report.channel.value, report.submitted_at.isoformat(),
                report.received_at.isoformat(), now, case.report.model_dump_json(),
            ),
        )
        return True

    def park(self, topic: str, partition: int, offset: int, reason: str, headers: dict[str, str], value: bytes | None) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO parked_events VALUES (?, ?, ?, ?, ?, ?, ?)",
            (topic, partition, offset, reason, json.dumps(headers), value, datetime.now(UTC).isoformat()),
        )

    def commit(self) -> None:
        self._db.commit()

    def rollback(self) -> None:
        self._db.rollback()

    def open_cases(self) -> list[StoredCase]:
        rows = self._db.execute(
            "SELECT case_id, kind, status, report_count, commune_code, first_seen, last_seen FROM cases"
            " WHERE status = 'open' ORDER BY last_seen DESC"
        ).fetchall()
        return [StoredCase(*row) for row in rows]

    def count(self, table: str) -> int:
        if table not in {"cases", "case_reports", "parked_events", "applied_events"}:
            raise ValueError(table)
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        self._db.close()
