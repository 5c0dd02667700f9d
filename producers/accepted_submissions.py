"""The index of accepted submission ids: a re-sent submission is answered as a duplicate, never written twice.

Design (see docs/event-contract.md, "Duplicates at the intake"):

- The source of truth is the raw topics themselves: every accepted submission is a record keyed by its submission
  (or conversation) id on ``reports.raw.<channel>``.
- The index is a local SQLite file (``<state_dir>/intake/accepted-submissions.sqlite3``) holding, per channel, the
  submission ids seen on the raw topics, and how far each raw partition has been read.
- Before it accepts anything, the intake *catches up*: it reads every raw partition from the offset it had reached
  to the current end and adds the keys it finds. This covers a crash between Kafka's acknowledgement and the local
  insert, a lost or deleted index file (rebuilt from offset 0, within the topics' retention), records produced
  directly by integrated systems, and those of other intake instances up to that moment.
- While serving, an id is claimed in memory before it is produced, so two concurrent requests with one id produce
  once; the id is written to the index right after Kafka's acknowledgement.
- While serving, the intake also catches up every few seconds in the background, to learn the ids other intake
  instances accepted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from schemas.channels import Channel
from schemas.topics import Topics
from signalements.kafka_clients import close_quietly, new_consumer
from signalements.kafka_link import KafkaLink
from signalements.settings import Settings

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted (
    channel TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    PRIMARY KEY (channel, submission_id)
);
CREATE TABLE IF NOT EXISTS raw_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


class IndexUnavailable(RuntimeError):
    """The raw topics could not be read, so the index cannot say whether a submission is new."""


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a submission id: either this caller produces it, or it was already accepted."""

    duplicate: bool


class AcceptedSubmissions:
    def __init__(self, path: Path, settings: Settings, role: str, topics: Topics, timeout_s: float = 10.0,
                 link: KafkaLink | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # No fsync per insert: the index is a cache of the raw topics. Its stored offsets only move when it reads
        # the topics, so whatever a power cut loses lies past them and the next catch-up reads it again.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._settings = settings
        self._role = role
        self._topics = topics
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[Channel, str], threading.Event] = {}
        self._caught_up = False
        self._catch_up_lock = threading.Lock()
        self._consumer: KafkaConsumer | None = None
        self._link = link or KafkaLink(None, "intake index")

    # -- what the intake calls ---------------------------------------------------------------------------------

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    def ensure_caught_up(self) -> None:
        """Read the raw topics up to their end once; until that succeeds nothing can be accepted."""
        if not self._caught_up:
            if self._link.just_failed():
                raise IndexUnavailable(f"Kafka is unreachable: {self._link.reason}")
            self.catch_up()
            self._caught_up = True

    def require_catch_up(self) -> None:
        """Read the raw topics again before the next acceptance.

        Called when Kafka failed to acknowledge a record: the record may still have been written (the broker
        stored it but its answer was lost), and the retry the client is told to make must then be a duplicate.
        """
        self._caught_up = False

    def is_accepted(self, channel: Channel, submission_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM accepted WHERE channel = ? AND submission_id = ?", (channel.value, submission_id)
            ).fetchone()
        return row is not None

    @contextmanager
    def claim(self, channel: Channel, submission_id: str) -> Iterator[Claim]:
        """Hold ``submission_id`` while the caller produces it; a concurrent request with the same id waits.

        The caller calls ``mark_accepted`` once Kafka acknowledged; if it does not (Kafka refused), the id is
        released unaccepted and the next attempt may produce it.
        """
        key = (channel, submission_id)
        mine: threading.Event | None = None
        duplicate = False
        while mine is None and not duplicate:
            with self._lock:
                waiting_on = self._in_flight.get(key)
                if waiting_on is None:
                    duplicate = self._accepted_locked(channel, submission_id)
                    if not duplicate:
                        mine = threading.Event()
                        self._in_flight[key] = mine
            if waiting_on is not None:
                waiting_on.wait(timeout=self._timeout_s * 2)
        if mine is None:
            yield Claim(duplicate=True)
            return
        try:
            yield Claim(duplicate=False)
        finally:
            with self._lock:
                del self._in_flight[key]
            mine.set()

    def mark_accepted(self, channel: Channel, submission_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO accepted (channel, submission_id, accepted_at) VALUES (?, ?, ?)",
                (channel.value, submission_id, time.time()),
            )

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM accepted").fetchone()[0])

    def close(self) -> None:
        with self._catch_up_lock:
            self._close_reader()
        with self._lock:
            self._db.close()

    # -- rebuilding from the raw topics ------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Add every key on the raw topics past the stored offsets; return how many records were read."""
        channels = {self._topics.raw(channel): channel for channel in Channel}
        with self._catch_up_lock:
            try:
                read = self._read_to_end(self._reader(), channels)
            except Exception as error:  # kafka-python raises more than KafkaError while its broker flaps
                if not isinstance(error, KafkaError | IndexUnavailable):
                    log.warning("intake index: reading the raw topics failed", exc_info=True)
                self._close_reader()  # start afresh next time: the broker may have restarted
                self._link.down(f"cannot read the raw topics: {type(error).__name__}")
                if isinstance(error, IndexUnavailable):
                    raise
                raise IndexUnavailable(f"could not read the raw topics: {type(error).__name__}") from error
            self._link.up()
            return read

    def _reader(self) -> KafkaConsumer:
        # One consumer for the life of the index: a new one per refresh would reconnect (and log) every few seconds.
        if self._consumer is None:
            self._consumer = new_consumer(
                self._settings, self._role, "signalements-intake-index",
                request_timeout_ms=int(self._timeout_s * 1000) + 1000,
                bootstrap_timeout_ms=int(self._timeout_s * 1000),
                consumer_timeout_ms=int(self._timeout_s * 1000),
            )
        return self._consumer

    def _close_reader(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            close_quietly(consumer.close, "the index reader")

    def keep_refreshing(self, every_s: float, stop: threading.Event) -> threading.Thread:
        """Catch up every ``every_s`` seconds in the background, until ``stop`` is set.

        This narrows, to about ``every_s``, the window in which another intake instance (or a direct producer) has
        accepted an id this instance does not know yet.
        """

        def refresh() -> None:
            while not stop.wait(every_s):
                try:
                    self.catch_up()
                except IndexUnavailable:
                    pass  # Kafka is away: requests answer 503 and catch up themselves once it is back

        thread = threading.Thread(target=refresh, name="accepted-index-refresh", daemon=True)
        thread.start()
        return thread

    def _read_to_end(self, consumer: KafkaConsumer, channels: dict[str, Channel]) -> int:
        assigned = [
            TopicPartition(topic, partition)
            for topic in channels
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not assigned:
            return 0
        consumer.assign(assigned)
        stored = self._stored_offsets()
        beginnings = consumer.beginning_offsets(assigned)
        ends = consumer.end_offsets(assigned)
        for tp in assigned:
            # Retention may have removed what the index last saw: start from what is still there.
            consumer.seek(tp, max(stored.get((tp.topic, tp.partition), 0), beginnings[tp]))
        read = 0
        deadline = time.monotonic() + max(60.0, self._timeout_s * 6)
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise IndexUnavailable("reading the raw topics to their end took too long")
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                channel = channels[tp.topic].value
                rows = [(channel, r.key.decode("utf-8", "replace"), time.time()) for r in records if r.key]
                with self._lock:
                    self._db.execute("BEGIN")
                    self._db.executemany(
                        "INSERT OR IGNORE INTO accepted (channel, submission_id, accepted_at) VALUES (?, ?, ?)", rows
                    )
                    # Two catch-ups may overlap (the refresher and a request's): an offset never goes back.
                    self._db.execute(
                        "INSERT INTO raw_offsets (topic, partition, next_offset) VALUES (?, ?, ?)"
                        " ON CONFLICT (topic, partition) DO UPDATE"
                        " SET next_offset = max(next_offset, excluded.next_offset)",
                        (tp.topic, tp.partition, records[-1].offset + 1),
                    )
                    self._db.execute("COMMIT")
                read += len(records)
        return read

    def _stored_offsets(self) -> dict[tuple[str, int], int]:
        with self._lock:
            rows = self._db.execute("SELECT topic, partition, next_offset FROM raw_offsets").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def _accepted_locked(self, channel: Channel, submission_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM accepted WHERE channel = ? AND submission_id = ?", (channel.value, submission_id)
        ).fetchone()
        return row is not None


def index_path(state_dir: Path) -> Path:
    return state_dir / "intake" / "accepted-submissions.sqlite3"
