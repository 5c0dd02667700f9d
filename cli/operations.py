"""Operator tools: the live status view, the contract export, the replay of an export of submissions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.context import settings_from_environment

PANEL = "Operator tools"


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
    from ops.status import federation_url, render, run_status, service_urls, status_once

    urls = [federation_url(prometheus)] if prometheus else (endpoint or service_urls(settings_from_environment()))
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


def contract(
    check: Annotated[bool, typer.Option("--check", help="fail if the committed files differ from the code")] = False,
) -> None:
    """Export the contract: OpenAPI of the intake, JSON Schema of every payload, AsyncAPI of every topic."""
    from ops.contract_export import CONTRACT_DIR, stale_contract_files, write_contract

    if check:
        stale = stale_contract_files()
        if stale:
            typer.echo("out of date (run `signalements contract`): " + ", ".join(stale), err=True)
            raise typer.Exit(1)
        typer.echo(f"{CONTRACT_DIR} is up to date")
        return
    for path in write_contract():
        typer.echo(f"wrote {path}")


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
        summary = replay_export(settings_from_environment(), source, rate=rate, dry_run=dry_run, rejected_path=rejected,
                                show_progress=progress)
    except PublishError as error:
        typer.echo(f"replay: Kafka is unavailable, nothing was replayed: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    raise typer.Exit(1 if summary.counts[Outcome.FAILED.value] else 0)


def register(app: typer.Typer) -> None:
    for command in (status, contract, replay):
        app.command(rich_help_panel=PANEL)(command)
