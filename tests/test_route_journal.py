"""The route stage's journal (streams/route_journal.py) through the replays a restart and a rewind produce: a record
already applied is never decided or applied again, its journal's events are sent again while it has one, and a
record cut between its journal and its writes is completed.

The state is a dict here: the journal needs only get, set and delete of the Faust table (the same journal runs on
the real tables in the fault tests, tests/test_dedup_faults.py)."""

from __future__ import annotations

import json

from streams.deduplication import DedupOutcome, Effects
from streams.route_journal import Journal, RouteJournal, applied_key, journal_key
from streams.worker_cipher import state_cipher

SEAL = state_cipher(b"k" * 32)
PARTITION = 0


def new_journal() -> tuple[RouteJournal, dict[str, bytes]]:
    state: dict[str, bytes] = {}
    return RouteJournal(state, {}, SEAL), state


def count(state: dict[str, bytes]) -> int:
    raw = state.get("case:c")
    return 0 if raw is None else int(json.loads(SEAL.open(raw))["reports"])


def merge_one(state: dict[str, bytes]) -> Effects:
    """A decision that depends on the state: one more report in case c (as a merge does)."""
    effects = Effects(outcome=DedupOutcome.MERGED)
    effects.writes["case:c"] = json.dumps({"reports": count(state) + 1}).encode()
    return effects


def process(journal: RouteJournal, state: dict[str, bytes], offset: int) -> Journal | None:
    return journal.step(PARTITION, offset, lambda: merge_one(state)).journal


def test_a_record_processed_again_after_the_records_that_followed_it_leaves_the_state_as_it_is() -> None:
    journal, state = new_journal()
    for offset in range(3):
        process(journal, state, offset)
    assert count(state) == 3

    # A restart replays from offset 0: the journal is there, but the state is already past it.
    replayed = journal.step(PARTITION, 0, lambda: merge_one(state))
    assert count(state) == 3
    assert replayed.journal is not None and replayed.replayed and not replayed.decided


def test_a_rewind_below_a_commit_that_deleted_journals_loses_nothing() -> None:
    """The kill -9 fault: journals 0 and 1 deleted by a commit, then the partition rewound to 0."""
    journal, state = new_journal()
    for offset in range(3):
        process(journal, state, offset)
    journal.forget(PARTITION, 0)
    journal.forget(PARTITION, 1)

    assert process(journal, state, 0) is None  # acknowledged before: nothing to send, nothing to write
    assert process(journal, state, 1) is None
    again = process(journal, state, 2)
    assert again is not None and again.outcome is DedupOutcome.MERGED  # its events go again
    assert count(state) == 3
    process(journal, state, 3)
    assert count(state) == 4


def test_a_record_cut_between_its_journal_and_its_writes_is_completed_from_its_journal() -> None:
    journal, state = new_journal()
    for offset in range(2):
        process(journal, state, offset)
    # The crash came after the journal of offset 2 reached the state, before its writes and its applied mark.
    cut = Journal.of(merge_one(state))
    state[journal_key(PARTITION, 2)] = SEAL.seal(cut.model_dump_json().encode())

    step = journal.step(PARTITION, 2, lambda: merge_one(state))
    assert step.replayed and not step.decided
    assert count(state) == 3
    assert 2 in journal.applied(PARTITION)


def test_records_handed_out_of_order_are_each_decided_once() -> None:
    """Faust skipped records 2 to 4 after a restart, handed out 5 and 6, then its rewind brought 0 to 6 again."""
    journal, state = new_journal()
    for offset in (0, 1, 5, 6):
        process(journal, state, offset)
    assert count(state) == 4
    for offset in range(7):  # the rewind
        process(journal, state, offset)
    assert count(state) == 7  # 2, 3 and 4 decided once each, nothing else again
    applied = journal.applied(PARTITION)
    assert applied.watermark == 6 and applied.above == []


def test_offsets_that_never_come_are_given_up_after_enough_later_ones() -> None:
    from streams.route_journal import MAX_OUT_OF_ORDER, AppliedOffsets

    applied = AppliedOffsets()
    for offset in range(100, 100 + MAX_OUT_OF_ORDER + 1):  # offsets 0 to 99 deleted by the topic's retention
        applied = applied.add(offset)
    assert applied.watermark == 100 + MAX_OUT_OF_ORDER and applied.above == []


def test_the_applied_mark_is_sealed_like_every_value_of_the_state() -> None:
    journal, state = new_journal()
    process(journal, state, 7)
    assert b"watermark" not in state[applied_key(PARTITION)]
    assert 7 in journal.applied(PARTITION)
    assert journal.already_applied(PARTITION, 7) and not journal.already_applied(PARTITION, 8)
    assert not journal.already_applied(PARTITION, 3)  # not seen yet: still to decide
