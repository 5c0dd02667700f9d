"""``signalements stats``: the national statistics service and its CSV and PNG export."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from cli.context import configure_logging, settings_from_environment

stats_app = typer.Typer(help="National statistics: open and handled points by département, force, month.",
                        no_args_is_help=True)
StatsDatabaseOption = Annotated[
    str | None, typer.Option(help="the statistics store (default: SQLite in <state_dir>/stats)")
]


@stats_app.command("serve")
def stats_serve(database_url: StatsDatabaseOption = None) -> None:
    """Read every unit queue into the statistics and serve them as JSON (/v1/stats/departements, /v1/stats/monthly)."""
    from consumers.national_stats import NationalStatsStore, stats_store_url
    from consumers.stats_publication import serve_statistics

    settings = settings_from_environment()
    configure_logging(settings)
    store = NationalStatsStore.open(stats_store_url(settings, database_url))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve_statistics(settings, store, stop)
    finally:
        stop.set()
        store.close()


@stats_app.command("export")
def stats_export(
    out: Annotated[Path, typer.Option(help="directory for departements.csv/.png and monthly.csv/.png")],
    database_url: StatsDatabaseOption = None,
) -> None:
    """Export the département ranking and the monthly series as CSV and PNG charts."""
    from consumers.national_stats import NationalStatsStore, stats_store_url
    from consumers.stats_publication import export_statistics

    store = NationalStatsStore.open(stats_store_url(settings_from_environment(), database_url))
    try:
        for path in export_statistics(store, out):
            typer.echo(str(path))
    finally:
        store.close()
