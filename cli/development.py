"""Development and benchmark commands (the development kit, ``devkit/``): the local broker, the local run with
demo traffic, synthetic traffic and the benchmarks. Registered only where the development kit is installed (it is
not in the runtime image)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.context import settings_from_environment
from signalements.settings import Settings

if TYPE_CHECKING:
    from devkit.local_broker import LocalCluster

PANEL = "Development and benchmarks"

broker_app = typer.Typer(help="The local development Kafka broker or cluster (KRaft, from Maven Central).",
                         no_args_is_help=True)
NodesOption = Annotated[int | None, typer.Option(
    "--nodes", min=1, max=5,
    help="nodes of the local cluster, each broker and controller (default SIGNALEMENTS_LOCAL_BROKER_NODES, 1)")]


def _local_cluster(settings: Settings, nodes: int | None = None) -> LocalCluster:
    from devkit.local_broker import LocalCluster

    if nodes is not None:
        settings = settings.model_copy(update={"local_broker_nodes": nodes})
    return LocalCluster.from_settings(settings)


@broker_app.command("start")
def broker_start(nodes: NodesOption = None) -> None:
    """Fetch Kafka if needed, format its storage once, start it in the background and wait until it answers (with
    ``--nodes 3``: three nodes, one cluster id, a quorum of all three, every broker registered)."""
    settings = settings_from_environment()
    if not settings.uses_local_broker:
        typer.echo(f"KAFKA_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}): using that cluster, starting nothing")
        return
    cluster = _local_cluster(settings, nodes)
    cluster.start()
    typer.echo(f"Kafka {cluster.bootstrap_servers} is up ({len(cluster.nodes)} node(s)); log: {cluster.log_file}")
    if len(cluster.nodes) != settings.local_broker_nodes:
        typer.echo(f"for the other commands: export SIGNALEMENTS_LOCAL_BROKER_NODES={len(cluster.nodes)}", err=True)


@broker_app.command("stop")
def broker_stop(nodes: NodesOption = None) -> None:
    """Stop the local broker or cluster (its data stays under the state directory)."""
    _local_cluster(settings_from_environment(), nodes).stop()
    typer.echo("Kafka stopped")


@broker_app.command("status")
def broker_status(nodes: NodesOption = None) -> None:
    """Say which nodes of the local broker or cluster run."""
    cluster = _local_cluster(settings_from_environment(), nodes)
    running = cluster.running()
    if len(cluster.nodes) == 1:
        pid = cluster.running_pid()
        typer.echo(f"running, pid {pid}, {cluster.bootstrap_servers}" if pid else "not running")
    else:
        typer.echo(f"nodes running: {running or 'none'} of {[node.node_id for node in cluster.nodes]}, "
                   f"{cluster.bootstrap_servers}")
    raise typer.Exit(0 if running else 1)


def demo(
    rate: Annotated[float, typer.Option(help="demo reports per second")] = 5.0,
    duration: Annotated[float, typer.Option(help="seconds of traffic; 0 runs until Ctrl-C")] = 0.0,
) -> None:
    """Run the whole pipeline locally with demo traffic and a live summary; Ctrl-C stops everything."""
    from devkit.local_run import run_local_pipeline

    run_local_pipeline(settings_from_environment(), rate=rate, duration_s=duration)


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

    from devkit.commune_places import places_of
    from devkit.traffic_generator import TrafficGenerator, TrafficMix, send_traffic, write_traffic
    from streams.jurisdiction import JurisdictionReference

    if (out is None) == (send_to is None):
        raise typer.BadParameter("give either --out FILE or --send-to URL")
    settings = settings_from_environment()
    mix = TrafficMix(
        exact_duplicate_share=duplicate_share, same_point_share=same_point_share, invalid_share=invalid_share,
        delivery_share=delivery_share, moncommissariat_share=moncommissariat_share,
    )
    reference = JurisdictionReference.from_settings(settings)
    generator = TrafficGenerator(reference.communes, mix, seed=seed, places=places_of(reference.boundaries))
    summary: dict[str, object] = {"reports": count, "out": str(out) if out else None,
                                  "truth": str(truth) if truth else None}
    if out is not None:
        write_traffic(generator.reports(count), out, truth)
    else:
        assert send_to is not None
        reports, for_truth = tee(generator.reports(count))
        from devkit.intake_key import development_headers

        # The development kit's own intake client, in the state directory the local intake reads its clients from.
        summary["statuses"] = send_traffic(reports, send_to, rate, development_headers(settings))
        if truth is not None:
            with truth.open("w", encoding="utf-8") as facts:
                facts.writelines(json.dumps(r.truth, ensure_ascii=False) + "\n" for r in for_truth)
    summary["points"] = len(generator.points)
    typer.echo(json.dumps(summary))


def bench(
    reports: Annotated[int, typer.Option(help="synthetic reports to push through the pipeline")] = 5000,
    rate: Annotated[float, typer.Option(help="reports per second; 0 sends as fast as possible")] = 0.0,
    workers: Annotated[int, typer.Option(min=1, help="worker processes in the group (each another machine)")] = 1,
    steady_rate: Annotated[
        float, typer.Option(help="then offer reports at this steady rate and measure their latency apart; 0: no")
    ] = 300.0,
    steady_seconds: Annotated[float, typer.Option(min=1, help="how long the steady phase lasts")] = 20.0,
) -> None:
    """Push synthetic reports through a freshly started pipeline and print one JSON line of figures."""
    from devkit.bench_pipeline import BenchPlan, run_bench

    run_bench(settings_from_environment(), BenchPlan(reports=reports, rate=rate, workers=workers,
                                                     steady_rate=steady_rate, steady_s=steady_seconds))


def bench_intake(
    reports: Annotated[int, typer.Option(min=1, help="reports to post after the warm-up")] = 3000,
    concurrency: Annotated[int, typer.Option(min=1, help="concurrent HTTP clients")] = 8,
    warmup: Annotated[int, typer.Option(min=0, help="reports posted first and not counted")] = 200,
) -> None:
    """Measure one intake process: accepted reports/s (202 after acks=all) and latency; prints one JSON line."""
    from devkit.bench_intake import print_intake_bench

    print_intake_bench(settings_from_environment(), reports=reports, concurrency=concurrency, warmup=warmup)


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
    from devkit.bench_consumer import run_consumer_bench

    backends = backend or ["sqlite", "postgresql"]
    if unknown := set(backends) - {"sqlite", "postgresql"}:
        raise typer.BadParameter(f"unknown backend(s): {', '.join(sorted(unknown))}")
    run_consumer_bench(settings_from_environment(), cases, backends, database_url, rate, duration)


def bench_jurisdiction(
    rounds: Annotated[int, typer.Option(help="passes over every commune per method")] = 3,
) -> None:
    """Benchmark the jurisdiction lookup (per method, one core) and the reference build and load; prints JSON."""
    import json

    from devkit.bench_jurisdiction import run_jurisdiction_bench

    typer.echo(json.dumps(run_jurisdiction_bench(settings_from_environment(), rounds=rounds)))


def bench_dedup(
    points: Annotated[int, typer.Option(help="points of the ground-truth traffic for precision and recall")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the synthetic traffic")] = 1,
    throughput_points: Annotated[int, typer.Option(help="points of the traffic timed against RocksDB")] = 20_000,
    recovery_points: Annotated[int, typer.Option(help="points in state for the recovery timing on the broker; 0 skips it")] = 0,
    boundary_points: Annotated[int, typer.Option(help="points within 100 m of a unit boundary, for merging there")] = 1000,
) -> None:
    """Measure deduplication: precision/recall of point merging (also at unit boundaries), reports/s, state size,
    recovery time. One JSON line."""
    from devkit.bench_dedup import main

    main(points=points, seed=seed, throughput_points=throughput_points, recovery_points=recovery_points,
         boundary_points=boundary_points)


def bench_units(
    units: Annotated[int, typer.Option(min=1, help="units (each a queue and an actions topic); France has about 6,100")] = 6101,
    restart: Annotated[bool, typer.Option(help="also stop and start the brokers holding them")] = True,
) -> None:
    """Every unit on the local broker or cluster: time to create their topics, brokers' memory, restart; one JSON line."""
    import json

    from devkit.bench_units import run_units_bench

    typer.echo(json.dumps(run_units_bench(settings_from_environment(), units, restart)))


def bench_desk(
    cases: Annotated[int, typer.Option(min=1, help="open cases in the unit's store")] = 10_000,
) -> None:
    """The units' desk with a big store: server render time and the browser's first paint (chromium). One JSON line."""
    from devkit.bench_desk import print_desk_bench

    print_desk_bench(cases)


def compose_secrets() -> None:
    """Make the secrets docker-compose.yml mounts (CA, broker certificate, passwords) in deploy/secrets/, if missing."""
    from devkit.compose_secrets import SECRETS_DIR, make_compose_secrets
    from streams.jurisdiction import read_demo_unit_ids

    created = make_compose_secrets(read_demo_unit_ids(settings_from_environment().reference_dir))
    for name in created:
        typer.echo(f"created {SECRETS_DIR / name}")
    typer.echo(f"{len(created)} file(s) created in {SECRETS_DIR}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker", rich_help_panel=PANEL)
    for command in (demo, generate, bench, bench_intake, bench_consumer, bench_jurisdiction, bench_dedup, bench_desk,
                    bench_units, compose_secrets):
        app.command(rich_help_panel=PANEL)(command)
