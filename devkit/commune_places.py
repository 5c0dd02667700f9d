"""Positions inside a commune's real polygon, for the synthetic traffic: a report generated for a commune is placed
where that commune is, so resolution by coordinates, the demo's map and the deduplication by distance run on real
geography."""

from __future__ import annotations

import random

import shapely

from streams.commune_boundaries import CommuneBoundaries

# Rejection sampling in the polygon's bounding box: a commune fills a fair share of its box, so a few draws suffice;
# a very thin one (a coastal strip) falls back on a point of its surface.
MAX_DRAWS = 50


class CommunePlaces:
    def __init__(self, boundaries: CommuneBoundaries) -> None:
        self.boundaries = boundaries
        self._index = {code: number for number, code in enumerate(boundaries.codes)}

    def has(self, code: str) -> bool:
        return code in self._index

    def random_point(self, code: str, rng: random.Random) -> tuple[float, float] | None:
        """A uniformly drawn (latitude, longitude) inside the commune's polygon; None if it has none."""
        number = self._index.get(code)
        if number is None:
            return None
        polygon = self.boundaries.geometries[number]
        west, south, east, north = shapely.bounds(polygon)
        for _ in range(MAX_DRAWS):
            longitude, latitude = rng.uniform(west, east), rng.uniform(south, north)
            if shapely.contains_xy(polygon, longitude, latitude):
                return round(latitude, 6), round(longitude, 6)
        surface = shapely.point_on_surface(polygon)
        return round(float(shapely.get_y(surface)), 6), round(float(shapely.get_x(surface)), 6)


def places_of(boundaries: CommuneBoundaries | None) -> CommunePlaces | None:
    """The places of the loaded boundaries, if any (a reference may be loaded without them)."""
    return CommunePlaces(boundaries) if boundaries is not None else None
