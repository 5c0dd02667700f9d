"""Where the worker puts what a unit wrote on its actions topic (streams/action_relay.py): the writing unit is the
topic's, which the broker authenticated; a unit can handle its own cases and hand a case over, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime

from kafka.consumer.fetcher import ConsumerRecord

from consumers.case_events import CaseEvent
from devkit.synthetic_cases import CHAMONIX, PARIS_11, case_handled_event, case_opened, case_updated
from schemas.channels import Force
from schemas.envelope import encode
from schemas.events import CaseHandled, CaseOutcome
from schemas.reasons import ReasonCode
from schemas.topics import Topics
from streams.action_relay import TRANSFERRED_FROM_HEADER, route_action

TOPICS = Topics("ns.")
T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def record_on(topic: str, event: CaseEvent | None = None, value: bytes | None = None) -> ConsumerRecord:
    headers: list[tuple[str, bytes]] = []
    if event is not None:
        message = encode(event.event_type, event.payload, event_id=event.event_id, source="/tests", key=event.key)
        value, headers = message.value, list(message.headers.items())
    return ConsumerRecord(topic=topic, partition=0, leader_epoch=0, offset=7, timestamp=0, timestamp_type=0,
                          key=b"case", value=value, headers=headers, checksum=None, serialized_key_size=4,
                          serialized_value_size=len(value or b""), serialized_header_size=-1)


def handled_by(unit_id: str, case_id: str = "case-1") -> CaseEvent:
    return case_handled_event(CaseHandled(
        case_id=case_id, unit_id=unit_id, outcome=CaseOutcome.DISMANTLED, handled_at=T0, opened_at=T0,
        departement="75", force=Force.POLICE, report_count=1))


def test_a_units_handling_of_its_own_case_goes_to_its_queue() -> None:
    routed = route_action(TOPICS, record_on(TOPICS.actions(PARIS_11.unit_id), handled_by(PARIS_11.unit_id)))
    assert routed.refused is None and routed.topic == TOPICS.unit(PARIS_11.unit_id)


def test_a_transfer_goes_to_the_receiving_units_queue_stamped_with_the_unit_it_came_from() -> None:
    for event in (case_opened(CHAMONIX, "moved"), case_updated(CHAMONIX, "moved", 2)):
        routed = route_action(TOPICS, record_on(TOPICS.actions(PARIS_11.unit_id), event))
        assert routed.refused is None and routed.topic == TOPICS.unit(CHAMONIX.unit_id)
        assert routed.extra_headers == ((TRANSFERRED_FROM_HEADER, PARIS_11.unit_id.encode()),)


def test_a_unit_cannot_handle_another_units_case_nor_open_its_own() -> None:
    forged = route_action(TOPICS, record_on(TOPICS.actions(PARIS_11.unit_id), handled_by(CHAMONIX.unit_id)))
    assert forged.topic == TOPICS.dead_letter and forged.refused is not None
    assert forged.refused[0] == ReasonCode.WRONG_UNIT and CHAMONIX.unit_id in forged.refused[1]
    own_case = route_action(TOPICS, record_on(TOPICS.actions(PARIS_11.unit_id), case_opened(PARIS_11, "mine")))
    assert own_case.topic == TOPICS.dead_letter and own_case.refused is not None
    assert own_case.refused[0] == ReasonCode.WRONG_UNIT


def test_an_unreadable_action_is_dead_lettered_with_why() -> None:
    routed = route_action(TOPICS, record_on(TOPICS.actions(PARIS_11.unit_id), value=b"not an event"))
    assert routed.topic == TOPICS.dead_letter and routed.refused is not None
    assert routed.refused[0] == ReasonCode.INVALID_ENVELOPE


def test_the_writer_is_the_topics_unit() -> None:
    assert TOPICS.unit_of_actions(TOPICS.actions(CHAMONIX.unit_id)) == CHAMONIX.unit_id
    assert TOPICS.unit_of_actions("ns.unit.pn-75-11") is None
    assert TOPICS.unit_of_actions("other.actions.pn-75-11") is None
