"""Which unit is competent for a report: commune, département, region, force, unit and the département's CROSS.

Two references meet here:
- the commune reference (reference/france/, built from the Code officiel géographique and La Poste's postcodes by
  `signalements reference build`): every code a report may carry (current, arrondissement, délégué, former) with the
  routable code it stands for, and every (postcode, name) pair citizens write;
- the competence table, in the open-data format "Compétence territoriale gendarmerie et police nationales": for each
  routable code, the force (PN or GN) and the unit (id_service, service).

Resolution, in this order, each recorded as the method: code INSEE → postcode and commune name → coordinates in a
commune boundary (the boundaries shipped in reference/france, or a file of one's own) → for a point in no boundary,
the nearest commune position (town hall) within POSITION_FALLBACK_M → otherwise unrouted, with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from pathlib import Path

from schemas.channels import Force
from schemas.reports import Jurisdiction, Place, ResolutionMethod
from signalements.settings import Settings
from streams.commune_boundaries import CommuneBoundaries
from streams.place_names import fold_commune_name, name_variants

COMPETENCE_FILE = "competence-territoriale.csv"
COMPETENCE_COLUMNS = (
    "code_commune", "libelle_commune", "institution", "id_service", "service", "code_postal", "codes_postaux",
)
DEMO_UNITS_FILE = "demo-units.txt"
# A code of the COG stands for a routable commune; when one code has several roles (a commune déléguée keeps the
# code of its commune nouvelle), the first of these wins.
KIND_PRECEDENCE = ("commune", "arrondissement", "deleguee", "associee", "former")


class NameEvidence(IntEnum):
    """What a (postcode, name) pair of the commune reference rests on, strongest first: where two names of one
    postcode are spelt alike, the stronger decides (postcodes.csv, column ``evidence``)."""

    COMMUNE = 0  # the commune's own name in the COG (a city's with an arrondissement's postcode)
    LA_POSTE_NAME = 1  # La Poste's commune name
    LA_POSTE_LABEL = 2  # La Poste's delivery label
    DELEGUEE = 4  # a commune déléguée's or associée's name, with a postcode of its commune nouvelle
    FORMER = 5  # a former commune's name (the COG's history), with a postcode of the commune it merged into


# A position in no commune's polygon is a coast, a harbour, a border blurred by the polygons' simplification (about
# 20 m) or a commune without a polygon in the source: its nearest town hall within this distance decides.
POSITION_FALLBACK_M = 3_000.0
# A report placed by its code or its name whose position is farther than this outside that commune is flagged (not
# rejected): beyond the simplification of the polygons and a pin dropped on the wrong side of a street.
POSITION_CHECK_M = 3_000.0

folded_name = lru_cache(maxsize=65536)(fold_commune_name)


@dataclass(frozen=True, slots=True)
class Commune:
    """A routable commune: a current commune of the COG or a municipal arrondissement of Paris, Lyon, Marseille."""

    code: str
    name: str
    departement: str
    region: str
    postcodes: tuple[str, ...]
    city_code: str
    population: int


@dataclass(frozen=True, slots=True)
class Competence:
    """One row of the competence table: who is competent for one commune."""

    commune_code: str
    commune_name: str
    force: Force
    id_service: str
    service: str
    postcodes: tuple[str, ...]

    @property
    def unit_id(self) -> str:
        return unit_id_for(self.force, self.id_service)

    def as_row(self) -> dict[str, str]:
        """The row in the open-data format (also the value published on the reference topic)."""
        return {
            "code_commune": self.commune_code,
            "libelle_commune": self.commune_name,
            "institution": self.force.value,
            "id_service": self.id_service,
            "service": self.service,
            "code_postal": self.postcodes[0] if self.postcodes else "",
            "codes_postaux": "-".join(self.postcodes),
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Competence:
        missing = [column for column in COMPETENCE_COLUMNS if column not in row]
        if missing:
            raise ValueError(f"competence row misses {', '.join(missing)}")
        code = row["code_commune"].strip().upper()
        if len(code) != 5:
            raise ValueError(f"code_commune {code!r}: a code INSEE has 5 characters")
        try:
            force = Force(row["institution"].strip().upper())
        except ValueError:
            raise ValueError(f"institution {row['institution']!r} of {code}: expected PN or GN") from None
        if not row["id_service"].strip():
            raise ValueError(f"id_service of {code} is empty")
        postcodes = tuple(p for p in (row["codes_postaux"] or row["code_postal"]).split("-") if p.strip())
        return cls(code, row["libelle_commune"], force, row["id_service"].strip(), row["service"].strip(), postcodes)


@dataclass(frozen=True, slots=True)
class CommuneCompetence:
    """A commune with its competent unit: what traffic generators and lag reporting need to know of a place."""

    code: str
    name: str
    departement: str
    postcodes: tuple[str, ...]
    force: Force
    unit_id: str
    unit_name: str


@dataclass(frozen=True)
class Unrouted:
    reason: str
    detail: str


def unit_id_for(force: Force, id_service: str) -> str:
    """Unit ids are ``pn-<id_service>`` or ``gn-<id_service>`` in lower case: stable, and valid in topic names."""
    return f"{force.value.lower()}-{id_service.strip().lower()}"


def cross_unit_id_for(departement: str) -> str:
    """Each département's drug-intelligence cell (CROSS) has its own queue, ``unit.cross-<département>``."""
    return f"cross-{departement.lower()}"


class CommuneReference:
    """The COG and La Poste, compacted: codes and (postcode, folded name) pairs, each to a routable commune."""

    def __init__(
        self, communes: dict[str, Commune], code_aliases: dict[str, str],
        postcode_names: dict[tuple[str, str], str], departement_names: dict[str, str], version: str,
        former_names: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.communes = communes
        self.code_aliases = code_aliases
        self.postcode_names = postcode_names
        self.departement_names = departement_names
        self.version = version
        # For a postcode alone and a name alone: the routable communes each postcode and each name stands for. A
        # city with arrondissements gives way to them (75011 is the 11th arrondissement, not Paris as a whole).
        cities = {c.city_code for c in communes.values() if c.city_code}
        self.city_arrondissements: dict[str, set[str]] = {}
        for commune in communes.values():
            if commune.city_code:
                self.city_arrondissements.setdefault(commune.city_code, set()).add(commune.code)
        self.postcode_communes: dict[str, set[str]] = {}
        for commune in communes.values():
            if commune.code not in cities:
                for postcode in commune.postcodes:
                    self.postcode_communes.setdefault(postcode, set()).add(commune.code)
        # A former commune's name, alone, is read only where no current name matches: "Levens" is the town of the
        # Alpes-Maritimes, not also the village merged into Majastres in 1951.
        self.name_communes: dict[str, set[str]] = {}
        self.former_name_communes: dict[str, set[str]] = {}
        for commune in communes.values():
            self.name_communes.setdefault(folded_name(commune.name), set()).add(commune.code)
        for key, code in postcode_names.items():  # La Poste's spellings, communes déléguées' and former names
            names = self.former_name_communes if key in former_names else self.name_communes
            names.setdefault(key[1], set()).add(code)

    @classmethod
    def load(cls, directory: Path) -> CommuneReference:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        communes: dict[str, Commune] = {}
        aliases: dict[str, tuple[int, str]] = {}
        with (directory / "communes.csv").open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter=";"):
                code, kind = row["code"], row["kind"]
                if kind in ("commune", "arrondissement"):
                    communes[code] = Commune(
                        code, row["name"], row["departement"], row["region"],
                        tuple(p for p in row["postcodes"].split("-") if p), row["city_code"], int(row["population"]),
                    )
                rank = KIND_PRECEDENCE.index(kind)
                if code not in aliases or rank < aliases[code][0]:
                    aliases[code] = (rank, row["routable_code"])
        postcode_names: dict[tuple[str, str], str] = {}
        former_names: set[tuple[str, str]] = set()
        with (directory / "postcodes.csv").open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter=";"):
                key = (row["postcode"], row["folded_name"])
                postcode_names[key] = row["routable_code"]
                if int(row["evidence"]) == NameEvidence.FORMER:
                    former_names.add(key)
        with (directory / "departements.csv").open(newline="", encoding="utf-8") as handle:
            departement_names = {row["code"]: row["name"] for row in csv.DictReader(handle, delimiter=";")}
        return cls(
            communes, {code: target for code, (_, target) in aliases.items()}, postcode_names, departement_names,
            str(manifest["version"]), frozenset(former_names),
        )

    def by_code(self, code: str) -> Commune | None:
        """A current, arrondissement, délégué, associé or former code INSEE, as the commune that answers for it."""
        target = self.code_aliases.get(code.upper())
        return self.communes.get(target) if target else None

    def by_postcode_name(self, postcode: str, name: str) -> Commune | None:
        """The commune a postcode and a name written with it stand for, the name with or without its article, an
        arrondissement with its ordinal ("Paris 1er", "Marseille 13ème arrondissement")."""
        for variant in name_variants(folded_name(name)):
            target = self.postcode_names.get((postcode, variant))
            if target:
                return self.communes.get(target)
        return None

    def by_postcode(self, postcode: str) -> list[Commune]:
        """The communes a postcode covers (several, for most postcodes of the countryside)."""
        return self._communes(self.postcode_communes.get(postcode, set()))

    def by_name(self, name: str, departement: str | None = None) -> list[Commune]:
        """The communes a name alone stands for, in France or in one département (homonyms are common); a former
        commune's name only where no current commune, La Poste spelling or commune déléguée bears it."""
        variants = name_variants(folded_name(name))
        for names in (self.name_communes, self.former_name_communes):
            for variant in variants:
                found = [c for c in self._communes(names.get(variant, set()))
                         if departement is None or c.departement == departement]
                if found:
                    return found
        return []

    def arrondissements_of(self, city_code: str) -> list[Commune]:
        return self._communes(self.city_arrondissements.get(city_code, set()))

    def _communes(self, codes: Iterable[str]) -> list[Commune]:
        return sorted((self.communes[code] for code in codes if code in self.communes), key=lambda c: c.code)


class CompetenceTable:
    """The per-commune competence table of the two forces, in the open-data format."""

    def __init__(self, rows: Iterable[Competence], version: str) -> None:
        self.rows = {row.commune_code: row for row in rows}
        self.version = version

    @classmethod
    def load(cls, directory: Path) -> CompetenceTable:
        path = directory / COMPETENCE_FILE
        data = path.read_bytes()
        rows = read_competence_rows(data.decode("utf-8-sig").splitlines())
        # The version names the table's origin and content: a demo table says so in its directory name.
        return cls(rows, version=f"{directory.name}-{hashlib.sha256(data).hexdigest()[:8]}")


def read_competence_rows(lines: Iterable[str]) -> list[Competence]:
    """Rows of the official CSV (';'-separated); a bad row is an error naming its line, never silently skipped."""
    reader = csv.DictReader(lines, delimiter=";")
    rows = []
    for number, row in enumerate(reader, start=2):
        try:
            rows.append(Competence.from_row(row))
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from None
    return rows


def read_demo_unit_ids(directory: Path) -> list[str]:
    """The few units the local run, the demo traffic and docker-compose serve (a whole country is thousands)."""
    lines = (directory / DEMO_UNITS_FILE).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# An ambiguous place's reason names at most this many candidates (an operator picks one, or asks the reporter).
MAX_CANDIDATES = 10


def ambiguous(why: str, candidates: list[Commune]) -> Unrouted:
    named = ", ".join(f"{c.code} {c.name} ({c.departement})" for c in candidates[:MAX_CANDIDATES])
    more = f" and {len(candidates) - MAX_CANDIDATES} more" if len(candidates) > MAX_CANDIDATES else ""
    return Unrouted("ambiguous_place", f"{why}: {named}{more}")


def departement_of_postcode(postcode: str) -> str | None:
    """The département a postcode belongs to, where its first digits say it (Corsica's 20 is two départements)."""
    if postcode.startswith("97"):
        return postcode[:3]
    if postcode.startswith("20"):
        return None
    return postcode[:2]


class JurisdictionReference:
    """Communes, competence and (optionally) boundaries: everything resolve_jurisdiction needs, held in memory."""

    def __init__(
        self, communes: CommuneReference, competence: CompetenceTable, boundaries: CommuneBoundaries | None = None,
        demo_unit_ids: list[str] | None = None,
    ) -> None:
        self.commune_reference = communes
        self.competence = competence
        self.boundaries = boundaries
        self.demo_unit_ids = demo_unit_ids or []
        self.base_version = f"{communes.version}/{competence.version}"
        self.version = self.base_version
        self._baseline = dict(competence.rows)
        self._live: dict[str, Competence] = {}
        # Jurisdictions are immutable: built once per (commune, method), so a lookup is two dictionary reads.
        self._resolved: dict[tuple[str, ResolutionMethod], Jurisdiction | Unrouted] = {}

    @classmethod
    def load(
        cls, competence_dir: Path, commune_dir: Path, boundaries_file: Path | None = None,
    ) -> JurisdictionReference:
        boundaries = CommuneBoundaries.load(boundaries_file) if boundaries_file else None
        demo_units = read_demo_unit_ids(competence_dir) if (competence_dir / DEMO_UNITS_FILE).exists() else []
        return cls(CommuneReference.load(commune_dir), CompetenceTable.load(competence_dir), boundaries, demo_units)

    @classmethod
    def from_settings(cls, settings: Settings) -> JurisdictionReference:
        return cls.load(settings.reference_dir, settings.commune_reference_dir, settings.boundaries_file)

    def commune_position(self, code: str) -> tuple[float, float] | None:
        """A point of the commune (town hall, else inside its polygon); None without boundaries loaded."""
        return self.boundaries.position_of(code) if self.boundaries is not None else None

    @property
    def unit_ids(self) -> list[str]:
        """Every territorial unit of the competence table and every CROSS."""
        units = {row.unit_id for row in self.competence.rows.values()}
        crosses = {cross_unit_id_for(c.departement) for c in self.commune_reference.communes.values()}
        return sorted(units | crosses)

    @property
    def communes(self) -> list[CommuneCompetence]:
        """Every commune (or arrondissement) of the reference that has a competent unit, with that unit."""
        communes = self.commune_reference.communes
        return [
            CommuneCompetence(
                code=code, name=communes[code].name, departement=communes[code].departement,
                postcodes=communes[code].postcodes, force=row.force, unit_id=row.unit_id, unit_name=row.service,
            )
            for code, row in sorted(self.competence.rows.items())
            if code in communes
        ]

    def communes_of_units(self, unit_ids: Iterable[str]) -> list[Commune]:
        """The communes whose competent unit is one of ``unit_ids`` (the demo traffic's targets)."""
        wanted = set(unit_ids)
        communes = self.commune_reference.communes
        return [
            communes[code] for code, row in sorted(self.competence.rows.items())
            if row.unit_id in wanted and code in communes and communes[code].postcodes
        ]

    def set_competence(self, row: Competence) -> None:
        """A live change of one commune's unit (from the reference topic): takes effect on the next report."""
        self.competence.rows[row.commune_code] = row
        if self._baseline.get(row.commune_code) == row:
            self._live.pop(row.commune_code, None)
        else:
            self._live[row.commune_code] = row
        # The version names the live changes too, so an enriched report says which reference decided; workers that
        # applied the same changes share it.
        live = sorted(json.dumps(change.as_row(), sort_keys=True) for change in self._live.values())
        digest = hashlib.sha256("\n".join(live).encode()).hexdigest()[:8]
        self.version = f"{self.base_version}+live-{digest}" if live else self.base_version
        self._resolved = {}  # every cached jurisdiction carries the version

    def resolve_jurisdiction(self, place: Place) -> Jurisdiction | Unrouted:
        """The first of the ways below that finds the place, or unrouted with what was tried (or the candidates)."""
        tried: list[str] = []
        for resolve in (self._by_code, self._by_postcode_and_name, self._by_coordinates, self._by_postcode_alone,
                        self._by_name_alone):
            result = resolve(place, tried)
            if isinstance(result, Jurisdiction):
                return self._checked_position(result, place)
            if result is not None:
                return result
        if not tried:
            return Unrouted("no_place", "the report has no code INSEE, postcode, commune name or coordinates")
        return Unrouted("unknown_commune", "no commune of the reference matches the " + ", ".join(tried))

    def _checked_position(self, jurisdiction: Jurisdiction, place: Place) -> Jurisdiction:
        """A commune found by code or name, and a position that lies well outside it: say how far."""
        if (self.boundaries is None or place.latitude is None or place.longitude is None
                or jurisdiction.method in (ResolutionMethod.COORDINATES, ResolutionMethod.POSITION)):
            return jurisdiction
        code = jurisdiction.commune_code
        # A city with arrondissements is drawn as them: the nearest one tells.
        codes = [code] + [c.code for c in self.commune_reference.arrondissements_of(code)]
        distances = [d for c in codes
                     if (d := self.boundaries.distance_outside_m(c, place.latitude, place.longitude)) is not None]
        if not distances or min(distances) <= POSITION_CHECK_M:
            return jurisdiction
        return jurisdiction.model_copy(update={"position_outside_commune_m": round(min(distances))})

    def _by_code(self, place: Place, tried: list[str]) -> Jurisdiction | Unrouted | None:
        if not place.commune_code:
            return None
        commune = self.commune_reference.by_code(place.commune_code)
        if commune is not None:
            return self._jurisdiction(commune, ResolutionMethod.CODE_INSEE)
        tried.append("code INSEE")
        return None

    def _by_postcode_and_name(self, place: Place, tried: list[str]) -> Jurisdiction | Unrouted | None:
        if not (place.postcode and place.commune_name):
            return None
        commune = self.commune_reference.by_postcode_name(place.postcode, place.commune_name)
        if commune is not None:
            return self._jurisdiction(commune, ResolutionMethod.POSTCODE_NAME)
        tried.append("postcode and name")
        return None

    def _by_coordinates(self, place: Place, tried: list[str]) -> Jurisdiction | Unrouted | None:
        if place.latitude is None or place.longitude is None:
            return None
        if self.boundaries is None:
            tried.append("coordinates (no boundaries loaded)")
            return None
        reference = self.commune_reference
        code = self.boundaries.commune_at(place.latitude, place.longitude)
        commune = reference.by_code(code) if code else None
        if commune is not None:
            return self._jurisdiction(commune, ResolutionMethod.COORDINATES)
        code = self.boundaries.commune_near(place.latitude, place.longitude, POSITION_FALLBACK_M)
        commune = reference.by_code(code) if code else None
        if commune is not None:
            return self._jurisdiction(commune, ResolutionMethod.POSITION)
        tried.append(f"coordinates (in no commune, no town hall within {POSITION_FALLBACK_M / 1000:.0f} km)")
        return None

    def _by_postcode_alone(self, place: Place, tried: list[str]) -> Jurisdiction | Unrouted | None:
        if not place.postcode or place.commune_name:
            return None
        found = self.commune_reference.by_postcode(place.postcode)
        if len(found) == 1:
            return self._jurisdiction(found[0], ResolutionMethod.POSTCODE)
        if found:
            return ambiguous(f"postcode {place.postcode} covers several communes", found)
        tried.append("postcode")
        return None

    def _by_name_alone(self, place: Place, tried: list[str]) -> Jurisdiction | Unrouted | None:
        if not place.commune_name:
            return None
        # Without a postcode, in all of France; with one that did not match the name, in its département only.
        departement = departement_of_postcode(place.postcode) if place.postcode else None
        found = self.commune_reference.by_name(place.commune_name, departement)
        if len(found) == 1:
            return self._jurisdiction(found[0], ResolutionMethod.COMMUNE_NAME)
        where = f" in département {departement}" if departement else ""
        if found:
            return ambiguous(f"the name {place.commune_name!r} names several communes{where}", found)
        tried.append(f"name{where}")
        return None

    def _jurisdiction(self, commune: Commune, method: ResolutionMethod) -> Jurisdiction | Unrouted:
        key = (commune.code, method)
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolved[key] = self._build(commune, method)
        return resolved

    def _build(self, commune: Commune, method: ResolutionMethod) -> Jurisdiction | Unrouted:
        row = self.competence.rows.get(commune.code)
        if row is None and commune.city_code:
            row = self.competence.rows.get(commune.city_code)  # a table listing Paris, Lyon, Marseille as a whole
        if row is None:
            return Unrouted("no_competent_unit", f"commune {commune.code} has no row in the competence table")
        return Jurisdiction(
            commune_code=commune.code,
            commune_name=commune.name,
            departement=commune.departement,
            region=commune.region,
            force=row.force,
            unit_id=row.unit_id,
            unit_name=row.service,
            cross_unit_id=cross_unit_id_for(commune.departement),
            method=method,
            reference_version=self.version,
        )
