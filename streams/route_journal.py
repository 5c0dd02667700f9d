"""The route stage's exactness through crashes, restarts and rewinds: each record's decision journaled, its state
writes applied once, its events sent again until a commit says they are acknowledged.

Faust is at-least-once: a record may be handed to the route stage again after a crash, a rebalance or a rewind of
its partition (streams/offset_rewind.py), while the state (local RocksDB and changelog) already holds its writes
and those of the records after it. Three entries of the state make that safe:

- ``wal:<partition>:<offset>``, the record's journal: every state write and every event it decided, written before
  any of them;
- the writes themselves, applied in order;
- ``applied:<partition>``, which records' writes are all in the state: every offset up to a watermark, and the few
  above it that came out of order (faust-streaming hands records out of order around a restart: it may skip some,
  which its consumer's rewind then fetches again, streams/offset_rewind.py); written after the writes.

A record already applied is never decided or applied again: the state is already past it, and writing its journal's
(older) values again would undo what the records after it did. It only sends its journal's events again (same event
ids: consumers apply them once), in case they were not acknowledged before the crash; without a journal (deleted
once its offset was committed, so its events were acknowledged) it does nothing. A record not applied yet may have
its journal and part of its writes in the state (a crash between them): its journal is applied whole. Any other
record is decided against the state as it is.

Found by the kill -9 fault test: after a restart the route stage replayed a partition's journals, committed, then
the partition was rewound to its start (the seek to the committed offset had asked the broker before that commit);
replaying the first record's journal wrote its case back to one report, and the journals after it had been
deleted by the commit, so the merged reports of that case were lost. A single watermark was not enough: in the same
restart Faust had skipped ten records before the rewind brought them back, and a watermark past them took them for
applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import AliasChoices, AwareDatetime, BaseModel, Field

from schemas.events import CaseLinked, CaseOpened
from streams.deduplication import CaseEvent, DedupOutcome, Effects
from streams.worker_cipher import WorkerCipher

JOURNAL_PREFIX = "wal:"
APPLIED_PREFIX = "applied:"


class PendingHint(BaseModel):
    # The key of the case's reports (its deduplication area): the flush tick sent with it reaches the case's partition.
    # ``unit_id``: the name this field had when reports were keyed by unit.
    key: str = Field(validation_alias=AliasChoices("key", "unit_id"))
    due_at: AwareDatetime


class JournaledEvent(BaseModel):
    opened: bool
    linked: bool = False
    payload: str
    copies_to: list[str] | None = None  # None in a journal written before copies were decided
    report_received_at: AwareDatetime | None = None


class Journal(BaseModel):
    """Everything one record did to the state and sent."""

    outcome: DedupOutcome | None
    throttled: bool
    writes: dict[str, str | None]
    pending: dict[str, PendingHint | None]
    events: list[JournaledEvent]

    @classmethod
    def of(cls, effects: Effects) -> Journal:
        return cls(
            outcome=effects.outcome,
            throttled=effects.throttled,
            writes={key: None if value is None else value.decode() for key, value in effects.writes.items()},
            pending={
                case_id: None if hint is None else PendingHint(key=hint[0], due_at=hint[1])
                for case_id, hint in effects.pending.items()
            },
            events=[_journaled(event) for event in effects.events],
        )


def _journaled(event: CaseEvent) -> JournaledEvent:
    trigger = event.triggered_by
    return JournaledEvent(
        opened=isinstance(event.payload, CaseOpened),
        linked=isinstance(event.payload, CaseLinked),
        payload=event.payload.model_dump_json(),
        copies_to=list(event.copies_to),
        report_received_at=trigger.report.received_at if trigger else None,
    )


# Offsets applied out of order, at most: past this, the records below them are taken as gone (deleted by the
# topic's retention while no worker ran) and the watermark moves up to them.
MAX_OUT_OF_ORDER = 1_000


class AppliedOffsets(BaseModel):
    """Every offset up to ``watermark``, and those in ``above``, have their writes in the state."""

    watermark: int = -1
    above: list[int] = []

    def __contains__(self, offset: object) -> bool:
        return isinstance(offset, int) and (offset <= self.watermark or offset in self.above)

    def add(self, offset: int) -> AppliedOffsets:
        above = sorted({*self.above, offset})
        watermark = self.watermark
        if len(above) > MAX_OUT_OF_ORDER:
            watermark = max(watermark, above[0] - 1)
        while above and above[0] <= watermark + 1:
            watermark = max(watermark, above.pop(0))
        return AppliedOffsets(watermark=watermark, above=above)


class StateTable(Protocol):
    """The part of a Faust table the journal uses (keys and values as Faust's raw codec gives them)."""

    def get(self, key: str) -> bytes | None: ...

    def __setitem__(self, key: str, value: bytes) -> None: ...

    def __delitem__(self, key: str) -> None: ...


def journal_key(partition: int, offset: int) -> str:
    return f"{JOURNAL_PREFIX}{partition}:{offset}"


def applied_key(partition: int) -> str:
    return f"{APPLIED_PREFIX}{partition}"


@dataclass(frozen=True)
class Step:
    """What processing one record came to: the journal whose events to send (None: nothing to send), whether the
    record was decided now (False: already applied, or replayed from its journal)."""

    journal: Journal | None
    decided: bool
    replayed: bool


class RouteJournal:
    def __init__(self, state: StateTable, pending: StateTable, seal: WorkerCipher) -> None:
        self.state = state
        self.pending = pending
        self.seal = seal

    def applied(self, partition: int) -> AppliedOffsets:
        raw = self.state.get(applied_key(partition))
        return AppliedOffsets() if raw is None else AppliedOffsets.model_validate_json(self.seal.open(bytes(raw)))

    def journal(self, partition: int, offset: int) -> Journal | None:
        raw = self.state.get(journal_key(partition, offset))
        return Journal.model_validate_json(self.seal.open(bytes(raw))) if raw else None

    def step(self, partition: int, offset: int, decide: Callable[[], Effects]) -> Step:
        """Process the record at ``partition``/``offset``: its state writes happen here, at most once; the caller
        sends the returned journal's events."""
        journal = self.journal(partition, offset)
        applied = self.applied(partition)
        if offset in applied:
            return Step(journal, decided=False, replayed=journal is not None)
        replayed = journal is not None
        if journal is None:
            journal = Journal.of(decide())
            self.state[journal_key(partition, offset)] = self.seal.seal(journal.model_dump_json().encode())
        self._apply(journal)
        self._mark(partition, applied.add(offset))
        return Step(journal, decided=not replayed, replayed=replayed)

    def already_applied(self, partition: int, offset: int) -> bool:
        return offset in self.applied(partition)

    def mark_applied(self, partition: int, offset: int) -> None:
        """After the writes of a record that has no journal (a sweep, which is simply done again after a crash)."""
        self._mark(partition, self.applied(partition).add(offset))

    def _mark(self, partition: int, applied: AppliedOffsets) -> None:
        self.state[applied_key(partition)] = self.seal.seal(applied.model_dump_json().encode())

    def forget(self, partition: int, offset: int) -> None:
        self.delete(journal_key(partition, offset))

    def delete(self, key: str) -> None:
        if self.state.get(key) is not None:
            del self.state[key]

    def _apply(self, journal: Journal) -> None:
        for key, value in journal.writes.items():
            if value is None:
                self.delete(key)
            else:
                self.state[key] = self.seal.seal(value.encode())
        for case_id, hint in journal.pending.items():
            if hint is None:
                if self.pending.get(case_id) is not None:
                    del self.pending[case_id]
            else:
                self.pending[case_id] = hint.model_dump_json().encode()
