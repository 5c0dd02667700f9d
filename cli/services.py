"""The pipeline's services: each runs until stopped (SIGTERM), rides out broker outages, serves /metrics."""

from __future__ import annotations

import signal
import threading
from enum import StrEnum
from typing import Annotated

import typer

from cli.context import configure_logging, consumer_settings, settings_from_environment
from signalements.kafka_security import Role
from signalements.settings import Settings

PANEL = "Services"


def topics() -> None:
    """Create the pipeline's topics that do not exist yet, and publish the reference to a new reference topic."""
    from ops.reference_topic import publish_reference_if_empty
    from signalements.topic_admin import ensure_topics, pipeline_topics
    from streams.jurisdiction import CompetenceTable

    settings = settings_from_environment()
    created = ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    typer.echo("created: " + (", ".join(created) if created else "nothing, all topics exist"))
    # A new cluster gets the competence table on its reference topic; afterwards the topic is the reference.
    published = publish_reference_if_empty(settings, CompetenceTable.load(settings.reference_dir).rows.values())
    typer.echo(f"reference topic: {published} competence rows published" if published else "reference topic: kept")


def intake() -> None:
    """Serve the HTTP intake (POST /v1/reports/<channel>, /metrics, /docs)."""
    from producers.intake import run_intake

    settings = settings_from_environment()
    configure_logging(settings)
    run_intake(settings)


class WorkerLogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def worker(loglevel: Annotated[WorkerLogLevel, typer.Option(help="Faust log level")] = WorkerLogLevel.INFO) -> None:
    """Run a Faust stream worker: normalize, enrich, route."""
    from streams.worker import run_worker

    run_worker(settings_from_environment(), loglevel=loglevel.value)


UnitsOption = Annotated[list[str] | None, typer.Option("--unit", "-u", help="a unit id (repeat for several)")]
DepartementOption = Annotated[
    str | None, typer.Option(help="also every unit competent in this département, and its CROSS (e.g. 75, 2A, 976)")
]
StoreOption = Annotated[
    str | None, typer.Option(help="shared case store, e.g. postgresql://user@host/db (default: SQLite per unit)")
]


def chosen_units(settings: Settings, unit: list[str] | None, departement: str | None) -> list[str]:
    """The ``--unit`` ids, then the units of ``--departement`` and its CROSS; at least one."""
    from consumers.unit_directory import units_of_departement
    from streams.jurisdiction import JurisdictionReference

    units = list(unit or [])
    if departement:
        reference = JurisdictionReference.from_settings(settings)
        units += [u for u in units_of_departement(reference, departement) if u not in units]
    if not units:
        raise typer.BadParameter("give at least one --unit or a --departement")
    return units


def consume(unit: UnitsOption = None, departement: DepartementOption = None, database_url: StoreOption = None) -> None:
    """Run the per-unit consumers (one consumer group per unit, one process), storing their cases locally."""
    from consumers.unit_consumer import run_unit_consumers

    settings = consumer_settings(database_url)
    configure_logging(settings)
    units = chosen_units(settings, unit, departement)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_unit_consumers(settings, units, stop)


def desk(unit: UnitsOption = None, departement: DepartementOption = None, database_url: StoreOption = None) -> None:
    """Serve the units' desk: their cases as web pages in French, on loopback (SIGNALEMENTS_DESK_PORT)."""
    from consumers.desk import run_desk
    from consumers.unit_directory import unit_names
    from consumers.unit_territory import UnitTerritories
    from streams.jurisdiction import JurisdictionReference

    settings = consumer_settings(database_url)
    configure_logging(settings)
    units = chosen_units(settings, unit, departement)
    typer.echo(f"desk on http://{settings.desk_host}:{settings.desk_port}/ for {', '.join(units)}", err=True)
    reference = JurisdictionReference.from_settings(settings)
    run_desk(settings, units, unit_names(reference), UnitTerritories(reference, units))


def lag_exporter() -> None:
    """Export the consumer lag of the worker and of every unit consumer group, read from Kafka's offsets."""
    from ops.lag_exporter import run_lag_exporter

    settings = settings_from_environment()
    configure_logging(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_lag_exporter(settings, stop)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    for command in (topics, intake, worker, consume, desk, lag_exporter):
        app.command(rich_help_panel=PANEL)(command)
