"""The route stage's journal (streams/route_journal.py) through the replays a restart and a rewind produce, on the
real deduplication decisions: a record routed is never decided or applied again, its events are sent again until
its offset is committed, each record writes one changelog record, and restoring the changelog derives the same
index as the worker wrote.

The store is a dict here (the same journal runs on the Faust table and RocksDB in the fault tests,
tests/test_dedup_faults.py, and the expiry test, tests/test_dedup_expiry.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas.channels import Channel, Force, ReportKind
from schemas.reports import CanonicalReport, EnrichedReport, Jurisdiction, Place, ResolutionMethod, report_id_for
from streams.deduplication import CaseState, DedupOutcome, DedupPolicy, decide_report, flush_case, load_case
from streams.route_journal import RouteJournal, Step, restored_index
from streams.worker_cipher import state_cipher

SEAL = state_cipher(b"k" * 32)
POLICY = DedupPolicy(update_throttle=timedelta(minutes=15))
PARTITION = 0
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class DictStore:
    """A partition's local store (a dict) and the changelog records written to Kafka (a list)."""

    def __init__(self) -> None:
        self.local: dict[str, bytes] = {}
        self.changelog: list[tuple[int, str, bytes | None]] = []

    def get(self, partition: int, key: str) -> bytes | None:
        return self.local.get(key)

    def write(self, partition: int, case: tuple[str, bytes] | None, local: dict[str, bytes | None]) -> None:
        self.apply(local)
        if case is not None:
            self.local[case[0]] = case[1]
            self.changelog.append((partition, *case))

    def apply(self, writes: dict[str, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                self.local.pop(key, None)
            else:
                self.local[key] = value

    def opened(self) -> dict[str, bytes]:
        return {key: SEAL.open(value) for key, value in self.local.items()}


def report(minutes: int, *, address: str = "12 rue Oberkampf", position: tuple[float, float] = (48.8649, 2.37),
           ) -> EnrichedReport:
    submission = uuid.uuid4().hex
    at = T0 + timedelta(minutes=minutes)
    canonical = CanonicalReport(
        report_id=report_id_for(Channel.MONCOMMISSARIAT, submission), channel=Channel.MONCOMMISSARIAT,
        submission_id=submission, submitted_at=at, received_at=at, kind=ReportKind.DEALING_POINT,
        place=Place(street_address=address, commune_code="75111", latitude=position[0], longitude=position[1]),
    )
    jurisdiction = Jurisdiction(
        commune_code="75111", commune_name="Paris 11e", departement="75", force=Force.POLICE, unit_id="pn-75-pp",
        unit_name="Préfecture de police", cross_unit_id="cross-75", method=ResolutionMethod.CODE_INSEE,
        reference_version="test",
    )
    return EnrichedReport(report=canonical, jurisdiction=jurisdiction)


def route(journal: RouteJournal, offset: int, enriched: EnrichedReport, committed: int | None = None) -> Step:
    view = journal.view(PARTITION)
    now = enriched.report.submitted_at
    return journal.step(PARTITION, offset, lambda: decide_report(view, enriched, now, POLICY, "75", offset), committed,
                        report_id=enriched.report.report_id)


def the_case(store: DictStore) -> CaseState:
    [key] = [key for key in store.local if key.startswith("case:")]
    case = load_case(RouteJournal(store, SEAL).view(PARTITION), key.removeprefix("case:"))
    assert case is not None
    return case


def test_a_record_met_again_after_the_records_that_followed_it_sends_its_events_and_changes_nothing() -> None:
    store = DictStore()
    journal = RouteJournal(store, SEAL)
    reports = [report(0), report(20), report(40)]
    first = [route(journal, offset, r) for offset, r in enumerate(reports)]
    assert [s.entry.outcome for s in first if s.entry] == [DedupOutcome.OPENED, DedupOutcome.MERGED, DedupOutcome.MERGED]
    before = store.opened()

    # A restart replays from offset 0 before any commit: the state is already past it.
    again = route(journal, 0, reports[0])
    assert again.replayed and again.send and again.entry is not None
    assert [e.opened for e in again.entry.events] == [True]
    assert store.opened() == before
    assert the_case(store).report_count == 3


def test_a_rewind_below_a_commit_sends_nothing_and_writes_nothing() -> None:
    """The kill -9 fault: offsets 0 and 1 committed (their events acknowledged), then the partition rewound to 0."""
    store = DictStore()
    journal = RouteJournal(store, SEAL)
    reports = [report(0), report(20), report(40)]
    for offset, r in enumerate(reports):
        route(journal, offset, r)
    written = len(store.changelog)

    assert not route(journal, 0, reports[0], committed=2).send
    assert not route(journal, 1, reports[1], committed=2).send
    third = route(journal, 2, reports[2], committed=2)
    assert third.replayed and third.send  # not committed yet: its events go again
    assert len(store.changelog) == written and the_case(store).report_count == 3
    route(journal, 3, report(60), committed=3)
    case = the_case(store)
    assert case.report_count == 4
    # Entries of committed offsets are dropped with the next write of the case.
    assert [entry.offset for entry in case.journal] == [3]


def test_records_handed_out_of_order_are_each_decided_once() -> None:
    """Faust skipped records 2 to 4 after a restart, handed out 5 and 6, then its rewind brought 0 to 6 again."""
    store = DictStore()
    journal = RouteJournal(store, SEAL)
    reports = [report(20 * i) for i in range(7)]
    for offset in (0, 1, 5, 6):
        route(journal, offset, reports[offset])
    assert the_case(store).report_count == 4
    for offset in range(7):  # the rewind
        route(journal, offset, reports[offset])
    assert the_case(store).report_count == 7  # 2, 3 and 4 decided once each, nothing else again


def test_the_same_report_in_another_record_is_a_duplicate_not_a_replay() -> None:
    store = DictStore()
    journal = RouteJournal(store, SEAL)
    first = report(0)
    route(journal, 0, first)
    duplicate = route(journal, 1, first)
    assert not duplicate.replayed and duplicate.entry is not None and duplicate.entry.outcome is DedupOutcome.DUPLICATE
    assert not duplicate.send and len(store.changelog) == 1


def test_each_record_writes_one_changelog_record_and_its_index_stays_local() -> None:
    store = DictStore()
    journal = RouteJournal(store, SEAL)
    for offset in range(5):
        route(journal, offset, report(20 * offset, address=f"{offset} rue Oberkampf"))
    assert len(store.changelog) == 5 and all(key.startswith("case:") for _, key, _ in store.changelog)
    assert {key.split(":")[0] for key in store.local} == {"case", "seen", "addr", "cell"}


def test_a_flush_tick_met_again_after_its_entry_was_dropped_flushes_nothing() -> None:
    store = DictStore()
    journal = RouteJournal(store, SEAL)
    route(journal, 0, report(0))
    route(journal, 1, report(1))  # throttled: waits for the case's next update
    case_id = the_case(store).case_id
    view = journal.view(PARTITION)

    def flush(offset: int, minutes: int, committed: int | None) -> Step:
        return journal.step(PARTITION, offset, lambda: flush_case(view, case_id, T0 + timedelta(minutes=minutes), POLICY),
                            committed, case_id=case_id)

    assert "pending:" + case_id in store.local
    flushed = flush(2, 15, None)
    assert flushed.send and flushed.entry is not None and [e.opened for e in flushed.entry.events] == [False]
    assert "pending:" + case_id not in store.local
    route(journal, 3, report(16), committed=3)  # a new throttled report; the flush's entry is dropped
    assert [entry.offset for entry in the_case(store).journal] == []
    again = flush(2, 15, 3)
    assert not again.send and the_case(store).version == 2 and len(the_case(store).pending) == 1


def test_restoring_the_changelog_derives_the_index_the_worker_wrote() -> None:
    store = DictStore()
    journal = RouteJournal(store, SEAL)
    for offset in range(6):
        # One point reported six times under four addresses (claims moving between reports).
        route(journal, offset, report(20 * offset, address=f"{offset % 2} rue Oberkampf"
                                      if offset < 4 else f"{offset} rue Oberkampf"))
    # Another point 1 km away under the same address: a case of its own, which the address now leads to.
    route(journal, 6, report(200, address="0 rue Oberkampf", position=(48.8739, 2.37)))
    assert len([key for key in store.local if key.startswith("case:")]) == 2
    restored = DictStore()
    # Restoring in two batches, as Faust does, each derived over what the previous one left.
    for batch in (store.changelog[:3], store.changelog[3:]):  # the last batch holds both cases
        for writes in restored_index(batch, restored.get, POLICY, SEAL).values():
            restored.apply(writes)
        for _, key, value in batch:
            restored.apply({key: value})
    assert restored.opened() == store.opened()


def test_values_are_sealed_like_every_value_of_the_state() -> None:
    store = DictStore()
    route(RouteJournal(store, SEAL), 7, report(0))
    assert all(b"case_id" not in value for value in store.local.values())
