"""``signalements``: one command line for every service and tool of the pipeline."""

from __future__ import annotations

import logging
import signal
import sys
import threading
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
    unit: Annotated[list[str], typer.Option("--unit", "-u", help="a unit id (repeat for several)")],
) -> None:
    """Run the per-unit consumer for one or several units, storing their cases locally."""
    from consumers.unit_consumer import run_unit_consumers

    _logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_unit_consumers(_settings(), unit, stop)


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
