"""Ground-truth traffic of dealing points on the boundaries between units: each point within 100 m of the limit
between two communes whose competent units differ (a police and a gendarmerie zone, two commissariats), each
citizen's position jittered around it, and each report addressed to the commune its own position falls in — so
reports of one point resolve to either unit, as at the edge of real towns.

Built on the shipped boundaries (reference/france): the shared limits of adjacent communes of different units in
the départements asked for. Used by ``signalements bench-dedup`` to measure merging at unit boundaries.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import shapely

from devkit.citizen_writing import offset_position
from devkit.dedup_traffic import MIN_SPACING_M, TruthReport
from schemas.channels import Channel
from streams.commune_boundaries import CommuneBoundaries
from streams.jurisdiction import CommuneCompetence, JurisdictionReference

# Around Paris (police and gendarmerie zones meet in the outer départements), Lyon, Marseille, Grenoble, Lille.
BOUNDARY_DEPARTEMENTS = ("75", "92", "93", "94", "77", "78", "91", "95", "69", "13", "38", "59")
WITHIN_BOUNDARY_M = 100.0


@dataclass(frozen=True)
class UnitBoundary:
    """The shared limit of two adjacent communes of different units."""

    line: shapely.Geometry
    communes: tuple[str, str]


def unit_boundaries(reference: JurisdictionReference, departements: tuple[str, ...] = BOUNDARY_DEPARTEMENTS,
                    ) -> list[UnitBoundary]:
    boundaries = _boundaries(reference)
    units = {c.code: c.unit_id for c in reference.communes if c.departement in departements}
    index = {code: number for number, code in enumerate(boundaries.codes) if code in units}
    found: list[UnitBoundary] = []
    for code, number in sorted(index.items()):
        polygon = boundaries.geometries[number]
        for other_number in boundaries.tree.query(polygon, predicate="intersects"):
            other = boundaries.codes[int(other_number)]
            if other <= code or other not in units or units[other] == units[code]:
                continue
            line = shapely.intersection(polygon.boundary, boundaries.geometries[int(other_number)].boundary)
            if shapely.length(line) > 0.002:  # at least ~150 m of common limit, not a corner touching
                found.append(UnitBoundary(line, (code, other)))
    return found


def _boundaries(reference: JurisdictionReference) -> CommuneBoundaries:
    if reference.boundaries is None:
        raise RuntimeError("boundary traffic needs the commune boundaries (SIGNALEMENTS_BOUNDARIES_FILE)")
    return reference.boundaries


def boundary_traffic(reference: JurisdictionReference, points: int, seed: int = 1, max_reports_per_point: int = 4,
                     jitter_m: float = 12.0) -> list[TruthReport]:
    """Reports of ``points`` dealing points within 100 m of a unit boundary, at least 200 m apart, shuffled."""
    rng = random.Random(seed)
    boundaries = _boundaries(reference)
    limits = unit_boundaries(reference)
    communes = {c.code: c for c in reference.communes}
    start = datetime.now(UTC) - timedelta(days=2)
    placed: list[tuple[float, float]] = []
    reports: list[TruthReport] = []
    counter = 0
    while len(placed) < points:
        limit = rng.choice(limits)
        on_line = shapely.line_interpolate_point(limit.line, rng.random(), normalized=True)
        distance, bearing = rng.uniform(0, WITHIN_BOUNDARY_M), rng.uniform(0, 2 * math.pi)
        point = offset_position((shapely.get_y(on_line), shapely.get_x(on_line)),
                                distance * math.cos(bearing), distance * math.sin(bearing))
        if any(_metres(point, other) < MIN_SPACING_M for other in placed):
            continue
        placed.append(point)
        point_id = f"b{len(placed):06d}"
        for citizen in range(rng.randint(1, max_reports_per_point)):
            spread, direction = min(abs(rng.gauss(0, 1)), 2.5) * jitter_m, rng.uniform(0, 2 * math.pi)
            seen_at = offset_position(point, spread * math.cos(direction), spread * math.sin(direction))
            code = boundaries.commune_at(*seen_at)
            commune = communes.get(code) if code else None
            if commune is None or not commune.postcodes:
                continue
            counter += 1
            submission_id = f"mc-b{seed}-{counter:08d}"
            at = start + timedelta(minutes=rng.randint(0, 24 * 60))
            body = _portal_body(commune, seen_at, submission_id, at, f"Point {point_id}, citoyen {citizen}")
            reports.append(TruthReport(point_id, Channel.MONCOMMISSARIAT, submission_id, body, commune.unit_id))
    rng.shuffle(reports)
    return reports


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    north = (a[0] - b[0]) * 111_195
    east = (a[1] - b[1]) * 111_195 * math.cos(math.radians(a[0]))
    return math.hypot(north, east)


def _portal_body(commune: CommuneCompetence, position: tuple[float, float], submission_id: str, at: datetime,
                 words: str) -> dict[str, object]:
    # The citizen's position, and the commune it falls in as the portal's address search gives it; no street
    # address, so only the positions can merge them (the street rules are measured by the main traffic).
    place = {
        "label": f"{commune.postcodes[0]} {commune.name}", "postcode": commune.postcodes[0],
        "citycode": commune.code, "city": commune.name, "latitude": position[0], "longitude": position[1],
    }
    report = {"kind": "dealing_point", "place": place, "activity": "street_sales", "description": words}
    return {"submission_id": submission_id, "submitted_at": at.isoformat(), "report": report}
