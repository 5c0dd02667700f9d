"""The national figures as the ministry publishes them: the département ranking and the monthly series, as CSV and
PNG files (``signalements stats export``) and over HTTP (``signalements stats serve``): JSON, the same CSV, and the
national page in French (consumers/national_page.py)."""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Request, Response  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from consumers.france_map import FranceMap  # noqa: E402
from consumers.national_page import STATIC_DIR, NationalPage  # noqa: E402
from consumers.national_stats import (  # noqa: E402
    DepartementRank,
    MonthlyFigures,
    NationalStatsStore,
    start_national_stats,
)
from signalements.kafka_link import KafkaLink, KafkaProbe, readiness_of  # noqa: E402
from signalements.kafka_security import Role, check_access  # noqa: E402
from signalements.metrics import PipelineMetrics  # noqa: E402
from signalements.settings import Settings  # noqa: E402
from streams.jurisdiction import CommuneReference  # noqa: E402

log = logging.getLogger(__name__)

RANKING_CSV, MONTHLY_CSV = "departements.csv", "monthly.csv"
RANKING_PNG, MONTHLY_PNG = "departements.png", "monthly.png"
CHART_TOP = 20  # départements shown on the chart (the CSV has them all)


def figures_csv(rows: list[BaseModel], model: type[BaseModel]) -> str:
    """The rows as CSV, a column per field of the model: what ``stats export`` writes and the page offers."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(model.model_fields))
    writer.writeheader()
    for row in rows:
        writer.writerow(row.model_dump())
    return text.getvalue()


def _write_csv(path: Path, rows: list[BaseModel], model: type[BaseModel]) -> None:
    path.write_text(figures_csv(rows, model), encoding="utf-8", newline="")


def _csv_download(rows: list[BaseModel], model: type[BaseModel], filename: str) -> Response:
    return Response(figures_csv(rows, model), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _ranking_chart(path: Path, ranking: list[DepartementRank]) -> None:
    shown = ranking[:CHART_TOP]
    figure, axes = plt.subplots(figsize=(10, 5))
    names = [rank.departement for rank in shown]
    axes.bar(names, [rank.open_points for rank in shown], label="open")
    axes.bar(names, [rank.dismantled for rank in shown], bottom=[rank.open_points for rank in shown],
             label="dismantled")
    axes.set_xlabel("département")
    axes.set_ylabel("dealing points")
    axes.set_title(f"Open dealing points by département (top {len(shown)})")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _monthly_chart(path: Path, series: list[MonthlyFigures]) -> None:
    months = sorted({row.month for row in series})
    figure, axes = plt.subplots(figsize=(10, 5))
    for field in ("opened", "dismantled"):
        totals = [sum(getattr(row, field) for row in series if row.month == month) for month in months]
        axes.plot(months, totals, marker="o", label=field)
    axes.set_xlabel("month")
    axes.set_ylabel("dealing points")
    axes.set_title("Dealing points opened and dismantled per month")
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def export_statistics(store: NationalStatsStore, directory: Path) -> list[Path]:
    """Write the ranking and the monthly series as CSV and PNG into ``directory``; return the files."""
    directory.mkdir(parents=True, exist_ok=True)
    ranking, series = store.departement_ranking(), store.monthly_series()
    _write_csv(directory / RANKING_CSV, list(ranking), DepartementRank)
    _write_csv(directory / MONTHLY_CSV, list(series), MonthlyFigures)
    _ranking_chart(directory / RANKING_PNG, ranking)
    _monthly_chart(directory / MONTHLY_PNG, series)
    return [directory / name for name in (RANKING_CSV, MONTHLY_CSV, RANKING_PNG, MONTHLY_PNG)]


def create_stats_app(store: NationalStatsStore, metrics: PipelineMetrics, link: KafkaLink | None = None,
                     france_map: FranceMap | None = None) -> FastAPI:
    """The JSON API, the CSV files and the national page (its map drawn from ``france_map``; without one, the page
    shows département codes and no map)."""
    app = FastAPI(title="Signalements: national statistics", version="1")
    page = NationalPage(store, france_map or FranceMap({}, {}))
    app.state.national_page = page  # its map may be drawn later, in the background (serve_statistics)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def national_page(request: Request, tri: str = "points") -> HTMLResponse:
        """The national page, in French; ``tri``: points (open points), signalements (reports), departement."""
        return page.render(request, tri)

    @app.get(f"/{RANKING_CSV}", response_class=Response)
    def departements_csv() -> Response:
        """The ranking as CSV: the columns and numbers of /v1/stats/departements and of ``stats export``."""
        return _csv_download(list(store.departement_ranking()), DepartementRank, RANKING_CSV)

    @app.get(f"/{MONTHLY_CSV}", response_class=Response)
    def monthly_csv() -> Response:
        """The monthly series as CSV: the columns and numbers of /v1/stats/monthly and of ``stats export``."""
        return _csv_download(list(store.monthly_series()), MonthlyFigures, MONTHLY_CSV)

    @app.get("/v1/stats/departements")
    def departements() -> list[DepartementRank]:
        """Départements ranked by open dealing points."""
        return store.departement_ranking()

    @app.get("/v1/stats/monthly")
    def monthly() -> list[MonthlyFigures]:
        """Per month and force: points opened, dismantled and found unfounded."""
        return store.monthly_series()

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        """Ready while Kafka answers: cut off, the figures are served but no longer move."""
        reason = readiness_of(link)() if link is not None else None
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "detail": reason}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def draw_map_for(page: NationalPage, settings: Settings, reference: CommuneReference | None = None) -> None:
    started = time.perf_counter()
    try:
        page.france_map = FranceMap.from_settings(settings, reference)
    except Exception:  # the page keeps its figures without the map; the service carries on
        log.exception("the map of France could not be drawn")
        return
    finally:
        page.map_pending = False
    log.info("map of France drawn in %.1f s", time.perf_counter() - started)


def serve_statistics(settings: Settings, store: NationalStatsStore, stop: threading.Event) -> None:
    """Run the statistics consumer and serve its figures (and /metrics) on 127.0.0.1 until stopped."""
    from signalements import __version__

    check_access(settings, Role.NATIONAL_STATS)
    metrics = PipelineMetrics()
    metrics.set_build_info(__version__)
    link = KafkaLink(metrics.kafka_connected, "national statistics")
    KafkaProbe(settings, Role.NATIONAL_STATS, link).start(stop)
    consumer = start_national_stats(settings, store, stop, metrics, link)
    # The figures are served at once; the map joins the page when drawn (seconds the first time: the dissolve of the
    # communes into départements; then read from its cache), in the background.
    reference = CommuneReference.load(settings.commune_reference_dir)
    app = create_stats_app(store, metrics, link, FranceMap(reference.departement_names, {}))
    app.state.national_page.map_pending = True
    threading.Thread(target=draw_map_for, args=(app.state.national_page, settings, reference), daemon=True,
                     name="france-map").start()
    server = uvicorn.Server(uvicorn.Config(app, host=settings.metrics_host, port=settings.stats_port,
                                           log_level="warning"))

    def stop_server_when_asked() -> None:
        stop.wait()
        server.should_exit = True

    threading.Thread(target=stop_server_when_asked, daemon=True).start()
    server.run()
    if consumer.failure is not None:
        raise RuntimeError("the national statistics consumer stopped") from consumer.failure
