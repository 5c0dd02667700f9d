"""The route stage's state: Faust tables (RocksDB, changelogged) around the pure deduplication of
``streams.deduplication``, the throttled updates' timer, and the expiry sweep.

Keying. ``reports.enriched`` is keyed by deduplication area (streams/dedup_area.py), so every report that may be a
duplicate of another reaches one partition whatever units they resolve to, and one agent instance holds that area's
state. The tables are partitioned like the topic (Faust writes a table change to the changelog partition of the
record being processed), so a partition's state moves with it on a rebalance. At a unit boundary, two reports 50 m
apart on either side make one case, the first report's unit's; the other unit gets a ``case.linked``.

Exactness through crashes, restarts and rewinds: streams/route_journal.py. Each record's writes are one case record
(changelogged) and the index entries derived from it (local only: ``CaseTable`` derives them again when it restores
a case record from the changelog, at recovery or on a standby), written in one atomic RocksDB batch. The case record
carries the journal of the record's events until its offset is committed.

Throttled updates. A case that got an event less than ``update_throttle`` ago keeps its new reports in its state and
gets a hint (its derived ``pending:`` entry). A timer reads the hints and, once one is due, sends a flush tick (a
control record on ``reports.enriched``, keyed by the case's area) that the route agent handles like a report: the
flush is decided, journaled and sent in the partition's order, so it is recovered like everything else.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import faust
from pydantic import BaseModel
from rocksdict import WriteBatch

from schemas.envelope import CASE_LINKED, CASE_OPENED, CASE_UPDATED, EventType, encode, read_attributes
from schemas.events import CaseLinked, CaseOpened, CaseUpdated
from schemas.reports import EnrichedReport
from signalements.metrics import PipelineMetrics
from signalements.settings import Settings
from streams.deduplication import (
    CaseState,
    DedupOutcome,
    DedupPolicy,
    Effects,
    JournalEntry,
    PendingHint,
    decide_report,
    expired_keys,
    flush_case,
    index_writes,
    pending_key,
)
from streams.offset_rewind import active_partition_stores, committed_offset, partition_store
from streams.route_journal import LEGACY_PREFIXES, RouteJournal, restored_index
from streams.stages import InputRecord
from streams.worker_cipher import WorkerCipher, state_cipher

log = logging.getLogger(__name__)

STATE_TABLE = "dedup-state"
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
    return {f"{app_id}-{STATE_TABLE}-changelog": {"cleanup.policy": "compact"}}


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


def _text(key: Any) -> str:
    return bytes(key).decode("utf-8", "replace") if isinstance(key, bytes | bytearray | memoryview) else str(key)


class CaseTable(faust.Table):
    """The deduplication state: its changelog holds the case records; restoring one writes the index entries that
    follow from it (``index_writes``), before the case record itself, so a restore cut short is done again alike."""

    derive: tuple[DedupPolicy, WorkerCipher] | None = None

    def apply_changelog_batch(self, batch: Any) -> None:
        events = list(batch)
        if self.derive is not None:
            self._derive_index(events, *self.derive)
        super().apply_changelog_batch(events)

    def _derive_index(self, events: list[Any], policy: DedupPolicy, seal: WorkerCipher) -> None:
        records = [
            (event.message.partition, _text(event.message.key),
             None if event.message.value is None else bytes(event.message.value))
            for event in events
        ]

        def read(partition: int, key: str) -> bytes | None:
            raw = partition_store(self, partition).get(key.encode())
            return None if raw is None else bytes(raw)

        for partition, writes in restored_index(records, read, policy, seal).items():
            if writes:
                _write_batch(partition_store(self, partition), writes)


def _write_batch(db: Any, writes: dict[str, bytes | None]) -> None:
    batch = WriteBatch(raw_mode=True)
    for key, value in writes.items():
        if value is None:
            batch.delete(key.encode())
        else:
            batch.put(key.encode(), value)
    db.write(batch)


class FaustCaseStore:
    """The journal's store on the Faust table: one RocksDB batch per record, the case record sent to the changelog."""

    def __init__(self, table: faust.types.TableT[Any, Any]) -> None:
        self.table = table

    def get(self, partition: int, key: str) -> bytes | None:
        raw = partition_store(self.table, partition).get(key.encode())
        return None if raw is None else bytes(raw)

    def write(self, partition: int, case: tuple[str, bytes] | None, local: dict[str, bytes | None]) -> None:
        writes = dict(local)
        if case is not None:
            writes[case[0]] = case[1]
        _write_batch(partition_store(self.table, partition), writes)
        if case is not None:
            self.table.send_changelog(partition, case[0], case[1])

    def delete(self, partition: int, key: str, local: dict[str, bytes | None]) -> None:
        """Delete a changelogged key (a case, or an entry of an older state) and the local entries given."""
        _write_batch(partition_store(self.table, partition), {**local, key: None})
        self.table.send_changelog(partition, key, None, value_serializer="raw")


class CaseRouter:
    """The route stage's body: dedup decision → one case record (and its index) → its events on the unit queues."""

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
        # The state's values encrypted at rest: the changelog topic and RocksDB files hold no report, phone number or
        # handle in clear, and a value altered there is refused rather than believed.
        self.seal = state_cipher(self.policy.identifier_secret)
        # bytes keys and values: the raw codec; the values are sealed JSON that pydantic reads
        table = CaseTable(app, name=STATE_TABLE, default=None, beacon=app.tables.beacon,
                          partitions=settings.topic_partitions, key_type=bytes, value_type=bytes)
        table.derive = (self.policy, self.seal)
        app.tables.add(table)
        self.state = table
        self.store = FaustCaseStore(self.state)
        self.journal = RouteJournal(self.store, self.seal)
        self._ticked: dict[str, float] = {}
        self._replaying: set[int] = set()
        check_every = min(5.0, max(0.25, settings.dedup_update_throttle_s / 4))
        app.timer(interval=check_every, name="dedup-flush-due")(self.flush_due_cases)
        app.timer(interval=settings.dedup_sweep_interval_s, name="dedup-sweep")(self.request_sweeps)
        app.timer(interval=15.0, name="dedup-state-size")(self.measure_state)

    # -- in the stream -------------------------------------------------------------------------------------------

    async def route_report(self, record: InputRecord, report: EnrichedReport) -> str:
        area = (record.key or b"").decode("utf-8", "replace")
        view = self.journal.view(record.partition)
        entry = await self._process(
            record, lambda now: decide_report(view, report, now, self.policy, area, record.offset),
            report_id=report.report.report_id,
        )
        if entry is None:
            return ALREADY_ROUTED
        outcome = entry.outcome or DedupOutcome.DUPLICATE
        self.metrics.dedup_outcomes.labels(report.report.channel.value, outcome.value).inc()
        return ROUTE_OUTCOMES[outcome]

    async def on_tick(self, record: InputRecord) -> None:
        try:
            await self._on_tick(record)
        except Exception:  # a control record must never stop the route agent; the timer sends a new tick
            log.exception("route: tick at partition %d offset %d failed", record.partition, record.offset)

    async def _on_tick(self, record: InputRecord) -> None:
        tick = RouteTick.model_validate_json(record.value or b"{}")
        if tick.action == "sweep":
            self._sweep(record)  # done again harmlessly when the tick is met again
            return
        if tick.case_id is None:
            return
        case_id = tick.case_id
        view = self.journal.view(record.partition)
        await self._process(record, lambda now: flush_case(view, case_id, now, self.policy), case_id=case_id)
        self._ticked.pop(case_id, None)

    async def _process(self, record: InputRecord, decide: Callable[[datetime], Effects], *,
                       report_id: str | None = None, case_id: str | None = None) -> JournalEntry | None:
        """Decide (or meet again) the record, then send its events; None when it was routed and acknowledged before."""
        # The record's own timestamp, not the clock: deciding it again after a crash must decide the same.
        now = datetime.fromtimestamp(record.timestamp, UTC)
        step = self.journal.step(record.partition, record.offset, lambda: decide(now),
                                 committed_offset(self.app, record.tp), report_id=report_id, case_id=case_id)
        if step.replayed and record.partition not in self._replaying:
            # Once per partition and process: a record decided before a crash or a rebalance is met again.
            self._replaying.add(record.partition)
            log.info("route: meeting decided records again on partition %d from offset %d",
                     record.partition, record.offset)
        if step.throttled:
            self.metrics.case_updates_throttled.inc()
        if step.entry is not None and step.send:
            await self._send_events(record, step.entry)
        return step.entry

    async def _send_events(self, record: InputRecord, entry: JournalEntry) -> None:
        for journaled in entry.events:
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

    def _sweep(self, record: InputRecord) -> None:
        """Delete this partition's state that no report can match any more (closed cases and what leads to them),
        and the entries an older state kept (record journals and applied marks)."""
        now = datetime.fromtimestamp(record.timestamp, UTC)
        partition = record.partition
        db = partition_store(self.state, partition)
        entries: list[tuple[str, bytes]] = []
        legacy: list[str] = []
        for raw_key, value in db.items():
            key = _text(raw_key)
            if key.startswith("__faust"):
                continue
            if key.startswith(LEGACY_PREFIXES):
                legacy.append(key)
            else:
                entries.append((key, self.seal.open(bytes(value))))
        expired = expired_keys(entries, now, self.policy)[:SWEEP_BATCH]
        view = self.journal.view(partition)
        cases = {key for key in expired if key.startswith("case:")}
        for key in cases:
            raw = view.get(key)
            if raw is not None:
                old = CaseState.model_validate_json(raw)
                local = {k: None if v is None else self.seal.seal(v) for k, v in index_writes(view, old, None, self.policy).items()}
                self.store.delete(partition, key, local)
        for key in [*(k for k in expired if k not in cases), *legacy[:SWEEP_BATCH]]:
            if self.store.get(partition, key) is not None:
                # An entry of an older state was changelogged: its tombstone goes there too.
                self.store.delete(partition, key, {})
        if expired or legacy:
            log.info("dedup sweep: %d expired entries and %d of an older state deleted from partition %d",
                     len(expired), min(len(legacy), SWEEP_BATCH), partition)

    # -- timers --------------------------------------------------------------------------------------------------

    async def flush_due_cases(self) -> None:
        """Ask the stream to flush every throttled case whose interval has passed (hints of this worker's partitions)."""
        if self.app.rebalancing:
            return
        now = datetime.now(UTC)
        clock = time.monotonic()
        prefix = pending_key("").encode()
        for db in list(active_partition_stores(self.state)):
            for raw_key, raw in db.items(from_key=prefix):
                key = bytes(raw_key)
                if not key.startswith(prefix):
                    break
                case_id = key[len(prefix):].decode()
                hint = PendingHint.model_validate_json(self.seal.open(bytes(raw)))
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
