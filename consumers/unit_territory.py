"""A unit's territory on the desk's map: the communes it is competent for, drawn from the commune boundaries
(reference/france/boundaries.npz), and the projection the cases' points share with them.

Plain SVG paths, projected on the server (equirectangular: a unit's territory, even a département's for a CROSS, is
small enough) and simplified to about a pixel, so the page needs no map library, no tile server and no outside
request: it works on a closed network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import shapely

from streams.jurisdiction import JurisdictionReference

# The smallest area the map shows, in degrees (about a kilometre): one case alone does not fill it.
MIN_SPAN_DEGREES = 0.01


@dataclass(frozen=True)
class MapFrame:
    """Longitudes and latitudes to the page's pixels."""

    mid_lat: float
    mid_lon: float
    scale_x: float
    zoom: float
    width: float
    height: float

    @classmethod
    def around(cls, west: float, south: float, east: float, north: float,
               width: float = 640, height: float = 420, margin: float = 24) -> MapFrame:
        mid_lat, mid_lon = (south + north) / 2, (west + east) / 2
        scale_x = math.cos(math.radians(mid_lat))
        span_x = max((east - west) * scale_x, MIN_SPAN_DEGREES)
        span_y = max(north - south, MIN_SPAN_DEGREES)
        zoom = min((width - 2 * margin) / span_x, (height - 2 * margin) / span_y)
        return cls(round(mid_lat, 6), round(mid_lon, 6), scale_x, round(zoom, 3), width, height)

    def project(self, latitude: float, longitude: float) -> tuple[float, float]:
        x = self.width / 2 + (longitude - self.mid_lon) * self.scale_x * self.zoom
        y = self.height / 2 - (latitude - self.mid_lat) * self.zoom
        return round(x, 1), round(y, 1)


@dataclass(frozen=True)
class CommuneOutline:
    code: str
    name: str
    path: str  # an SVG path's d attribute


class UnitTerritories:
    """For each unit the desk serves: its communes' polygons, and their outlines in a given frame."""

    def __init__(self, reference: JurisdictionReference, unit_ids: Iterable[str]) -> None:
        self._communes: dict[str, list[tuple[str, str, shapely.Geometry]]] = {}
        boundaries = reference.boundaries
        if boundaries is None:
            return
        polygons = dict(zip(boundaries.codes, boundaries.geometries, strict=True))
        wanted = set(unit_ids)
        for commune in reference.communes:
            # A territorial unit has its communes; a CROSS (cross-<département>) every commune of its département.
            for unit_id in {commune.unit_id, f"cross-{commune.departement.lower()}"} & wanted:
                polygon = polygons.get(commune.code)
                if polygon is not None:
                    self._communes.setdefault(unit_id, []).append((commune.code, commune.name, polygon))
        self._outlines = lru_cache(maxsize=64)(self._draw)

    def bounds(self, unit_id: str) -> tuple[float, float, float, float] | None:
        """West, south, east, north of the unit's territory; None if no commune of it has a polygon."""
        communes = self._communes.get(unit_id)
        if not communes:
            return None
        west, south, east, north = shapely.total_bounds([polygon for _, _, polygon in communes])
        return float(west), float(south), float(east), float(north)

    def outlines(self, unit_id: str, frame: MapFrame) -> list[CommuneOutline]:
        return self._outlines(unit_id, frame) if unit_id in self._communes else []

    def _draw(self, unit_id: str, frame: MapFrame) -> list[CommuneOutline]:
        return [CommuneOutline(code, name, outline_path(polygon, frame)) for code, name, polygon in self._communes[unit_id]]


def outline_path(surface: shapely.Geometry, frame: MapFrame, smallest_ring: float = 0.0) -> str:
    """A polygon or multipolygon as an SVG path's d attribute in the frame, simplified to about a pixel; rings
    enclosing less than ``smallest_ring`` square degrees (islets, slivers between simplified neighbours) left out."""
    pixel = 1 / (frame.zoom or 1)  # a pixel, in degrees: finer detail is invisible
    simplified = shapely.simplify(surface, pixel, preserve_topology=True)
    rings = [ring for part in shapely.get_parts(simplified) for ring in (part.exterior, *part.interiors)
             if not smallest_ring or shapely.area(shapely.Polygon(ring)) >= smallest_ring]
    return " ".join(
        "M" + " L".join(f"{x} {y}" for x, y in (frame.project(lat, lon) for lon, lat in coordinates)) + " Z"
        for coordinates in (shapely.get_coordinates(ring) for ring in rings) if len(coordinates) >= 4
    )
