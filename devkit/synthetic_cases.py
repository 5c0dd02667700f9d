"""Synthetic case events, as the router and the deduplication stage emit them: for the consumer benchmark and tests.

They are real events of the contract (schemas/events.py) in the real envelope (schemas/envelope.encode), produced
with kafka-python onto real unit queues; only their content is made up (no free text, no contact).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from consumers.case_events import CaseEvent
from schemas.channels import Channel, Force, ReportKind
from schemas.envelope import CASE_HANDLED, CASE_LINKED, CASE_OPENED, CASE_UPDATED
from schemas.events import CaseHandled, CaseLinked, CaseOpened, CaseUpdated, case_id_for
from schemas.identifiers import SYNTHETIC_EVENT_ID_NAMESPACE, stable_id
from schemas.reports import CanonicalReport, EnrichedReport, Jurisdiction, Place, ResolutionMethod, report_id_for

SOURCE = "/signalements/synthetic"


@dataclass(frozen=True)
class SyntheticUnit:
    unit_id: str
    commune_code: str
    commune_name: str
    departement: str
    force: Force


PARIS_11 = SyntheticUnit("pn-75-pp", "75111", "Paris 11e Arrondissement", "75", Force.POLICE)
CHAMONIX = SyntheticUnit("gn-74-chamonix-mont-blanc", "74056", "Chamonix-Mont-Blanc", "74", Force.GENDARMERIE)
SAINT_DENIS = SyntheticUnit("pn-93-pp", "93066", "Saint-Denis", "93", Force.POLICE)


def event_id_for(kind: str, subject: str) -> str:
    return stable_id(SYNTHETIC_EVENT_ID_NAMESPACE, kind, subject)


def enriched_report(unit: SyntheticUnit, submission_id: str, at: datetime, street: str | None = None,
                    position: tuple[float, float] | None = None) -> EnrichedReport:
    channel = Channel.MONCOMMISSARIAT if unit.force == Force.POLICE else Channel.BRIGADE_NUMERIQUE
    latitude, longitude = position or (None, None)
    report = CanonicalReport(
        report_id=report_id_for(channel, submission_id), channel=channel, submission_id=submission_id,
        submitted_at=at, received_at=at, kind=ReportKind.DEALING_POINT,
        place=Place(commune_code=unit.commune_code, commune_name=unit.commune_name, street_address=street,
                    latitude=latitude, longitude=longitude),
    )
    jurisdiction = Jurisdiction(
        commune_code=unit.commune_code, commune_name=unit.commune_name, departement=unit.departement,
        force=unit.force, unit_id=unit.unit_id, unit_name=unit.unit_id, method=ResolutionMethod.CODE_INSEE,
        reference_version="synthetic",
    )
    return EnrichedReport(report=report, jurisdiction=jurisdiction)


def case_opened(unit: SyntheticUnit, case_key: str, at: datetime | None = None, street: str | None = None,
                position: tuple[float, float] | None = None) -> CaseEvent:
    at = at or datetime.now(UTC)
    enriched = enriched_report(unit, f"{case_key}-1", at, street, position)
    case = CaseOpened(
        case_id=case_id_for(unit.unit_id, case_key), unit_id=unit.unit_id, opened_at=at, first_seen=at,
        last_seen=at, channels=[enriched.report.channel], report=enriched,
    )
    return CaseEvent(CASE_OPENED, case, event_id_for("opened", f"{unit.unit_id}:{case.case_id}"))


def case_updated(unit: SyntheticUnit, case_key: str, version: int, at: datetime | None = None) -> CaseEvent:
    """The ``version``-th event of a case: one new report, ``version`` reports in all."""
    at = at or datetime.now(UTC)
    enriched = enriched_report(unit, f"{case_key}-{version}", at)
    update = CaseUpdated(
        case_id=case_id_for(unit.unit_id, case_key), unit_id=unit.unit_id, case_version=version, updated_at=at,
        report_count=version, first_seen=at - timedelta(minutes=version - 1), last_seen=at,
        channels=[enriched.report.channel], new_reports=[enriched],
    )
    return CaseEvent(CASE_UPDATED, update, event_id_for(f"updated:{version}", f"{unit.unit_id}:{update.case_id}"))


def case_linked(unit: SyntheticUnit, owner: SyntheticUnit, case_key: str, at: datetime | None = None,
                street: str | None = None) -> CaseEvent:
    """A report of ``unit``'s territory merged into ``owner``'s case (a point on their boundary)."""
    at = at or datetime.now(UTC)
    enriched = enriched_report(unit, f"{case_key}-linked", at, street)
    linked = CaseLinked(
        case_id=case_id_for(owner.unit_id, case_key), unit_id=unit.unit_id, owner_unit_id=owner.unit_id,
        owner_unit_name=owner.unit_id, linked_at=at, report_count=2, report=enriched,
    )
    return CaseEvent(CASE_LINKED, linked, event_id_for("linked", f"{unit.unit_id}:{linked.case_id}"))


def case_handled_event(handled: CaseHandled) -> CaseEvent:
    return CaseEvent(CASE_HANDLED, handled, event_id_for("handled", f"{handled.unit_id}:{handled.case_id}"))
