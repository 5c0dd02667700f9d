"""The route stage's state: Faust tables (RocksDB, changelogged) around the pure deduplication of
``streams.deduplication``, the throttled updates' timer, and the expiry sweep.

Keying. ``reports.enriched`` is keyed by deduplication area (streams/dedup_area.py), so every report that may be a
duplicate of another reaches one partition whatever units they resolve to, and one agent instance holds that area's
state. The tables are partitioned like the topic (Faust writes a table change to the changelog partition of the
record being processed), so a partition's state moves with it on a rebalance. At a unit boundary, two reports 50 m
apart on either side make one case, the first report's unit's; the other unit gets a ``case.linked``.

Exactness through crashes, restarts and rewinds: streams/route_journal.py. Each record's decision is journaled
(``wal:<partition>:<offset>``) before its writes, its writes are applied once (``applied:<partition>`` says how
far the state has got), and its events are sent again from the journal when the record comes back before its
offset was committed. A journal is deleted once its record's offset is committed (its events are acknowledged).

Throttled updates. A case that got an event less than ``update_throttle`` ago keeps its new reports in its state and
gets a hint in the ``dedup-pending`` table. A timer reads the hints and, once one is due, sends a flush tick (a
control record on ``reports.enriched``, keyed by the case's area) that the route agent handles like a report: the
flush is decided, journaled and sent in the partition's order, so it is recovered like everything else.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import faust
from pydantic import BaseModel

from schemas.envelope import CASE_LINKED, CASE_OPENED, CASE_UPDATED, EventType, encode, read_attributes
from schemas.events import CaseLinked, CaseOpened, CaseUpdated
from schemas.reports import EnrichedReport
from signalements.metrics import PipelineMetrics
from signalements.settings import Settings
from streams.deduplication import (
    DedupOutcome,
    DedupPolicy,
    Effects,
    decide_report,
    expired_keys,
    flush_case,
)
from streams.offset_rewind import active_partition_stores, committed_offset, partition_store
from streams.route_journal import APPLIED_PREFIX, JOURNAL_PREFIX, Journal, PendingHint, RouteJournal
from streams.stages import InputRecord
from streams.worker_cipher import WorkerCipher, state_cipher

log = logging.getLogger(__name__)

STATE_TABLE = "dedup-state"
PENDING_TABLE = "dedup-pending"
JOURNAL_RETENTION = 20_000
TICK_RESEND_AFTER_S = 10.0
SWEEP_BATCH = 20_000


# The route stage's records_out outcomes (case_opened as in the skeleton).
ROUTE_OUTCOMES = {
    DedupOutcome.OPENED: "case_opened",
    DedupOutcome.MERGED: "case_merged",
    DedupOutcome.DUPLICATE: "duplicate",
    DedupOutcome.RESUBMISSION: "resubmission",
}
# A record routed, applied and acknowledged before (handed out again after a restart or a rewind): nothing done.
ALREADY_ROUTED = "already_routed"


class RouteTick(BaseModel):
    """A control record of the route stage on ``reports.enriched``: flush a throttled case, or sweep expired state."""

    action: Literal["flush", "sweep"]
    case_id: str | None = None


ROUTE_TICK = EventType("route.tick", RouteTick)


def is_route_tick(headers: Any) -> bool:
    return read_attributes(headers).get("ce_type") == ROUTE_TICK.ce_type


def changelog_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """The route stage's changelog topics, as Faust names and configures them, to create before the worker starts.

    Faust creates them itself, but on a new cluster its consumer may then read their metadata before their leaders
    exist, keep "0 partitions" for them, and fail every table write (PartitionsMismatch): seen on every first run
    of the local pipeline.
    """
    app_id = settings.consumer_group(settings.worker_id)
    return {f"{app_id}-{table}-changelog": {"cleanup.policy": "compact"} for table in (STATE_TABLE, PENDING_TABLE)}


class IdentifierKeyMissing(RuntimeError):
    """Without the shared HMAC key, a worker would key networks its own way and never merge with the others."""


def identifier_secret(settings: Settings) -> bytes:
    path = settings.dedup_identifier_key_path
    try:
        secret = path.read_bytes().strip()
    except FileNotFoundError:
        raise IdentifierKeyMissing(
            f"the deduplication's identifier key {path} is missing (SIGNALEMENTS_DEDUP_IDENTIFIER_KEY_FILE): every "
            "worker needs the same one; make it once with `head -c 32 /dev/urandom | base64 > FILE`") from None
    if len(secret) < 32:
        raise IdentifierKeyMissing(f"the identifier key {path} is too short: at least 32 bytes")
    return secret


def policy_from(settings: Settings) -> DedupPolicy:
    return DedupPolicy(
        identifier_secret=identifier_secret(settings),
        distance_m=settings.dedup_distance_m,
        case_window=timedelta(days=settings.dedup_case_window_days),
        update_throttle=timedelta(seconds=settings.dedup_update_throttle_s),
        resubmission_window=timedelta(seconds=settings.dedup_resubmission_window_s),
    )


SendCaseEvent = Callable[
    [InputRecord, EventType, CaseOpened | CaseUpdated | CaseLinked, datetime | None, tuple[str, ...] | None],
    Awaitable[None],
]


class TableView:
    """The deduplication state as the pure logic reads it (inside the stream: the record's partition)."""

    def __init__(self, table: faust.types.TableT[Any, Any], seal: WorkerCipher) -> None:
        self.table = table
        self.seal = seal

    def get(self, key: str) -> bytes | None:
        value = self.table.get(key)
        return None if value is None else self.seal.open(bytes(value))


class CaseRouter:
    """The route stage's body: dedup decision → journal → state → case.opened / case.updated on the unit queue."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        metrics: PipelineMetrics,
        enriched_topic: faust.TopicT,
        send_case_event: SendCaseEvent,
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.policy = policy_from(settings)
        self.enriched_topic = enriched_topic
        self.send_case_event = send_case_event
        # bytes keys and values: the raw codec; the values are JSON that pydantic reads
        table_options: dict[str, Any] = {"partitions": settings.topic_partitions, "key_type": bytes, "value_type": bytes}
        self.state = app.Table(STATE_TABLE, default=None, **table_options)
        self.pending = app.Table(PENDING_TABLE, default=None, **table_options)
        # The state's values encrypted at rest: the changelog topics and RocksDB files hold no report, phone number or
        # handle in clear, and a value altered there is refused rather than believed.
        self.seal = state_cipher(self.policy.identifier_secret)
        self.view = TableView(self.state, self.seal)
        self.journal = RouteJournal(self.state, self.pending, self.seal)
        self._ticked: dict[str, float] = {}
        self._replaying: set[int] = set()
        self._journals: dict[int, deque[int]] = {}
        check_every = min(5.0, max(0.25, settings.dedup_update_throttle_s / 4))
        app.timer(interval=check_every, name="dedup-flush-due")(self.flush_due_cases)
        app.timer(interval=settings.dedup_sweep_interval_s, name="dedup-sweep")(self.request_sweeps)
        app.timer(interval=15.0, name="dedup-state-size")(self.measure_state)

    # -- in the stream -------------------------------------------------------------------------------------------

    async def route_report(self, record: InputRecord, report: EnrichedReport) -> str:
        area = (record.key or b"").decode("utf-8", "replace")
        journal = await self._process(record, lambda now: decide_report(self.view, report, now, self.policy, area))
        if journal is None:
            return ALREADY_ROUTED
        outcome = journal.outcome or DedupOutcome.DUPLICATE
        self.metrics.dedup_outcomes.labels(report.report.channel.value, outcome.value).inc()
        if journal.throttled:
            self.metrics.case_updates_throttled.inc()
        return ROUTE_OUTCOMES[outcome]

    async def on_tick(self, record: InputRecord) -> None:
        try:
            await self._on_tick(record)
        except Exception:  # a control record must never stop the route agent; the timer sends a new tick
            log.exception("route: tick at partition %d offset %d failed", record.partition, record.offset)

    async def _on_tick(self, record: InputRecord) -> None:
        tick = RouteTick.model_validate_json(record.value or b"{}")
        if tick.action == "sweep":
            if not self.journal.already_applied(record.partition, record.offset):
                self._sweep(record)
                self.journal.mark_applied(record.partition, record.offset)
            return
        if tick.case_id is None:
            return
        case_id = tick.case_id
        await self._process(record, lambda now: flush_case(self.view, case_id, now, self.policy))
        self._ticked.pop(case_id, None)

    async def _process(self, record: InputRecord, decide: Callable[[datetime], Effects]) -> Journal | None:
        """Decide (or replay) the record, then send its events; None when it was routed and acknowledged before."""
        # The record's own timestamp, not the clock: deciding it again after a crash must decide the same.
        now = datetime.fromtimestamp(record.timestamp, UTC)
        step = self.journal.step(record.partition, record.offset, lambda: decide(now))
        if step.replayed and record.partition not in self._replaying:
            # Once per partition and process: a record decided before a crash or a rebalance is being replayed.
            self._replaying.add(record.partition)
            log.info("route: replaying journaled decisions on partition %d from offset %d",
                     record.partition, record.offset)
        if step.journal is not None:
            await self._send_events(record, step.journal)
        self._forget_committed_journals(record)
        return step.journal

    async def _send_events(self, record: InputRecord, journal: Journal) -> None:
        for journaled in journal.events:
            payload: CaseOpened | CaseUpdated | CaseLinked
            if journaled.linked:
                payload = CaseLinked.model_validate_json(journaled.payload)
                event_type = CASE_LINKED
            elif journaled.opened:
                payload = CaseOpened.model_validate_json(journaled.payload)
                event_type = CASE_OPENED
            else:
                payload = CaseUpdated.model_validate_json(journaled.payload)
                event_type = CASE_UPDATED
            # Sent until Kafka acknowledges it; the input offset is committed only then (streams/deliveries.py).
            await self.send_case_event(record, event_type, payload, journaled.report_received_at,
                                       None if journaled.copies_to is None else tuple(journaled.copies_to))

    def _forget_committed_journals(self, record: InputRecord) -> None:
        """Journals are only read for records after the committed offset: delete the ones before it.

        Those this process wrote are tracked in memory; the ones a crashed process left behind (written, committed,
        never deleted) go ``JOURNAL_RETENTION`` records later.
        """
        partition, offset = record.partition, record.offset
        written = self._journals.setdefault(partition, deque())
        written.append(offset)
        committed = committed_offset(self.app, record.tp)
        while written and committed is not None and written[0] < committed - 1:
            self.journal.forget(partition, written.popleft())
        self.journal.forget(partition, offset - JOURNAL_RETENTION)

    def _sweep(self, record: InputRecord) -> None:
        """Delete this partition's state that no report can match any more (closed cases and what leads to them)."""
        now = datetime.fromtimestamp(record.timestamp, UTC)
        db = partition_store(self.state, record.partition)
        entries = [
            (bytes(key).decode(), self.seal.open(bytes(value)))
            for key, value in db.items()
            if not bytes(key).startswith((JOURNAL_PREFIX.encode(), APPLIED_PREFIX.encode(), b"__faust"))
        ]
        expired = expired_keys(entries, now, self.policy)[:SWEEP_BATCH]
        for key in expired:
            self.journal.delete(key)
        if expired:
            log.info("dedup sweep: %d expired entries deleted from partition %d", len(expired), record.partition)

    # -- timers --------------------------------------------------------------------------------------------------

    async def flush_due_cases(self) -> None:
        """Ask the stream to flush every throttled case whose interval has passed (hints of this worker's partitions)."""
        if self.app.rebalancing:
            return
        now = datetime.now(UTC)
        clock = time.monotonic()
        for case_id_raw, raw in list(self.pending.items()):
            case_id = case_id_raw.decode() if isinstance(case_id_raw, bytes) else str(case_id_raw)
            hint = PendingHint.model_validate_json(raw)
            if hint.due_at > now or clock - self._ticked.get(case_id, -1e9) < TICK_RESEND_AFTER_S:
                continue
            self._ticked[case_id] = clock
            await self._send_tick(RouteTick(action="flush", case_id=case_id), key=hint.key)

    async def request_sweeps(self) -> None:
        if self.app.rebalancing:
            return
        for tp in self.app.assignor.assigned_actives():
            if tp.topic == self.enriched_topic.get_topic_name():
                await self._send_tick(RouteTick(action="sweep"), partition=tp.partition)

    async def measure_state(self) -> None:
        entries = 0
        for db in active_partition_stores(self.state):
            entries += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        self.metrics.dedup_state_entries.set(entries)

    async def _send_tick(self, tick: RouteTick, *, key: str | None = None, partition: int | None = None) -> None:
        message = encode(ROUTE_TICK, tick, event_id=str(uuid.uuid4()), source="/signalements/worker/route", key=key)
        await self.enriched_topic.send(
            key=key.encode() if key else None, value=message.value, partition=partition,
            headers=list(message.headers.items()), force=True,
        )
