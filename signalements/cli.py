"""``signalements``: one command line for every service and tool of the pipeline."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from signalements.settings import Settings

if TYPE_CHECKING:
    from signalements.local_broker import LocalBroker

app = typer.Typer(
    help="Signalements de points de deal: intake, stream worker, per-unit consumers and their tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="The local development Kafka broker (KRaft, from Maven Central).", no_args_is_help=True)
app.add_typer(broker_app, name="broker")


def _settings() -> Settings:
    return Settings()


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _local_broker(settings: Settings) -> LocalBroker:
    from signalements.local_broker import LocalBroker

    return LocalBroker.from_settings(settings)


@broker_app.command("start")
def broker_start() -> None:
    """Fetch Kafka if needed, format its storage once, start it in the background and wait until it answers."""
    settings = _settings()
    if not settings.uses_local_broker:
        typer.echo(f"KAFKA_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}): using that cluster, starting nothing")
        return
    broker = _local_broker(settings)
    broker.start()
    typer.echo(f"Kafka {broker.bootstrap_servers} is up; log: {broker.log_file}")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the local broker (its data stays under the state directory)."""
    _local_broker(_settings()).stop()
    typer.echo("Kafka stopped")


@broker_app.command("status")
def broker_status() -> None:
    """Say whether the local broker runs."""
    broker = _local_broker(_settings())
    pid = broker.running_pid()
    typer.echo(f"running, pid {pid}, {broker.bootstrap_servers}" if pid else "not running")
    raise typer.Exit(0 if pid else 1)


@app.command()
def topics() -> None:
    """Create the pipeline's topics that do not exist yet."""
    from signalements.topic_admin import ensure_topics, pipeline_topics

    created = ensure_topics(_settings(), pipeline_topics(_settings()))
    typer.echo("created: " + (", ".join(created) if created else "nothing, all topics exist"))


@app.command()
def intake() -> None:
    """Serve the HTTP intake (POST /v1/reports/<channel>, /metrics, /docs)."""
    from producers.intake import run_intake

    _logging()
    run_intake(_settings())


@app.command()
def worker(loglevel: Annotated[str, typer.Option(help="Faust log level")] = "info") -> None:
    """Run a Faust stream worker: normalize, enrich, route."""
    from streams.worker import run_worker

    run_worker(_settings(), loglevel=loglevel)


@app.command()
def consume(
    unit: Annotated[list[str] | None, typer.Option("--unit", "-u", help="a unit id (repeat for several)")] = None,
    departement: Annotated[
        str | None, typer.Option(help="also every unit competent in this département (e.g. 75, 2A, 976)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="shared case store, e.g. postgresql://user@host/db (default: SQLite per unit)")
    ] = None,
) -> None:
    """Run the per-unit consumers (one consumer group per unit, one process), storing their cases locally."""
    from consumers.unit_consumer import run_unit_consumers
    from consumers.unit_directory import units_of_departement

    _logging()
    settings = _consumer_settings(database_url)
    units = list(unit or [])
    if departement:
        units += [u for u in units_of_departement(settings.reference_dir, departement) if u not in units]
    if not units:
        raise typer.BadParameter("give at least one --unit or a --departement")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_unit_consumers(settings, units, stop)


def _consumer_settings(database_url: str | None) -> Settings:
    settings = _settings()
    return settings.model_copy(update={"consumer_database_url": database_url}) if database_url else settings


cases_app = typer.Typer(help="A unit's cases: list, show, mark handled (table or JSON).", no_args_is_help=True)
app.add_typer(cases_app, name="cases")
UnitOption = Annotated[str, typer.Option("--unit", "-u", help="the unit whose store to read")]
DatabaseUrlOption = Annotated[str | None, typer.Option(help="the shared case store (default: the unit's SQLite file)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _open_case_store(unit: str, database_url: str | None):  # noqa: ANN202 (typed in consumers.case_store)
    from consumers.case_store import CaseStore, store_url_for

    settings = _consumer_settings(database_url)
    return settings, CaseStore.open(store_url_for(settings.consumer_database_url, settings.unit_store_dir, unit), unit)


@cases_app.command("list")
def cases_list(
    unit: UnitOption,
    sort: Annotated[str, typer.Option(help="reports (most reported first) or last-seen (latest first)")] = "last-seen",
    status: Annotated[str, typer.Option(help="open, dismantled, unfounded, transferred, or all")] = "open",
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a unit's cases (open ones by default)."""
    from rich.console import Console

    from consumers.case_desk import render_case_list
    from consumers.case_store import CaseSort

    if sort not in {s.value for s in CaseSort}:
        raise typer.BadParameter(f"--sort must be one of {', '.join(s.value for s in CaseSort)}")
    _, store = _open_case_store(unit, database_url)
    try:
        found = store.list_cases(sort=CaseSort(sort), status=None if status == "all" else status)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([case.model_dump(mode="json") for case in found], ensure_ascii=False))
    else:
        render_case_list(Console(), found)


@cases_app.command("show")
def cases_show(
    case_id: Annotated[str, typer.Argument(help="the case id")],
    unit: UnitOption,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one case with its reports."""
    from rich.console import Console

    from consumers.case_desk import render_case

    _, store = _open_case_store(unit, database_url)
    try:
        case = store.get_case(case_id)
    finally:
        store.close()
    if case is None:
        typer.echo(f"no case {case_id} in unit {unit}", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(case.model_dump_json())
    else:
        render_case(Console(), case)


@cases_app.command("parked")
def cases_parked(unit: UnitOption, database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """List the events of a unit's queue that could not be read (position, reason code, reason), oldest first."""
    from rich.console import Console
    from rich.table import Table

    _, store = _open_case_store(unit, database_url)
    try:
        parked = store.parked()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(parked, ensure_ascii=False))
        return
    table = Table(title=f"{len(parked)} parked event(s)")
    for column in ("topic", "partition", "offset", "reason_code", "reason", "parked_at"):
        table.add_column(column)
    for row in parked:
        table.add_row(*(str(row[column]) for column in ("topic", "partition", "offset", "reason_code", "reason",
                                                          "parked_at")))
    Console().print(table)


@cases_app.command("handle")
def cases_handle(
    case_id: Annotated[str, typer.Argument(help="the case id")],
    unit: UnitOption,
    outcome: Annotated[str, typer.Option(help="dismantled, unfounded or transferred")],
    to: Annotated[str | None, typer.Option("--to", help="for a transfer: the unit that takes the case")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Mark a case handled; a transfer puts it on the other unit's queue. Both are published as CloudEvents."""
    from consumers.case_desk import CaseDeskError, handle_case
    from schemas.events import CaseOutcome

    if outcome not in {o.value for o in CaseOutcome}:
        raise typer.BadParameter(f"--outcome must be one of {', '.join(o.value for o in CaseOutcome)}")
    settings, store = _open_case_store(unit, database_url)
    try:
        handled = handle_case(settings, store, case_id, CaseOutcome(outcome), to)
    except CaseDeskError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    finally:
        store.close()
    if as_json:
        typer.echo(handled.model_dump_json())
    else:
        target = f" to {handled.transferred_to}" if handled.transferred_to else ""
        typer.echo(f"case {case_id}: {handled.outcome.value}{target}")


stats_app = typer.Typer(help="National statistics: open and handled points by département, force, month.",
                        no_args_is_help=True)
app.add_typer(stats_app, name="stats")
StatsDatabaseOption = Annotated[
    str | None, typer.Option(help="the statistics store (default: SQLite in <state_dir>/stats)")
]


@stats_app.command("serve")
def stats_serve(database_url: StatsDatabaseOption = None) -> None:
    """Read every unit queue into the statistics and serve them as JSON (/v1/stats/departements, /v1/stats/monthly)."""
    from consumers.national_stats import NationalStatsStore, stats_store_url
    from consumers.stats_publication import serve_statistics

    _logging()
    settings = _settings()
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

    store = NationalStatsStore.open(stats_store_url(_settings(), database_url))
    try:
        for path in export_statistics(store, out):
            typer.echo(str(path))
    finally:
        store.close()


@app.command("bench-consumer")
def bench_consumer(
    cases: Annotated[int, typer.Option(help="cases on the queue (each an opening and one update)")] = 5000,
    backend: Annotated[
        list[str] | None, typer.Option(help="sqlite and/or postgresql (repeat); default both")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="PostgreSQL to use (default: a throwaway cluster of Debian's postgresql)")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="also offer this many events/s to a running consumer and measure latency")
    ] = None,
    duration: Annotated[float, typer.Option(help="seconds of offered load with --rate")] = 20.0,
) -> None:
    """Cases stored per second by one unit consumer process, per store backend: one JSON line each."""
    from consumers.consumer_bench import run_consumer_bench

    backends = backend or ["sqlite", "postgresql"]
    if unknown := set(backends) - {"sqlite", "postgresql"}:
        raise typer.BadParameter(f"unknown backend(s): {', '.join(sorted(unknown))}")
    run_consumer_bench(_settings(), cases, backends, database_url, rate, duration)


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="demo reports per second")] = 5.0,
    duration: Annotated[float, typer.Option(help="seconds of traffic; 0 runs until Ctrl-C")] = 0.0,
) -> None:
    """Run the whole pipeline locally with demo traffic and a live summary; Ctrl-C stops everything."""
    from signalements.local_run import run_local_pipeline

    run_local_pipeline(_settings(), rate=rate, duration_s=duration)


@app.command()
def bench(
    reports: Annotated[int, typer.Option(help="synthetic reports to push through the pipeline")] = 5000,
) -> None:
    """Push synthetic reports through a running pipeline and print one JSON line of figures."""
    from signalements.bench import run_bench

    run_bench(_settings(), reports=reports)


if __name__ == "__main__":
    app()
