"""Live changes of the competence table: rows from the compacted reference topic, applied to the worker's reference.

Every worker holds the topic as a Faust global table (all partitions, from the beginning, then live), so a row
published for one commune (a commune moving from police to gendarmerie zone) changes where the next report of that
commune goes, in every running worker, without a restart.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from schemas.reference import CompetenceRow
from schemas.validation import describe_validation_error
from streams.jurisdiction import Competence, JurisdictionReference

log = logging.getLogger(__name__)


def apply_competence_record(reference: JurisdictionReference, key: bytes | None, value: bytes | None) -> str:
    """Apply one record of the reference topic; returns the outcome: applied, unchanged or invalid."""
    if value is None:
        # A tombstone would make a commune unroutable: the worker keeps the row it has and says so.
        log.warning("reference topic: tombstone for %r ignored, the commune keeps its unit", key)
        return "invalid"
    try:
        row = CompetenceRow.model_validate_json(value)
        competence = Competence.from_row(row.model_dump())
    except (ValidationError, ValueError) as error:
        detail = describe_validation_error(error) if isinstance(error, ValidationError) else str(error)
        log.warning("reference topic: row %r refused: %s", key, detail)
        return "invalid"
    if key is not None and key.decode(errors="replace") != competence.commune_code:
        log.warning("reference topic: key %r differs from code_commune %s", key, competence.commune_code)
        return "invalid"
    if reference.competence.rows.get(competence.commune_code) == competence:
        return "unchanged"
    reference.set_competence(competence)
    log.info("reference topic: commune %s now %s (%s)", competence.commune_code, competence.unit_id,
             competence.force.value)
    return "applied"
