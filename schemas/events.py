"""The events the pipeline emits to unit queues and side topics."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from schemas.channels import Channel, Force
from schemas.identifiers import CASE_ID_NAMESPACE, stable_id
from schemas.reports import Canonical, CanonicalReport, EnrichedReport


def case_id_for(unit_id: str, case_key: str) -> str:
    """A case id is a function of where and what it is, so reprocessing can never invent a second one."""
    return stable_id(CASE_ID_NAMESPACE, unit_id, case_key)


class CaseOpened(Canonical):
    """The first report of a dealing point or delivery network for a unit: a new case in its queue."""

    case_id: str
    unit_id: str
    case_version: int = Field(default=1, ge=1, description="1 for the opening; each update of the case adds one")
    opened_at: AwareDatetime
    report_count: int = Field(default=1, ge=1)
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    channels: list[Channel]
    report: EnrichedReport


class CaseUpdated(Canonical):
    """Later reports of a known case, accumulated since its previous event (updates are throttled per case).

    ``case_version`` grows by one with each event of a case: a consumer applies an update once, in order, and holds
    one that arrives before the case's opening.
    """

    case_id: str
    unit_id: str
    case_version: int = Field(ge=2)
    updated_at: AwareDatetime
    report_count: int = Field(ge=2, description="all reports of the case so far")
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    channels: list[Channel]
    new_reports: list[EnrichedReport] = Field(min_length=1, description="the reports since the previous event")


class CaseLinked(Canonical):
    """A report from this unit's territory merged into another unit's case (a dealing point on the boundary between
    the two units' communes, or a delivery network both units' citizens report).

    The case belongs to the unit competent for its first report (``owner_unit_id``), whose queue carries the case
    and this report in its ``case.updated``; this event tells the unit whose territory the report came from, on its
    own queue, keyed by the case id. One event per linked report: applied once by its ``ce_id``.
    """

    case_id: str = Field(description="the owner unit's case")
    unit_id: str = Field(description="the unit told: the report's competent unit")
    owner_unit_id: str = Field(description="the unit whose case the report joined")
    owner_unit_name: str
    linked_at: AwareDatetime
    report_count: int = Field(ge=2, description="the case's reports, this one included")
    report: EnrichedReport


class CaseOutcome(StrEnum):
    """How a unit closed a case."""

    DISMANTLED = "dismantled"
    UNFOUNDED = "unfounded"
    TRANSFERRED = "transferred"


class CaseHandled(Canonical):
    """A unit marked one of its cases handled (on the unit's own queue, keyed by case id like its other events).

    Carries the case's département, force and opening time so a national reader can count it without any state
    of the unit's. A transfer also opens the case on the other unit's queue (``transferred_to``).
    """

    case_id: str
    unit_id: str
    outcome: CaseOutcome
    handled_at: AwareDatetime
    opened_at: AwareDatetime
    departement: str
    force: Force
    report_count: int = Field(ge=1)
    transferred_to: str | None = Field(default=None, description="the unit the case went to, for a transfer")


class UnroutedReport(Canonical):
    """A valid report for which no competent unit could be found (``reports.unrouted``)."""

    report: CanonicalReport
    reason: str = Field(description="machine-readable reason, e.g. unknown_commune")
    detail: str = Field(default="", description="human-readable explanation")
