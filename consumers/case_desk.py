"""What a unit's operator does with its cases: list, show, and mark handled (dismantled, unfounded, transferred).

Marking a case handled is itself an event, ``case.handled``, written as the unit's principal on the unit's own
actions topic (the only topic it may write); the worker puts it on the unit's queue (streams/action_relay.py), where
the national statistics see it and the unit's consumer applies it like any other (idempotently: the command has
already applied it to the store). A transfer first sends the whole case for the other unit (a ``case.opened`` with
the first report, then a ``case.updated`` with the others), keyed by the same case id, which the worker puts on
that unit's queue, then closes it here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from consumers.case_events import CaseEvent
from consumers.case_store import OPEN, CaseDetail, CaseStore, CaseSummary
from schemas.channels import Channel, Force
from schemas.envelope import CASE_HANDLED, CASE_OPENED, CASE_UPDATED, encode
from schemas.events import CaseHandled, CaseOpened, CaseOutcome, CaseUpdated
from schemas.identifiers import HANDLING_ID_NAMESPACE, stable_id
from schemas.topics import Topics
from signalements.kafka_clients import new_producer
from signalements.kafka_security import unit_role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, unit_topic_config

SOURCE = "/signalements/case-desk"


class CaseDeskError(ValueError):
    """An operator request that cannot be carried out, with why."""


def _event_id(*parts: object) -> str:
    # Derived from what is done to which case at which version: running the same command twice sends the same ids.
    return stable_id(HANDLING_ID_NAMESPACE, *parts)


def handling_event(case: CaseDetail, outcome: CaseOutcome, transferred_to: str | None, now: datetime) -> CaseEvent:
    handled = CaseHandled(
        case_id=case.case_id, unit_id=case.unit_id, outcome=outcome, handled_at=now,
        opened_at=datetime.fromisoformat(case.opened_at), departement=case.departement, force=Force(case.force),
        report_count=case.report_count, transferred_to=transferred_to,
    )
    return CaseEvent(CASE_HANDLED, handled, _event_id("handled", case.unit_id, case.case_id, case.case_version))


def transfer_events(case: CaseDetail, to_unit: str) -> list[CaseEvent]:
    """The case as the other unit receives it: its opening with the first report, then the others in one update."""
    if not case.reports:
        raise CaseDeskError(f"case {case.case_id} has no report to transfer")
    first, rest = case.reports[0], case.reports[1:]
    subject = ("transfer", case.unit_id, to_unit, case.case_id, case.case_version)
    opened = CaseOpened(
        case_id=case.case_id, unit_id=to_unit, opened_at=datetime.fromisoformat(case.opened_at),
        first_seen=first.report.received_at, last_seen=first.report.received_at,
        channels=[first.report.channel], report=first,
    )
    events = [CaseEvent(CASE_OPENED, opened, _event_id(*subject, "opened"))]
    if rest:
        update = CaseUpdated(
            case_id=case.case_id, unit_id=to_unit, case_version=2, updated_at=datetime.now(UTC),
            report_count=len(case.reports), first_seen=datetime.fromisoformat(case.first_seen),
            last_seen=datetime.fromisoformat(case.last_seen), channels=[Channel(c) for c in case.channels],
            new_reports=rest,
        )
        events.append(CaseEvent(CASE_UPDATED, update, _event_id(*subject, "updated")))
    return events


def handle_case(
    settings: Settings, store: CaseStore, case_id: str, outcome: CaseOutcome, transfer_to: str | None = None
) -> CaseHandled:
    """Publish the handling (and a transfer's events) with acks=all, then apply it to the store.

    Kafka first: if publishing fails nothing changed and the operator is told; if the store update fails after,
    the unit's consumer applies the same event from the queue.
    """
    case = store.get_case(case_id)
    if case is None:
        raise CaseDeskError(f"no case {case_id} in unit {store.unit_id}")
    if case.status != OPEN:
        raise CaseDeskError(f"case {case_id} is already {case.status}")
    topics = Topics(settings.topic_namespace)
    if outcome == CaseOutcome.TRANSFERRED:
        if not transfer_to:
            raise CaseDeskError("a transfer needs the unit to transfer to (--to)")
        if transfer_to == store.unit_id:
            raise CaseDeskError("a case cannot be transferred to its own unit")
        try:
            topics.unit(transfer_to)
        except ValueError as error:
            raise CaseDeskError(str(error)) from error
    elif transfer_to:
        raise CaseDeskError("--to is only for a transfer")
    handled = handling_event(case, outcome, transfer_to, datetime.now(UTC))
    actions = topics.actions(store.unit_id)
    sends: list[tuple[str, CaseEvent]] = []
    if transfer_to:
        sends += [(actions, event) for event in transfer_events(case, transfer_to)]
    sends.append((actions, handled))
    _publish(settings, unit_role(store.unit_id), sends)
    payload = handled.payload
    assert isinstance(payload, CaseHandled)
    with store.transaction() as writer:
        writer.apply_handled(handled.event_id, payload)
    return payload


def _publish(settings: Settings, role: str, sends: list[tuple[str, CaseEvent]]) -> None:
    ensure_topics(settings, role, {topic: unit_topic_config(settings) for topic, _ in sends})
    producer = new_producer(settings, role, "signalements-case-desk", retries=5)
    try:
        for topic, event in sends:  # in order, each acknowledged before the next
            message = encode(event.event_type, event.payload, event_id=event.event_id, source=SOURCE, key=event.key)
            producer.send(
                topic, key=event.key.encode(), value=message.value, headers=list(message.headers.items())
            ).get(timeout=settings.intake_produce_timeout_s)
    finally:
        producer.close()


SHORT_REFERENCE = 8  # of a case id: what the list shows and what `cases show` and `cases handle` accept


def render_case_list(console: Console, cases: list[CaseSummary]) -> None:
    """The list as an 80-column terminal shows it: a short case reference, the place first, then what, how often,
    when (`--json` keeps every field)."""
    table = Table(title=f"{len(cases)} case(s)", expand=False)
    table.add_column("ref", no_wrap=True)
    table.add_column("place", ratio=1, overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("rep.", justify="right", no_wrap=True)
    table.add_column("last seen (UTC)", no_wrap=True)
    for case in cases:
        kind = "network" if case.kind == "delivery_network" else "point"
        status = "" if case.status == "open" else f" [{case.status}]"
        table.add_row(case.case_id[:SHORT_REFERENCE], f"{case.place or case.commune_name}{status}", kind,
                      str(case.report_count), case.last_seen[:16].replace("T", " "))
    console.print(table)


def render_case(console: Console, case: CaseDetail) -> None:
    summary = Table(show_header=False, title=f"case {case.case_id}")
    summary.add_column("field")
    summary.add_column("value")
    for name in ("unit_id", "kind", "status", "case_version", "report_count", "commune_name", "commune_code",
                 "departement", "force", "opened_at", "first_seen", "last_seen", "handled_at", "transferred_to"):
        summary.add_row(name, str(getattr(case, name)))
    console.print(summary)
    reports = Table(title="reports")
    reports.add_column("report", no_wrap=True, min_width=36)
    for column in ("channel", "received", "activity", "place"):
        reports.add_column(column)
    for enriched in case.reports:
        report = enriched.report
        place = report.place.street_address or report.place.commune_name or ""
        reports.add_row(
            report.report_id, report.channel.value, report.received_at.isoformat()[:19],
            report.activity.value if report.activity else report.kind.value, place,
        )
    console.print(reports)
