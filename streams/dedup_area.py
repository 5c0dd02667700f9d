"""The deduplication area of a report: the key of ``reports.enriched``, so that every report that may be a duplicate
of another reaches the same partition, and the same route agent's state, whatever unit each one resolves to.

- A dealing point with coordinates: the coarse H3 cell (resolution 3, cells about 60 km across) of its position.
  Two reports of one point within the merge distance (150 m) fall in one such cell unless an edge of that coarse
  grid runs between them: 0.12 % of such pairs (``signalements bench-dedup``, ``coarse_grid_split``), where a key
  per unit split every pair that straddles a unit boundary. Finer cells would spread the load over more partitions
  and split more pairs; coarser ones the reverse. 94 such cells hold a commune, Paris's 15.8 % of the population.
- A dealing point without coordinates: the coarse cell of its commune's position (town hall, else a point of its
  polygon), so every report of one commune's addresses meets; without boundaries loaded, the commune itself.
- A delivery network: one area, ``networks``. A phone number or a handle is reported anywhere in France, and a
  report bringing both links two identifiers that may each have their own history: only one place holding every
  network's state can merge them all. Network reports are a small share of a volume one route agent decides at
  thousands per second, so one partition for them is not a limit worth a second stage.
"""

from __future__ import annotations

from collections.abc import Callable

import h3

from schemas.channels import ReportKind
from schemas.reports import CanonicalReport, Jurisdiction

AREA_RESOLUTION = 3
NETWORKS_AREA = "networks"

CommunePosition = Callable[[str], tuple[float, float] | None]


def area_of_position(latitude: float, longitude: float) -> str:
    return f"h3:{h3.latlng_to_cell(latitude, longitude, AREA_RESOLUTION)}"


def dedup_area(report: CanonicalReport, jurisdiction: Jurisdiction, commune_position: CommunePosition) -> str:
    """The key of the report on ``reports.enriched``."""
    if report.kind is ReportKind.DELIVERY_NETWORK:
        return NETWORKS_AREA
    place = report.place
    if place.latitude is not None and place.longitude is not None:
        return area_of_position(place.latitude, place.longitude)
    position = commune_position(jurisdiction.commune_code)
    if position is not None:
        return area_of_position(*position)
    return f"commune:{jurisdiction.commune_code}"
