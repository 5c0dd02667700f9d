"""Commune boundaries, for reports that carry only coordinates: point in polygon over a spatial index, and the
communes' positions (town halls) for a point that falls in no polygon.

Two formats:
- the compact file ``signalements reference build`` writes (reference/france/boundaries.npz, built from IGN ADMIN
  EXPRESS polygons and town-hall positions: ops/boundary_reference.py), loaded by default;
- a GeoJSON FeatureCollection in the shape of IGN's ADMIN EXPRESS export (layers COMMUNE, with the property
  INSEE_COM, and ARRONDISSEMENT_MUNICIPAL, with INSEE_ARM), in WGS84 longitude/latitude, for a source of one's own.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.strtree import STRtree

# The compact file's layout version, and its coordinate quantum (1e-5 degree: about a metre).
BOUNDARIES_FORMAT = 1
QUANTUM = 1e-5
EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180

# ADMIN EXPRESS names the code INSEE of an arrondissement INSEE_ARM and of a commune INSEE_COM; the arrondissement
# is the finer answer when both layers are loaded.
CODE_PROPERTIES = ("INSEE_ARM", "INSEE_COM")


class BoundariesError(ValueError):
    """A boundaries file that cannot be used: which feature and why."""


def distance_m(latitude: float, longitude: float, other_latitude: float, other_longitude: float) -> float:
    """Great-circle distance (haversine)."""
    phi, other_phi = math.radians(latitude), math.radians(other_latitude)
    dphi, dlambda = other_phi - phi, math.radians(other_longitude - longitude)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi) * math.cos(other_phi) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


class CommunePositions:
    """One position per commune (its town hall, else a point of its surface): the nearest one within a distance."""

    def __init__(self, codes: list[str], longitudes: np.ndarray, latitudes: np.ndarray) -> None:
        self.codes = codes
        self.points = shapely.points(longitudes, latitudes)
        self.tree = STRtree(self.points)
        self._index = {code: number for number, code in enumerate(codes)}

    def of(self, code: str) -> tuple[float, float] | None:
        """The commune's position (latitude, longitude), if it has one."""
        number = self._index.get(code)
        if number is None:
            return None
        point = self.points[number]
        return (float(shapely.get_y(point)), float(shapely.get_x(point)))

    def nearest(self, latitude: float, longitude: float, within_m: float) -> tuple[str, float] | None:
        """The nearest commune position and its distance, if one is within ``within_m``."""
        # A search box in degrees wide enough at this latitude, then the true distance decides.
        box_deg = within_m / METRES_PER_DEGREE / max(math.cos(math.radians(latitude)), 0.1)
        hits = self.tree.query(shapely.Point(longitude, latitude).buffer(box_deg, quad_segs=2))
        best: tuple[float, str] | None = None
        for index in hits:
            point = self.points[int(index)]
            distance = distance_m(latitude, longitude, shapely.get_y(point), shapely.get_x(point))
            if distance <= within_m and (best is None or (distance, self.codes[int(index)]) < best):
                best = (distance, self.codes[int(index)])
        return None if best is None else (best[1], best[0])


def _dequantized(deltas: np.ndarray) -> np.ndarray:
    return np.cumsum(deltas.astype(np.int64), axis=0) * QUANTUM


class CommuneBoundaries:
    def __init__(self, codes: list[str], geometries: list[shapely.Geometry] | np.ndarray,
                 positions: CommunePositions | None = None) -> None:
        if len(geometries) == 0:
            raise BoundariesError("no commune boundary in the file")
        self.codes = codes
        self.geometries = geometries
        shapely.prepare(geometries)  # prepared polygons answer contains() in logarithmic time
        self.tree = STRtree(geometries)
        self.areas = shapely.area(geometries)
        self.positions = positions
        self._index = {code: number for number, code in enumerate(codes)}

    @classmethod
    def load(cls, path: Path) -> CommuneBoundaries:
        return cls.load_compact(path) if path.suffix == ".npz" else cls.load_geojson(path)

    @classmethod
    def load_compact(cls, path: Path) -> CommuneBoundaries:
        """The file ``signalements reference build`` writes (ops/boundary_reference.py)."""
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if int(arrays["format"][0]) != BOUNDARIES_FORMAT:
                    raise BoundariesError(f"{path}: format {arrays['format'][0]}, this worker reads {BOUNDARIES_FORMAT}")
                levels = sorted(name for name in arrays.files if name.startswith("offsets"))
                geometries = shapely.from_ragged_array(
                    shapely.GeometryType(int(arrays["geometry_type"][0])), _dequantized(arrays["deltas"]),
                    tuple(arrays[name] for name in levels),
                )
                codes = [str(code) for code in arrays["codes"]]
                coordinates = _dequantized(arrays["positions"])
                positions = CommunePositions([str(c) for c in arrays["position_codes"]],
                                             coordinates[:, 0], coordinates[:, 1])
        except (OSError, KeyError, ValueError) as error:
            raise BoundariesError(f"{path}: not a boundaries file of `signalements reference build`: {error}") from None
        if len(codes) != len(geometries):
            raise BoundariesError(f"{path}: {len(codes)} codes for {len(geometries)} polygons")
        return cls(codes, geometries, positions)

    @classmethod
    def load_geojson(cls, path: Path) -> CommuneBoundaries:
        collection = json.loads(path.read_text(encoding="utf-8"))
        if collection.get("type") != "FeatureCollection":
            raise BoundariesError(f"{path}: not a GeoJSON FeatureCollection")
        codes: list[str] = []
        geometries: list[shapely.Geometry] = []
        for number, feature in enumerate(collection.get("features", [])):
            properties = feature.get("properties") or {}
            code = next((str(properties[p]) for p in CODE_PROPERTIES if properties.get(p)), None)
            if code is None:
                raise BoundariesError(f"{path}: feature {number} has neither INSEE_ARM nor INSEE_COM")
            try:
                geometry = shape(feature["geometry"])
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise BoundariesError(f"{path}: feature {number} ({code}): invalid geometry: {error}") from None
            if geometry.geom_type not in ("Polygon", "MultiPolygon"):
                raise BoundariesError(f"{path}: feature {number} ({code}): {geometry.geom_type} is not a surface")
            codes.append(code)
            geometries.append(geometry)
        return cls(codes, geometries)

    def commune_at(self, latitude: float, longitude: float) -> str | None:
        """The code INSEE of the commune containing the point; on a shared border, the smaller surface (an
        arrondissement rather than its city), then the lower code, so the answer never depends on file order."""
        hits = self.tree.query(shapely.Point(longitude, latitude), predicate="intersects")
        if len(hits) == 0:
            return None
        if len(hits) == 1:
            return self.codes[int(hits[0])]
        return min((float(self.areas[i]), self.codes[int(i)]) for i in hits)[1]

    def commune_near(self, latitude: float, longitude: float, within_m: float) -> str | None:
        """For a point in no polygon (a coast, a commune the source has no polygon for): the commune whose position
        is nearest, within ``within_m``."""
        if self.positions is None:
            return None
        nearest = self.positions.nearest(latitude, longitude, within_m)
        return None if nearest is None else nearest[0]

    def position_of(self, code: str) -> tuple[float, float] | None:
        """One point of the commune (latitude, longitude): its town hall, else a point inside its polygon."""
        position = self.positions.of(code) if self.positions is not None else None
        if position is not None:
            return position
        number = self._index.get(code)
        if number is None:
            return None
        inside = shapely.point_on_surface(self.geometries[number])
        return (float(shapely.get_y(inside)), float(shapely.get_x(inside)))

    def distance_outside_m(self, code: str, latitude: float, longitude: float) -> float | None:
        """How far the point is outside the commune's polygon (0 inside it); None if the commune has no polygon."""
        number = self._index.get(code)
        if number is None:
            return None
        return metres_outside(self.geometries[number], latitude, longitude)


def metres_outside(polygon: shapely.Geometry, latitude: float, longitude: float) -> float:
    """How far the point lies outside ``polygon`` (0 inside it), in metres."""
    point = shapely.Point(longitude, latitude)
    if shapely.contains(polygon, point):
        return 0.0
    (from_lon, from_lat), (to_lon, to_lat) = shapely.get_coordinates(shapely.shortest_line(point, polygon))
    return distance_m(from_lat, from_lon, to_lat, to_lon)
