"""The jurisdiction reference as events: one row of the competence table per commune, on a compacted topic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from schemas.submissions import CodeInsee

PostcodeList = Annotated[str, StringConstraints(pattern=r"^(\d{5}(-\d{5})*)?$")]


class CompetenceRow(BaseModel):
    """A row of "Compétence territoriale gendarmerie et police nationales", with its official column names.

    Published on ``reference.competence`` keyed by ``code_commune``: the topic is compacted, so it always holds the
    latest row of every commune, and a new row for one commune changes its unit in every running worker.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    code_commune: CodeInsee
    libelle_commune: str
    institution: Literal["PN", "GN"]
    id_service: Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")]
    service: str
    code_postal: str = ""
    codes_postaux: PostcodeList = ""
