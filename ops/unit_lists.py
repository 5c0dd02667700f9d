"""Import the official lists of units open to the public, and join them to the competence table's units.

- "Liste des unités de gendarmerie accueillant du public" (';'): identifiant_public_unite, service,
  adresse_geographique, telephone, departement, code_commune_insee, voie, code_postal, commune, geocodage_x_GPS
  (longitude), geocodage_y_GPS (latitude), horaires_accueil, url.
- "Liste des services de police accueillant du public" (';'): service, adresse_geographique, voie, code_postal,
  commune, code_commune_insee, departement, telephone, geocodage_x_GPS, geocodage_y_GPS.

A gendarmerie unit is the competence table's unit whose id_service is its identifiant_public_unite; the police list
has no identifier, so a police service is the competence table's unit of the same name (folded) in its département.
The result, units.csv beside the competence table, gives each unit its address, coordinates and communes.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.channels import Force
from schemas.validation import describe_validation_error
from streams.jurisdiction import Competence, unit_id_for
from streams.place_names import fold_commune_name

UNITS_FILE = "units.csv"
GENDARMERIE_COLUMNS = (
    "identifiant_public_unite", "service", "adresse_geographique", "telephone", "departement", "code_commune_insee",
    "voie", "code_postal", "commune", "geocodage_x_GPS", "geocodage_y_GPS", "horaires_accueil", "url",
)
POLICE_COLUMNS = (
    "service", "adresse_geographique", "voie", "code_postal", "commune", "code_commune_insee", "departement",
    "telephone", "geocodage_x_GPS", "geocodage_y_GPS",
)
UNIT_COLUMNS = (
    "unit_id", "force", "name", "departement", "address", "code_commune_insee", "latitude", "longitude", "telephone",
    "communes",
)


class PublicUnit(BaseModel):
    """One row of either official list, validated: a bad row names its line and field."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service: str = Field(min_length=1)
    adresse_geographique: str = ""
    telephone: str = ""
    departement: str = Field(pattern=r"^(\d{2}|2[AB]|97\d)$")
    code_commune_insee: str = Field(pattern=r"^(\d{5}|2[AB]\d{3})$")
    longitude: float | None = Field(default=None, ge=-180, le=180, validation_alias="geocodage_x_GPS")
    latitude: float | None = Field(default=None, ge=-90, le=90, validation_alias="geocodage_y_GPS")
    identifiant_public_unite: str = ""


class UnitListError(ValueError):
    pass


def read_unit_list(path: Path, force: Force) -> list[PublicUnit]:
    columns = GENDARMERIE_COLUMNS if force is Force.GENDARMERIE else POLICE_COLUMNS
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=";")
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UnitListError(f"{path}: missing columns {', '.join(missing)}")
        units = []
        for number, row in enumerate(reader, start=2):
            values = {key: (value.strip() if value else None) for key, value in row.items() if key}
            cleaned = {key: value for key, value in values.items() if value not in (None, "")}
            try:
                units.append(PublicUnit.model_validate(cleaned))
            except ValidationError as error:
                raise UnitListError(f"{path}: line {number}: {describe_validation_error(error)}") from None
    if force is Force.GENDARMERIE and any(not unit.identifiant_public_unite for unit in units):
        raise UnitListError(f"{path}: a gendarmerie unit without identifiant_public_unite")
    return units


def join_units(
    competence: dict[str, Competence], gendarmerie: list[PublicUnit], police: list[PublicUnit]
) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of units.csv for every unit of the competence table, and the unit ids no list describes."""
    communes: dict[str, list[str]] = defaultdict(list)
    names: dict[str, Competence] = {}
    for row in competence.values():
        communes[row.unit_id].append(row.commune_code)
        names.setdefault(row.unit_id, row)
    by_id = {unit_id_for(Force.GENDARMERIE, u.identifiant_public_unite): u for u in gendarmerie}
    police_by_name = {(u.departement, fold_commune_name(u.service)): u for u in police}
    rows, undescribed = [], []
    for unit_id, sample in sorted(names.items()):
        departement = sample.commune_code[:3] if sample.commune_code.startswith("97") else sample.commune_code[:2]
        if sample.force is Force.GENDARMERIE:
            listed = by_id.get(unit_id)
        else:
            listed = police_by_name.get((departement, fold_commune_name(sample.service)))
        if listed is None:
            undescribed.append(unit_id)
        rows.append({
            "unit_id": unit_id, "force": sample.force.value, "name": sample.service, "departement": departement,
            "address": listed.adresse_geographique if listed else "",
            "code_commune_insee": listed.code_commune_insee if listed else "",
            "latitude": "" if listed is None or listed.latitude is None else str(listed.latitude),
            "longitude": "" if listed is None or listed.longitude is None else str(listed.longitude),
            "telephone": listed.telephone if listed else "",
            "communes": "-".join(sorted(communes[unit_id])),
        })
    return rows, undescribed


def write_units(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=UNIT_COLUMNS, delimiter=";", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
