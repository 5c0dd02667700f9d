"""The map of France by département on the national page: plain SVG drawn by the server, no map library, no tile
server, no outside request.

Each département's outline is its communes' polygons (reference/france/boundaries.npz, IGN ADMIN EXPRESS) dissolved
into one surface. The dissolve takes several seconds (101 unions over 35,000 communes), so it runs once per reference
and is kept in a cache file under the state directory (``<state_dir>/cache/departement-shapes-<digest>.npz``, named
after the boundaries and communes files it was made from: a new reference makes a new file). The outlines are then
simplified to about a pixel of the panel they are drawn in, once, when the map is made.

Metropolitan France (Corsica included) fills the main panel; beside it, in a column of insets, Paris and its inner
ring (75, 92, 93, 94: a few pixels each on the main panel) magnified, and the five overseas départements (971 to 976).
Saint-Pierre-et-Miquelon, Saint-Barthélemy and Saint-Martin have no polygon in the reference: the page lists them
under the map when they have points.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from consumers.unit_territory import MapFrame, outline_path
from signalements.settings import Settings
from streams.jurisdiction import CommuneBoundaries, CommuneReference

log = logging.getLogger(__name__)

SHAPES_FORMAT = 1
# The cached outlines' detail, in degrees (about 50 m): finer than a pixel of the smallest inset.
STORED_TOLERANCE_DEG = 0.0005
WIDTH, HEIGHT = 720, 600  # the SVG's viewBox
LABEL_HEIGHT = 15  # an inset's name, above its map
METROPOLITAN = (*(f"{number:02d}" for number in range(1, 96) if number != 20), "2A", "2B")
PETITE_COURONNE = ("75", "92", "93", "94")


@dataclass(frozen=True)
class MapPanel:
    """A part of the map: where it stands in the SVG and which départements it frames."""

    key: str
    label: str  # the inset's name; empty for the main panel
    departements: tuple[str, ...]
    x: float
    y: float
    width: float
    height: float
    magnified: bool = False  # a zoom on départements the main panel draws too


def _inset(number: int, key: str, label: str, departements: tuple[str, ...], magnified: bool = False) -> MapPanel:
    return MapPanel(key, label, departements, 0, number * 100, 112, 96, magnified)


PANELS = (
    MapPanel("metropole", "", METROPOLITAN, 120, 0, 600, 600),
    _inset(0, "petite-couronne", "Paris et sa couronne", PETITE_COURONNE, magnified=True),
    _inset(1, "971", "Guadeloupe", ("971",)),
    _inset(2, "972", "Martinique", ("972",)),
    _inset(3, "973", "Guyane", ("973",)),
    _inset(4, "974", "La Réunion", ("974",)),
    _inset(5, "976", "Mayotte", ("976",)),
)


@dataclass(frozen=True)
class DepartementOutline:
    code: str
    path: str  # an SVG path's d attribute, in its panel's frame


@dataclass(frozen=True)
class DrawnPanel:
    panel: MapPanel
    map_y: float  # where the map starts inside the panel (under the inset's name)
    outlines: list[DepartementOutline]


@dataclass(frozen=True)
class ColourClass:
    """A step of the map's colour scale: départements with ``low`` to ``high`` open points (class 0: none)."""

    number: int
    low: int
    high: int

    @property
    def label(self) -> str:
        if self.number == 0:
            return "aucun point ouvert"
        return str(self.low) if self.low == self.high else f"{self.low} à {self.high}"


def open_point_classes(values: Iterable[int], count: int = 5) -> list[ColourClass]:
    """Class 0 for no open point, then up to ``count`` classes cut at the quantiles of the départements that have
    some (open points are skewed: a few départements hold most, equal steps would put the others in one class)."""
    none = ColourClass(0, 0, 0)
    present = sorted(value for value in values if value > 0)
    if not present:
        return [none]
    highs = sorted({present[math.ceil(len(present) * k / count) - 1] for k in range(1, count + 1)})
    lows = [1, *(high + 1 for high in highs[:-1])]
    return [none, *(ColourClass(n, low, high) for n, (low, high) in enumerate(zip(lows, highs, strict=True), 1))]


def class_of(classes: list[ColourClass], value: int) -> int:
    return next((c.number for c in classes if c.low <= value <= c.high), 0)


def dissolve_by_departement(boundaries: CommuneBoundaries, departement_of: dict[str, str]) -> dict[str, shapely.Geometry]:
    """Each département's surface: the union of its communes' polygons, its gaps filled, simplified to the cached
    detail."""
    grouped: dict[str, list[shapely.Geometry]] = defaultdict(list)
    for code, polygon in zip(boundaries.codes, boundaries.geometries, strict=True):
        if code in departement_of:
            grouped[departement_of[code]].append(polygon)
    unions = {departement: shapely.union_all(polygons) for departement, polygons in grouped.items()}
    return {departement: shapely.simplify(surface, STORED_TOLERANCE_DEG, preserve_topology=True)
            for departement, surface in without_gaps(unions).items()}


def without_gaps(surfaces: dict[str, shapely.Geometry]) -> dict[str, shapely.Geometry]:
    """The holes no other département fills closed: the commune boundaries leave a few gaps of some km² where no
    commune's polygon lies. An enclave (the Enclave des papes, of the Vaucluse, inside the Drôme) stays a hole."""
    codes = sorted(surfaces)
    tree = shapely.STRtree([surfaces[code] for code in codes])

    def enclave(hole: shapely.Polygon, code: str) -> bool:
        others = [tree.geometries[i] for i in tree.query(hole, predicate="intersects") if codes[i] != code]
        covered = shapely.area(shapely.intersection(hole, shapely.union_all(others))) if others else 0.0
        return bool(covered >= shapely.area(hole) / 2)

    return {code: shapely.MultiPolygon([
        shapely.Polygon(part.exterior, [ring for ring in part.interiors if enclave(shapely.Polygon(ring), code)])
        for part in shapely.get_parts(surfaces[code])
    ]) for code in codes}


def shapes_cache_file(settings: Settings, boundaries_file: Path) -> Path:
    """The cache file for this reference: named after the files the outlines are made from."""
    digest = hashlib.sha256(f"{SHAPES_FORMAT}:{STORED_TOLERANCE_DEG}".encode())
    for path in (boundaries_file, settings.commune_reference_dir / "communes.csv"):
        digest.update(path.read_bytes())
    return settings.state_dir / "cache" / f"departement-shapes-{digest.hexdigest()[:16]}.npz"


def _as_multipolygon(surface: shapely.Geometry) -> shapely.MultiPolygon:
    return shapely.MultiPolygon([part for part in shapely.get_parts(surface) if part.geom_type == "Polygon"])


def save_shapes(path: Path, shapes: dict[str, shapely.Geometry]) -> None:
    """Written aside, then renamed: a reader never sees half a file."""
    codes = sorted(shapes)
    _, coordinates, offsets = shapely.to_ragged_array([_as_multipolygon(shapes[code]) for code in codes])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    np.savez_compressed(partial, format=np.array([SHAPES_FORMAT]), codes=np.array(codes), coordinates=coordinates,
                        **{f"offsets{level}": array for level, array in enumerate(offsets)})
    partial.replace(path)


def load_shapes(path: Path) -> dict[str, shapely.Geometry]:
    with np.load(path, allow_pickle=False) as arrays:
        if int(arrays["format"][0]) != SHAPES_FORMAT:
            raise ValueError(f"{path}: format {arrays['format'][0]}, this service reads {SHAPES_FORMAT}")
        levels = sorted(name for name in arrays.files if name.startswith("offsets"))
        surfaces = shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, arrays["coordinates"],
                                             tuple(arrays[name] for name in levels))
        return dict(zip((str(code) for code in arrays["codes"]), surfaces, strict=True))


def departement_shapes(settings: Settings, departement_of: dict[str, str]) -> dict[str, shapely.Geometry]:
    """The départements' surfaces from the cache file, dissolved and cached first if there is none yet (each commune
    in ``departement_of``'s département); none without commune boundaries."""
    if settings.boundaries_file is None:
        return {}
    cache = shapes_cache_file(settings, settings.boundaries_file)
    if cache.exists():
        try:
            return load_shapes(cache)
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
            log.warning("département outlines: unreadable cache %s (%s), dissolving again", cache, error)
    started = time.perf_counter()
    shapes = dissolve_by_departement(CommuneBoundaries.load(settings.boundaries_file), departement_of)
    log.info("département outlines dissolved from the commune boundaries in %.1f s", time.perf_counter() - started)
    try:
        save_shapes(cache, shapes)
    except OSError as error:
        log.warning("département outlines: cannot write the cache %s (%s); dissolving again at next start", cache, error)
    return shapes


def draw_panel(panel: MapPanel, shapes: dict[str, shapely.Geometry]) -> DrawnPanel | None:
    """The panel's départements in its frame, simplified to about a pixel (islets and slivers under a pixel left
    out); None when the reference has none of them."""
    present = [code for code in panel.departements if code in shapes]
    if not present:
        return None
    map_y = LABEL_HEIGHT if panel.label else 0
    west, south, east, north = (float(v) for v in shapely.total_bounds([shapes[code] for code in present]))
    frame = MapFrame.around(west, south, east, north, panel.width, panel.height - map_y, margin=4 if panel.label else 10)
    pixel_area = (1 / frame.zoom) ** 2
    return DrawnPanel(panel, map_y, [DepartementOutline(code, outline_path(shapes[code], frame, pixel_area))
                                     for code in present])


class FranceMap:
    """The départements' names and their outlines in every panel, drawn once."""

    width, height = WIDTH, HEIGHT

    def __init__(self, names: dict[str, str], shapes: dict[str, shapely.Geometry],
                 panels: tuple[MapPanel, ...] = PANELS) -> None:
        self.names = names
        self.panels = [drawn for panel in panels if (drawn := draw_panel(panel, shapes)) is not None]
        self.drawn = {outline.code for drawn in self.panels if not drawn.panel.magnified for outline in drawn.outlines}

    @classmethod
    def from_settings(cls, settings: Settings, reference: CommuneReference | None = None) -> FranceMap:
        """The map of the configured boundaries, named and grouped by the commune reference (read unless given)."""
        communes = reference or CommuneReference.load(settings.commune_reference_dir)
        departement_of = {code: commune.departement for code, commune in communes.communes.items()}
        return cls(communes.departement_names, departement_shapes(settings, departement_of))

    def name_of(self, code: str) -> str:
        return self.names.get(code, code)
