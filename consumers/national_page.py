"""The national page for the ministry, in French: the départements ranked by open points or by reports, the map of
France coloured by open points (consumers/france_map.py), and the monthly series of points opened and handled by
force, as tables and plain SVG charts drawn by the server (no script, no chart library, no outside request).

It reads the national statistics store (consumers/national_stats.py), the same figures as the JSON API and the CSV
files; it is served by ``signalements stats serve`` (consumers/stats_publication.py) at ``/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from consumers.france_map import FranceMap, class_of, open_point_classes
from consumers.national_stats import DepartementRank, MonthlyFigures, NationalStatsStore
from consumers.paris_time import paris_time

HERE = Path(__file__).parent
TEMPLATES_DIR, STATIC_DIR = HERE / "desk_templates", HERE / "desk_static"
FORCES = {"PN": "Police nationale", "GN": "Gendarmerie nationale"}
FIGURES = {"opened": "ouverts", "dismantled": "démantelés", "unfounded": "infondés"}
RANKING_SORTS = {"points": "points ouverts", "signalements": "signalements", "departement": "département"}
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre",
          "décembre")
SHORT_MONTHS = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc.")
# The monthly chart's viewBox and the plot inside it.
CHART_WIDTH, CHART_HEIGHT = 640, 260
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 44, 606, 12, 222


def month_label(month: str, short: bool = False) -> str:
    """``2026-09`` as French readers write it: ``septembre 2026`` (``sept. 2026`` short)."""
    year, number = month.split("-")
    return f"{(SHORT_MONTHS if short else MONTHS)[int(number) - 1]} {year}"


def counted(number: int, singular: str, plural: str) -> str:
    """French agreement: 0 and 1 take the singular."""
    return f"{number} {singular if number < 2 else plural}"


def departement_title(code: str, name: str, rank: DepartementRank | None) -> str:
    """The tooltip of a département on the map: its name and figures."""
    if rank is None:
        return f"{name} ({code}) : aucun point signalé"
    return (f"{name} ({code}) : {counted(rank.open_points, 'point ouvert', 'points ouverts')}, "
            f"{counted(rank.dismantled, 'démantelé', 'démantelés')}, {counted(rank.unfounded, 'infondé', 'infondés')}"
            f" ; {counted(rank.reports, 'signalement', 'signalements')}")


def sorted_ranking(ranking: list[DepartementRank], sort: str) -> list[DepartementRank]:
    """The ranking in the page's order: by open points (the API's order), by reports, or by département code."""
    if sort == "signalements":
        return sorted(ranking, key=lambda row: (-row.reports, -row.open_points, row.departement))
    if sort == "departement":
        return sorted(ranking, key=lambda row: row.departement)
    return ranking


def month_range(series: list[MonthlyFigures]) -> list[str]:
    """Every month from the first to the last of the series, the empty ones too (a chart's axis has no gap)."""
    if not series:
        return []
    first, last = min(row.month for row in series), max(row.month for row in series)
    year, number = (int(part) for part in first.split("-"))
    months = []
    while (month := f"{year:04d}-{number:02d}") <= last:
        months.append(month)
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return months


def tick_step(highest: int) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving about four ticks up to ``highest``."""
    rough = max(highest / 4, 1)
    power = 10 ** math.floor(math.log10(rough))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= rough)


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    label: str  # its tooltip


@dataclass(frozen=True)
class ChartLine:
    figure: str  # opened, dismantled, unfounded
    points: list[ChartPoint]

    @property
    def polyline(self) -> str:
        return " ".join(f"{point.x},{point.y}" for point in self.points)


@dataclass(frozen=True)
class ForceChart:
    force: str
    title: str
    lines: list[ChartLine]
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]


def monthly_charts(series: list[MonthlyFigures]) -> list[ForceChart]:
    """One chart per force, on one scale and one axis of months, a line per figure."""
    months = month_range(series)
    if not months:
        return []
    highest = max(max(row.opened, row.dismantled, row.unfounded) for row in series)
    step = tick_step(highest)
    top = step * max(math.ceil(highest / step), 1)
    width = (PLOT_RIGHT - PLOT_LEFT) / max(len(months) - 1, 1)

    def x_of(index: int) -> float:
        return round(PLOT_LEFT + (index * width if len(months) > 1 else (PLOT_RIGHT - PLOT_LEFT) / 2), 1)

    def y_of(value: int) -> float:
        return round(PLOT_BOTTOM - value * (PLOT_BOTTOM - PLOT_TOP) / top, 1)

    every = math.ceil(len(months) / 12)  # at most a dozen month names under the axis
    x_labels = [(x_of(i), month_label(month, short=True)) for i, month in enumerate(months) if i % every == 0]
    y_ticks = [(y_of(value), value) for value in range(0, top + 1, step)]
    figures = {(row.month, row.force): row for row in series}
    charts = []
    for force, title in FORCES.items():
        lines = []
        for figure, label in FIGURES.items():
            values = [getattr(figures.get((month, force)), figure, 0) for month in months]
            lines.append(ChartLine(figure, [ChartPoint(x_of(i), y_of(value), f"{title}, {month_label(month)} : {value} {label}")
                                            for i, (month, value) in enumerate(zip(months, values, strict=True))]))
        charts.append(ForceChart(force, title, lines, y_ticks, x_labels))
    return charts


def national_totals(ranking: list[DepartementRank]) -> dict[str, int]:
    return {
        "open_points": sum(row.open_points for row in ranking), "dismantled": sum(row.dismantled for row in ranking),
        "unfounded": sum(row.unfounded for row in ranking), "reports": sum(row.reports for row in ranking),
        "departements": sum(1 for row in ranking if row.open_points > 0),
    }


class NationalPage:
    """The page, over the store and the map drawn once."""

    def __init__(self, store: NationalStatsStore, france_map: FranceMap) -> None:
        self.store = store
        self.france_map = france_map
        self.map_pending = False  # True while the map is being drawn in the background
        self.templates = Jinja2Templates(directory=TEMPLATES_DIR)
        self.templates.env.globals.update(FORCES=FORCES, FIGURES=FIGURES, RANKING_SORTS=RANKING_SORTS,
                                          month_label=month_label)

    def context(self, sort: str) -> dict[str, Any]:
        sort = sort if sort in RANKING_SORTS else "points"
        ranking = self.store.departement_ranking()
        series = self.store.monthly_series()
        by_code = {row.departement: row for row in ranking}
        classes = open_point_classes(row.open_points for row in ranking)
        codes = set(self.france_map.names) | set(by_code)
        return {
            "title": "Points de deal : chiffres nationaux", "sort": sort, "ranking": sorted_ranking(ranking, sort),
            "series": series, "charts": monthly_charts(series), "totals": national_totals(ranking),
            "names": {code: self.france_map.name_of(code) for code in codes},
            "map": self.france_map, "map_pending": self.map_pending, "legend": classes,
            "colours": {code: class_of(classes, row.open_points) for code, row in by_code.items()},
            "titles": {code: departement_title(code, self.france_map.name_of(code), by_code.get(code)) for code in codes},
            "off_map": [row for row in ranking if row.departement not in self.france_map.drawn],
            "updated_at": paris_time(datetime.now(UTC)), "last_change": paris_time(self.store.last_change()),
            "chart_size": (CHART_WIDTH, CHART_HEIGHT), "plot": (PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM),
        }

    def render(self, request: Request, sort: str) -> HTMLResponse:
        return self.templates.TemplateResponse(request, "national.html", self.context(sort))
