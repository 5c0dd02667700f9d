"""The events the pipeline emits to unit queues and side topics."""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime, Field

from schemas.channels import Channel
from schemas.reports import Canonical, CanonicalReport, EnrichedReport

CASE_ID_NAMESPACE = uuid.UUID("0b6f7e3e-93a3-4c5e-8a53-5b3d7a1f9c20")


def case_id_for(unit_id: str, case_key: str) -> str:
    """A case id is a function of where and what it is, so reprocessing can never invent a second one."""
    return str(uuid.uuid5(CASE_ID_NAMESPACE, f"{unit_id}:{case_key}"))


class CaseOpened(Canonical):
    """The first report of a dealing point or delivery network for a unit: a new case in its queue."""

    case_id: str
    unit_id: str
    opened_at: AwareDatetime
    report_count: int = Field(default=1, ge=1)
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    channels: list[Channel]
    report: EnrichedReport


class UnroutedReport(Canonical):
    """A valid report for which no competent unit could be found (``reports.unrouted``)."""

    report: CanonicalReport
    reason: str = Field(description="machine-readable reason, e.g. unknown_commune")
    detail: str = Field(default="", description="human-readable explanation")
