"""Which unit is competent for a report: commune, département, force and unit.

This is the walking skeleton's lookup: a per-commune competence table in the official open-data format, resolved
by code INSEE, then by postcode and commune name. The jurisdiction work adds the whole-country reference,
former and delegated codes and coordinates.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from schemas.channels import Force
from schemas.reports import Jurisdiction, Place, ResolutionMethod
from streams.place_names import fold_commune_name

COMPETENCE_FILE = "competence-territoriale.csv"


@dataclass(frozen=True)
class CommuneCompetence:
    code: str
    name: str
    force: Force
    unit_id: str
    unit_name: str
    postcodes: tuple[str, ...]

    @property
    def departement(self) -> str:
        return self.code[:3] if self.code.startswith("97") else self.code[:2]


@dataclass(frozen=True)
class Unrouted:
    reason: str
    detail: str


def unit_id_for(force: Force, id_service: str) -> str:
    """Unit ids are ``pn-<id_service>`` or ``gn-<id_service>`` in lower case: stable, and valid in topic names."""
    return f"{force.value.lower()}-{id_service.strip().lower()}"


class JurisdictionReference:
    def __init__(self, communes: list[CommuneCompetence], version: str) -> None:
        self.version = version
        self._by_code = {commune.code: commune for commune in communes}
        self._by_postcode_name: dict[tuple[str, str], CommuneCompetence] = {}
        for commune in communes:
            for postcode in commune.postcodes:
                self._by_postcode_name[(postcode, fold_commune_name(commune.name))] = commune

    @classmethod
    def load(cls, directory: Path) -> JurisdictionReference:
        path = directory / COMPETENCE_FILE
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter=";"))
        communes = [
            CommuneCompetence(
                code=row["code_commune"],
                name=row["libelle_commune"],
                force=Force(row["institution"]),
                unit_id=unit_id_for(Force(row["institution"]), row["id_service"]),
                unit_name=row["service"],
                postcodes=tuple(code for code in row["codes_postaux"].split("-") if code),
            )
            for row in rows
        ]
        return cls(communes, version=f"{directory.name}-{len(communes)}")

    @property
    def communes(self) -> list[CommuneCompetence]:
        return list(self._by_code.values())

    @property
    def unit_ids(self) -> list[str]:
        return sorted({commune.unit_id for commune in self._by_code.values()})

    def resolve_jurisdiction(self, place: Place) -> Jurisdiction | Unrouted:
        commune, method = self._find_commune(place)
        if commune is None:
            return Unrouted("unknown_commune", "no commune of the reference matches the code INSEE or postcode and name")
        return Jurisdiction(
            commune_code=commune.code,
            commune_name=commune.name,
            departement=commune.departement,
            force=commune.force,
            unit_id=commune.unit_id,
            unit_name=commune.unit_name,
            method=method,
            reference_version=self.version,
        )

    def _find_commune(self, place: Place) -> tuple[CommuneCompetence | None, ResolutionMethod]:
        if place.commune_code and place.commune_code in self._by_code:
            return self._by_code[place.commune_code], ResolutionMethod.CODE_INSEE
        if place.postcode and place.commune_name:
            key = (place.postcode, fold_commune_name(place.commune_name))
            return self._by_postcode_name.get(key), ResolutionMethod.POSTCODE_NAME
        return None, ResolutionMethod.CODE_INSEE
