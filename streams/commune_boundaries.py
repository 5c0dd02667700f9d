"""Commune boundaries, for reports that carry only coordinates: point in polygon over a spatial index.

Reads a GeoJSON FeatureCollection in the shape of IGN's ADMIN EXPRESS export (layers COMMUNE, with the property
INSEE_COM, and ARRONDISSEMENT_MUNICIPAL, with INSEE_ARM), in WGS84 longitude/latitude.
"""

from __future__ import annotations

import json
from pathlib import Path

import shapely
from shapely.geometry import shape
from shapely.strtree import STRtree

# ADMIN EXPRESS names the code INSEE of an arrondissement INSEE_ARM and of a commune INSEE_COM; the arrondissement
# is the finer answer when both layers are loaded.
CODE_PROPERTIES = ("INSEE_ARM", "INSEE_COM")


class BoundariesError(ValueError):
    """A boundaries file that cannot be used: which feature and why."""


class CommuneBoundaries:
    def __init__(self, codes: list[str], geometries: list[shapely.Geometry]) -> None:
        if not geometries:
            raise BoundariesError("no commune boundary in the file")
        self.codes = codes
        self.geometries = geometries
        for geometry in geometries:
            shapely.prepare(geometry)  # prepared polygons answer contains() in logarithmic time
        self.tree = STRtree(geometries)
        self.areas = shapely.area(geometries)

    @classmethod
    def load(cls, path: Path) -> CommuneBoundaries:
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
