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

from signalements.redrive_cli import dead_letters_app, unrouted_app
from signalements.reference_cli import reference_app, resolve
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
app.add_typer(reference_app, name="reference")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(unrouted_app, name="unrouted")
app.command("resolve")(resolve)


def _settings() -> Settings:
    return Settings()


def _logging(settings: Settings) -> None:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(settings.kafka_client_log_level)


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
    """Create the pipeline's topics that do not exist yet, and publish the reference to a new reference topic."""
    from signalements.reference_topic import publish_reference_if_empty
    from signalements.topic_admin import ensure_topics, pipeline_topics
    from streams.jurisdiction import CompetenceTable

    settings = _settings()
    created = ensure_topics(settings, pipeline_topics(settings))
    typer.echo("created: " + (", ".join(created) if created else "nothing, all topics exist"))
    # A new cluster gets the competence table on its reference topic; afterwards the topic is the reference.
    published = publish_reference_if_empty(settings, CompetenceTable.load(settings.reference_dir).rows.values())
    typer.echo(f"reference topic: {published} competence rows published" if published else "reference topic: kept")


@app.command()
def intake() -> None:
    """Serve the HTTP intake (POST /v1/reports/<channel>, /metrics, /docs)."""
    from producers.intake import run_intake

    settings = _settings()
    _logging(settings)
    run_intake(settings)


@app.command()
def worker(loglevel: Annotated[str, typer.Option(help="Faust log level")] = "info") -> None:
    """Run a Faust stream worker: normalize, enrich, route."""
    from streams.worker import run_worker

    run_worker(_settings(), loglevel=loglevel)


@app.command()
def consume(
    unit: Annotated[list[str] | None, typer.Option("--unit", "-u", help="a unit id (repeat for several)")] = None,
    departement: Annotated[
        str | None, typer.Option(help="also every unit competent in this département, and its CROSS (e.g. 75, 2A, 976)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="shared case store, e.g. postgresql://user@host/db (default: SQLite per unit)")
    ] = None,
) -> None:
    """Run the per-unit consumers (one consumer group per unit, one process), storing their cases locally."""
    from consumers.unit_consumer import run_unit_consumers
    from consumers.unit_directory import units_of_departement
    from streams.jurisdiction import JurisdictionReference

    settings = _consumer_settings(database_url)
    _logging(settings)
    units = list(unit or [])
    if departement:
        reference = JurisdictionReference.from_settings(settings)
        units += [u for u in units_of_departement(reference, departement) if u not in units]
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

    settings = _settings()
    _logging(settings)
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


@app.command("lag-exporter")
def lag_exporter() -> None:
    """Export the consumer lag of the worker and of every unit consumer group, read from Kafka's offsets."""
    from signalements.lag_exporter import run_lag_exporter

    settings = _settings()
    _logging(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_lag_exporter(settings, stop)
    except KeyboardInterrupt:
        pass


@app.command()
def status(
    once: Annotated[bool, typer.Option(help="print one reading and exit (rates over --window seconds)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="with --once: print the figures as JSON")] = False,
    window: Annotated[float, typer.Option(help="seconds the rates are computed over", min=0.1)] = 5.0,
    prometheus: Annotated[
        str | None, typer.Option(help="read a Prometheus server (its /federate) instead of the services")
    ] = None,
    endpoint: Annotated[
        list[str] | None, typer.Option(help="a /metrics URL to read (repeat); default: the services of Settings")
    ] = None,
) -> None:
    """Live status of the pipeline: reports/s per channel, cases, dedup ratio, lag, latency, errors."""
    from signalements.status import federation_url, render, run_status, service_urls, status_once

    urls = [federation_url(prometheus)] if prometheus else (endpoint or service_urls(_settings()))
    if not once:
        try:
            run_status(urls, window)
        except KeyboardInterrupt:
            pass
        return
    try:
        # Said on stderr, so that JSON on stdout stays clean: with a long window, the operator knows it is waiting.
        snapshot = status_once(urls, window, lambda: typer.echo(f"status: first reading taken, next in {window:g}s", err=True))
    except ConnectionError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(snapshot.model_dump_json(indent=2))
    else:
        from rich.console import Console

        Console().print(render(snapshot))


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
    rate: Annotated[float, typer.Option(help="reports per second; 0 sends as fast as possible")] = 0.0,
) -> None:
    """Push synthetic reports through a freshly started pipeline and print one JSON line of figures."""
    from signalements.bench import run_bench

    run_bench(_settings(), reports=reports, rate=rate)


@app.command()
def replay(
    source: Annotated[
        Path, typer.Argument(help="export file: .jsonl (JSON Lines) or .csv", exists=True, dir_okay=False)
    ],
    rate: Annotated[float, typer.Option(help="lines per second; 0 = as fast as Kafka takes them")] = 0.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate only; write nothing to Kafka")] = False,
    rejected: Annotated[
        Path | None, typer.Option(help="where duplicate and rejected lines go (default: <source>.rejected.jsonl)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Load an export of submissions into the raw topics; print a JSON summary of accepted and rejected lines."""
    import json

    from producers.replay import Outcome, replay_export
    from producers.report_publisher import PublishError

    try:
        summary = replay_export(_settings(), source, rate=rate, dry_run=dry_run, rejected_path=rejected,
                                show_progress=progress)
    except PublishError as error:
        typer.echo(f"replay: Kafka is unavailable, nothing was replayed: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    raise typer.Exit(1 if summary.counts[Outcome.FAILED.value] else 0)


@app.command()
def generate(
    out: Annotated[
        Path | None, typer.Option(help="traffic file (JSON Lines), readable by `signalements replay`")
    ] = None,
    send_to: Annotated[
        str | None, typer.Option(help="post the reports to this running intake instead, e.g. http://127.0.0.1:8080")
    ] = None,
    rate: Annotated[float, typer.Option(help="with --send-to: reports per second (0 = as fast as answered)")] = 0.0,
    count: Annotated[int, typer.Option(min=1, help="reports to generate")] = 1000,
    truth: Annotated[
        Path | None, typer.Option(help="ground-truth file (JSON Lines): which reports share a point")
    ] = None,
    seed: Annotated[int, typer.Option(help="same seed, same traffic")] = 1,
    duplicate_share: Annotated[float, typer.Option(help="share of exact re-sends of an earlier submission")] = 0.05,
    same_point_share: Annotated[float, typer.Option(help="share of new reports about an already-reported point")] = 0.3,
    invalid_share: Annotated[float, typer.Option(help="share of invalid submissions")] = 0.05,
    delivery_share: Annotated[float, typer.Option(help="share of points that are delivery networks")] = 0.25,
    moncommissariat_share: Annotated[float, typer.Option(help="share sent on moncommissariat")] = 0.5,
) -> None:
    """Synthetic reports on the reference's real communes, to a file or to a running intake, with their truth."""
    import json
    from itertools import tee

    from producers.traffic_generator import TrafficGenerator, TrafficMix, send_traffic, write_traffic
    from streams.jurisdiction import JurisdictionReference

    if (out is None) == (send_to is None):
        raise typer.BadParameter("give either --out FILE or --send-to URL")
    settings = _settings()
    mix = TrafficMix(
        exact_duplicate_share=duplicate_share, same_point_share=same_point_share, invalid_share=invalid_share,
        delivery_share=delivery_share, moncommissariat_share=moncommissariat_share,
    )
    generator = TrafficGenerator(JurisdictionReference.from_settings(settings).communes, mix, seed=seed)
    summary: dict[str, object] = {"reports": count, "out": str(out) if out else None,
                                  "truth": str(truth) if truth else None}
    if out is not None:
        write_traffic(generator.reports(count), out, truth)
    else:
        assert send_to is not None
        reports, for_truth = tee(generator.reports(count))
        summary["statuses"] = send_traffic(reports, send_to, rate)
        if truth is not None:
            with truth.open("w", encoding="utf-8") as facts:
                facts.writelines(json.dumps(r.truth, ensure_ascii=False) + "\n" for r in for_truth)
    summary["points"] = len(generator.points)
    typer.echo(json.dumps(summary))


@app.command("bench-intake")
def bench_intake(
    reports: Annotated[int, typer.Option(min=1, help="reports to post after the warm-up")] = 3000,
    concurrency: Annotated[int, typer.Option(min=1, help="concurrent HTTP clients")] = 8,
    warmup: Annotated[int, typer.Option(min=0, help="reports posted first and not counted")] = 200,
) -> None:
    """Measure one intake process: accepted reports/s (202 after acks=all) and latency; prints one JSON line."""
    from producers.intake_bench import print_intake_bench

    print_intake_bench(_settings(), reports=reports, concurrency=concurrency, warmup=warmup)


@app.command()
def contract(
    check: Annotated[bool, typer.Option("--check", help="fail if the committed files differ from the code")] = False,
) -> None:
    """Export the contract: OpenAPI of the intake, JSON Schema of every payload, AsyncAPI of every topic."""
    from signalements.contract_export import CONTRACT_DIR, stale_contract_files, write_contract

    if check:
        stale = stale_contract_files()
        if stale:
            typer.echo("out of date (run `signalements contract`): " + ", ".join(stale), err=True)
            raise typer.Exit(1)
        typer.echo(f"{CONTRACT_DIR} is up to date")
        return
    for path in write_contract():
        typer.echo(f"wrote {path}")


@app.command("bench-jurisdiction")
def bench_jurisdiction(
    rounds: Annotated[int, typer.Option(help="passes over every commune per method")] = 3,
) -> None:
    """Benchmark the jurisdiction lookup (per method, one core) and the reference build and load; prints JSON."""
    import json

    from signalements.jurisdiction_bench import run_jurisdiction_bench

    typer.echo(json.dumps(run_jurisdiction_bench(_settings(), rounds=rounds)))
@app.command("bench-dedup")
def bench_dedup(
    points: Annotated[int, typer.Option(help="points of the ground-truth traffic for precision and recall")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the synthetic traffic")] = 1,
    throughput_points: Annotated[int, typer.Option(help="points of the traffic timed against RocksDB")] = 20_000,
    recovery_points: Annotated[int, typer.Option(help="points in state for the recovery timing on the broker; 0 skips it")] = 0,
) -> None:
    """Measure deduplication: precision/recall of point merging, reports/s, state size, recovery time. One JSON line."""
    from signalements.bench_dedup import main

    main(points=points, seed=seed, throughput_points=throughput_points, recovery_points=recovery_points)


if __name__ == "__main__":
    app()
