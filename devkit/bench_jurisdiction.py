"""Benchmark of the jurisdiction lookup alone, and of the reference's build and load: prints one JSON object.

Single-threaded on purpose: the figures are resolutions per second of one core. Places are prepared before the
clock starts; each method is timed over real places of the reference (every commune by code, real postcode and
name pairs in citizens' spellings, points inside the boundaries).
"""

from __future__ import annotations

import gc
import math
import os
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

import shapely

from schemas.reports import Jurisdiction, Place
from signalements.settings import PROJECT_ROOT, Settings
from streams.commune_boundaries import CommuneBoundaries
from streams.jurisdiction import JurisdictionReference, folded_name

SOURCES_DIR = PROJECT_ROOT / "reference" / "sources"


def _rate(reference: JurisdictionReference, places: list[Place], rounds: int) -> tuple[float, float]:
    """Resolutions per second over ``rounds`` passes, and the share of places that resolved (a sanity check)."""
    resolve = reference.resolve_jurisdiction
    resolved = sum(isinstance(resolve(place), Jurisdiction) for place in places)  # also warms the caches
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(rounds):
            folded_name.cache_clear()  # time name folding itself, not the cache of the previous pass
            for place in places:
                resolve(place)
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return rounds * len(places) / elapsed, resolved / len(places)


def _citizen_spelling(name: str, rng: random.Random) -> str:
    """How people write a commune: upper case, without hyphens, "St" for "Saint"."""
    variants = (name.upper(), name.replace("-", " ").lower(), name.replace("Saint-", "St "), name)
    return rng.choice(variants)


def synthetic_boundaries(reference: JurisdictionReference, vertices: int) -> CommuneBoundaries:
    """One polygon of ``vertices`` vertices per commune on a grid over metropolitan France, when no real boundaries
    file is configured: the real count and a realistic complexity, so the index and the point-in-polygon cost are
    those of ADMIN EXPRESS."""
    codes = sorted(reference.commune_reference.communes)
    side = math.ceil(math.sqrt(len(codes)))
    west, south, width, height = -4.8, 42.3, 13.0, 8.8
    step_x, step_y = width / side, height / side
    geometries = []
    for index in range(len(codes)):
        cx, cy = west + (index % side + 0.5) * step_x, south + (index // side + 0.5) * step_y
        ring = [
            (cx + 0.5 * step_x * math.cos(2 * math.pi * k / vertices) * (0.9 + 0.1 * math.sin(7 * k)),
             cy + 0.5 * step_y * math.sin(2 * math.pi * k / vertices) * (0.9 + 0.1 * math.sin(7 * k)))
            for k in range(vertices)
        ]
        geometries.append(shapely.Polygon(ring))
    return CommuneBoundaries(codes, geometries)


def _resident_bytes() -> int:
    """The process's resident memory now (Linux), to see what holding the reference costs."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _timed_build() -> float | None:
    """Seconds to build the commune reference from the installed npm sources (None when they are not installed)."""
    if not (SOURCES_DIR / "node_modules").exists():
        return None
    from ops.commune_reference import build_commune_reference

    with tempfile.TemporaryDirectory() as output:
        started = time.perf_counter()
        build_commune_reference(SOURCES_DIR, Path(output), install=False)
        return time.perf_counter() - started


def run_jurisdiction_bench(settings: Settings, rounds: int = 3, vertices: int = 64, seed: int = 1) -> dict[str, object]:
    build_s = _timed_build()
    gc.collect()
    rss_before = _resident_bytes()
    started = time.perf_counter()
    reference = JurisdictionReference.from_settings(settings)
    load_s = time.perf_counter() - started
    rss_after = _resident_bytes()
    tracemalloc.start()
    JurisdictionReference.from_settings(settings)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    rng = random.Random(seed)
    communes = list(reference.commune_reference.communes.values())
    by_code = [Place(commune_code=c.code) for c in communes]
    by_name = [
        Place(postcode=rng.choice(c.postcodes), commune_name=_citizen_spelling(c.name, rng))
        for c in communes if c.postcodes
    ]
    boundaries_source = str(settings.boundaries_file) if settings.boundaries_file else None
    boundaries_load_s: float | None = None
    if settings.boundaries_file is not None:
        started = time.perf_counter()
        CommuneBoundaries.load(settings.boundaries_file)
        boundaries_load_s = time.perf_counter() - started
    if reference.boundaries is None:
        reference.boundaries = synthetic_boundaries(reference, vertices)
        boundaries_source = f"synthetic: {len(communes)} polygons of {vertices} vertices"
    boundaries = reference.boundaries
    points = [shapely.get_coordinates(shapely.point_on_surface(g))[0] for g in boundaries.geometries]
    by_coordinates = [Place(latitude=float(y), longitude=float(x)) for x, y in points]

    code_rate, code_ok = _rate(reference, by_code, rounds)
    name_rate, name_ok = _rate(reference, by_name, rounds)
    coordinates_rate, coordinates_ok = _rate(reference, by_coordinates, max(1, rounds // 3))
    return {
        "reference_version": reference.version,
        "communes": len(communes),
        "build_s": round(build_s, 3) if build_s is not None else "npm sources not installed",
        "load_s": round(load_s, 3),
        "load_peak_python_mb": round(traced_peak / 1e6, 1),
        "load_rss_growth_mb": round((rss_after - rss_before) / 1e6, 1),
        "resolutions_per_s_per_core": {
            "code_insee": round(code_rate),
            "postcode_name": round(name_rate),
            "coordinates": round(coordinates_rate),
        },
        "resolved_share": {
            "code_insee": round(code_ok, 4), "postcode_name": round(name_ok, 4), "coordinates": round(coordinates_ok, 4),
        },
        "boundaries": boundaries_source,
        "boundaries_bytes": settings.boundaries_file.stat().st_size if settings.boundaries_file else None,
        "boundaries_polygons": len(boundaries.codes),
        "boundaries_load_s": round(boundaries_load_s, 3) if boundaries_load_s is not None else None,
    }
