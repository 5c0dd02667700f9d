"""The route stage's exactness through crashes, restarts and rewinds, with one changelog record per record routed.

Faust is at-least-once: a record may be handed to the route stage again after a crash, a rebalance or a rewind of
its partition (streams/offset_rewind.py), while the state already holds its writes and those of the records after
it. A record's writes are one case record (streams/deduplication.py) and the index entries derived from it,
written to the local store in one atomic batch; only the case record goes to the changelog. So a record's writes
are either all in the state or none are, and the case record says what the record did:

- its report's id in ``reports``, with the record's offset: the record was routed (the ``seen:`` index leads from
  the report to the case);
- its events in ``journal``, the entries of the records whose offset is not committed yet (a commit comes only
  after their events are acknowledged, streams/deliveries.py). An entry is dropped the next time its case is written
  after that commit.

A record met again is therefore never decided or applied again: the state is already past it, and deciding it
again would merge it twice. Its journal entry's events are sent again while its offset is not committed (same
event ids: consumers apply them once); past the commit it does nothing. A record whose writes are not in the state
is decided against the state as it is, whatever order Faust hands records out in (faust-streaming may skip records
around a restart, which its consumer's rewind then fetches again).

A flush tick is met again the same way (its entry in the case's journal); once its entry is dropped, deciding it
again flushes nothing: the tick's own timestamp is before the case's next flush is due. A sweep is simply done
again.

The kill -9 fault test found why a record applied must never be applied again: after a restart the route stage
replayed a partition, committed, then the partition was rewound to its start (the seek to the committed offset had
asked the broker before that commit); writing the first record's decision again put its case back to one report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from schemas.events import CaseLinked, CaseOpened
from streams.deduplication import (
    CaseEvent,
    CaseRef,
    CaseState,
    DedupPolicy,
    Effects,
    JournaledEvent,
    JournalEntry,
    case_key,
    index_writes,
    seen_key,
)
from streams.worker_cipher import WorkerCipher

# Keys of the state written before the case records held their journal: deleted by the sweep.
LEGACY_PREFIXES = ("wal:", "applied:")


class CaseStore(Protocol):
    """A partition's state as the journal writes it: sealed values; the case record is changelogged, the index
    entries stay local; both in one atomic write."""

    def get(self, partition: int, key: str) -> bytes | None: ...

    def write(self, partition: int, case: tuple[str, bytes] | None, local: dict[str, bytes | None]) -> None: ...


def journaled(event: CaseEvent) -> JournaledEvent:
    trigger = event.triggered_by
    return JournaledEvent(
        opened=isinstance(event.payload, CaseOpened),
        linked=isinstance(event.payload, CaseLinked),
        payload=event.payload.model_dump_json(),
        copies_to=list(event.copies_to),
        report_received_at=trigger.report.received_at if trigger else None,
    )


@dataclass(frozen=True)
class Step:
    """What processing one record came to: the decision (None: routed and acknowledged before, nothing to do),
    whether its events are to be sent, whether it was met again rather than decided now."""

    entry: JournalEntry | None
    send: bool
    replayed: bool
    throttled: bool = False


class SealedView:
    """A partition's state as the pure deduplication reads it: values opened (a value altered is refused)."""

    def __init__(self, store: CaseStore, seal: WorkerCipher, partition: int) -> None:
        self.store, self.seal, self.partition = store, seal, partition

    def get(self, key: str) -> bytes | None:
        raw = self.store.get(self.partition, key)
        return None if raw is None else self.seal.open(raw)


class RouteJournal:
    def __init__(self, store: CaseStore, seal: WorkerCipher) -> None:
        self.store = store
        self.seal = seal

    def view(self, partition: int) -> SealedView:
        return SealedView(self.store, self.seal, partition)

    def step(self, partition: int, offset: int, decide: Callable[[], Effects], committed: int | None, *,
             report_id: str | None = None, case_id: str | None = None) -> Step:
        """Process the record at ``partition``/``offset`` (a report, or a flush tick of ``case_id``): its writes
        happen here, at most once; the caller sends the returned entry's events when ``send`` says so.
        ``committed`` is the partition's committed offset (None: not known)."""
        met = self._met_before(partition, offset, report_id, case_id, committed)
        if met is not None:
            return met
        effects = decide()
        entry = JournalEntry(partition=partition, offset=offset, outcome=effects.outcome,
                             events=[journaled(event) for event in effects.events])
        local = {key: None if value is None else self.seal.seal(value) for key, value in effects.index.items()}
        case = None
        if effects.case is not None:
            kept = [
                old for old in effects.case.journal
                if old.partition == partition and old.offset != offset and (committed is None or old.offset >= committed)
            ]
            record = effects.case.model_copy(update={"journal": [*kept, entry] if entry.events else kept})
            case = (case_key(record.case_id), self.seal.seal(record.model_dump_json().encode()))
        if case is not None or local:
            self.store.write(partition, case, local)
        return Step(entry, send=bool(entry.events), replayed=False, throttled=effects.throttled)

    def _met_before(self, partition: int, offset: int, report_id: str | None, case_id: str | None,
                    committed: int | None) -> Step | None:
        view = self.view(partition)
        if report_id is not None:
            raw = view.get(seen_key(report_id))
            case_id = CaseRef.model_validate_json(raw).case_id if raw else None
            if case_id is None:
                return None
        if case_id is None:
            return None
        raw_case = view.get(case_key(case_id))
        if raw_case is None:
            return None
        case = CaseState.model_validate_json(raw_case)
        entry = next((e for e in case.journal if e.partition == partition and e.offset == offset), None)
        acknowledged = committed is not None and offset < committed
        if entry is not None:
            return Step(entry, send=not acknowledged, replayed=True)
        if report_id is not None and case.reports.get(report_id) == offset:
            return Step(None, send=False, replayed=True)
        return None  # not this record's: a duplicate of another record's report, or a tick to decide


class _RestoringView:
    """A partition's index while changelog records are restored: the writes derived so far over the stored ones."""

    def __init__(self, read: Callable[[str], bytes | None], local: dict[str, bytes | None], seal: WorkerCipher) -> None:
        self.read, self.local, self.seal = read, local, seal

    def get(self, key: str) -> bytes | None:
        raw = self.local[key] if key in self.local else self.read(key)
        return None if raw is None else self.seal.open(raw)


def restored_index(records: Iterable[tuple[int, str, bytes | None]], read: Callable[[int, str], bytes | None],
                   policy: DedupPolicy, seal: WorkerCipher) -> dict[int, dict[str, bytes | None]]:
    """The index entries (sealed; None deletes) that changelog records (partition, key, sealed value), restored in
    their order over a store read by ``read``, derive: what the worker wrote locally when it wrote them."""
    derived: dict[int, dict[str, bytes | None]] = {}
    cases: dict[tuple[int, str], bytes | None] = {}
    for partition, key, value in records:
        if not key.startswith("case:"):
            continue
        local = derived.setdefault(partition, {})
        old_raw = cases[(partition, key)] if (partition, key) in cases else read(partition, key)
        old = None if old_raw is None else CaseState.model_validate_json(seal.open(old_raw))
        new = None if value is None else CaseState.model_validate_json(seal.open(value))
        view = _RestoringView(functools.partial(read, partition), local, seal)
        writes = index_writes(view, old, new, policy)
        local.update({k: None if v is None else seal.seal(v) for k, v in writes.items()})
        cases[(partition, key)] = value
    return derived
