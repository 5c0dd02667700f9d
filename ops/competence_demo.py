"""The demonstration competence table: the official format, whole country, units derived by a documented rule.

The official table "Compétence territoriale gendarmerie et police nationales" cannot be fetched offline, so this
derives one from the commune reference (real communes, names, postcodes, populations) by this rule:

1. Paris and its arrondissements, and every commune of Hauts-de-Seine (92), Seine-Saint-Denis (93) and
   Val-de-Marne (94): police, the Préfecture de police, one unit per département (id_service ``<dep>-pp``).
2. Lyon and Marseille with their arrondissements, and every commune of 20,000 inhabitants or more: police, one
   circonscription named after the commune (id_service ``<dep>-<commune>``).
3. Every other commune: gendarmerie, one brigade per La Poste postcode of a département (communes sharing a
   distribution postcode are neighbours), named after its most populous commune (id_service ``<dep>-<commune>``).

The unit ids are invented; the table is replaced by importing the official file
(`signalements reference import-competence`).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict

from schemas.channels import Force
from streams.jurisdiction import COMPETENCE_COLUMNS, Commune, CommuneReference, Competence
from streams.place_names import fold_commune_name

PREFECTURE_DE_POLICE_DEPARTEMENTS = ("75", "92", "93", "94")
CITIES_WITH_ARRONDISSEMENTS = ("13055", "69123")  # Marseille, Lyon; Paris is under rule 1
POLICE_POPULATION_THRESHOLD = 20_000


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", fold_commune_name(name)).strip("-")


class UnitNames:
    """id_service values, unique within the table: a second unit with the same name gets its code appended."""

    def __init__(self) -> None:
        self.taken: dict[str, str] = {}

    def claim(self, departement: str, name: str, owner: str) -> str:
        candidate = f"{departement.lower()}-{slug(name)}"
        if self.taken.setdefault(candidate, owner) != owner:
            candidate = f"{candidate}-{owner.lower()}"
            self.taken[candidate] = owner
        return candidate


def _police_owner(commune: Commune, communes: dict[str, Commune]) -> Commune | None:
    """The commune a police unit is named after, or None when the commune is in gendarmerie zone."""
    if commune.departement in PREFECTURE_DE_POLICE_DEPARTEMENTS:
        return commune
    if commune.code in CITIES_WITH_ARRONDISSEMENTS:
        return commune
    if commune.city_code:
        return communes[commune.city_code]
    return commune if commune.population >= POLICE_POPULATION_THRESHOLD else None


def demo_competence(reference: CommuneReference) -> list[Competence]:
    communes = reference.communes
    names = UnitNames()
    rows: list[Competence] = []
    brigades: dict[tuple[str, str], list[Commune]] = defaultdict(list)
    for commune in sorted(communes.values(), key=lambda c: c.code):
        owner = _police_owner(commune, communes)
        if owner is None:
            brigades[(commune.departement, commune.postcodes[0] if commune.postcodes else commune.code)].append(
                commune
            )
            continue
        if commune.departement in PREFECTURE_DE_POLICE_DEPARTEMENTS:
            id_service = f"{commune.departement}-pp"
            service = f"Préfecture de police - {reference.departement_names[commune.departement]}"
        else:
            id_service = names.claim(owner.departement, owner.name, owner.code)
            service = f"Commissariat de police de {owner.name}"
        rows.append(Competence(commune.code, commune.name, Force.POLICE, id_service, service, commune.postcodes))
    for (departement, _), members in sorted(brigades.items()):
        seat = max(members, key=lambda c: (c.population, c.code))
        id_service = names.claim(departement, seat.name, seat.code)
        service = f"Brigade de gendarmerie de {seat.name}"
        rows.extend(
            Competence(c.code, c.name, Force.GENDARMERIE, id_service, service, c.postcodes) for c in members
        )
    return sorted(rows, key=lambda row: row.commune_code)


def competence_csv(rows: list[Competence]) -> str:
    """The table in the open-data format: ';'-separated, the official columns in their order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COMPETENCE_COLUMNS, delimiter=";", lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.as_row() for row in rows)
    return buffer.getvalue()
