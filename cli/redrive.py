"""Operator commands for what the worker set aside: list and redrive dead letters and unrouted reports."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ops.redrive import HeldKind, HeldRecord, RedriveError, matches, read_held, redrive
from signalements.settings import Settings

ReasonOption = Annotated[
    list[str] | None, typer.Option("--reason", help="only this reason code (repeat for several)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object per record instead of a table")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="count what would be sent; send nothing")]

dead_letters_app = typer.Typer(
    help="Records a stage could not process (reports.dlq): list them, send them back once the cause is fixed.",
    no_args_is_help=True,
)
unrouted_app = typer.Typer(
    help="Valid reports no unit was found for (reports.unrouted): list them, route them again after a reference fix.",
    no_args_is_help=True,
)


def _print_held(held: list[HeldRecord], as_json: bool, title: str) -> None:
    if as_json:
        for record in held:
            typer.echo(record.model_dump_json())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(held)} {title}")
    columns = ("position", "held_at", "stage", "reason_code", "reason", "origin", "send_to", "superseded")
    for column in columns:
        table.add_column(column)
    for record in held:
        row = record.model_dump(mode="json")
        table.add_row(*("" if row[column] is None else str(row[column]) for column in columns))
    Console().print(table)


def _list(kind: HeldKind, reasons: list[str], stages: list[str], as_json: bool, title: str) -> None:
    try:
        held = [record for record, _ in read_held(Settings(), kind) if matches(record, reasons, stages)]
    except RedriveError as error:
        typer.echo(f"{kind.value}: {error}", err=True)
        raise typer.Exit(1) from error
    _print_held(held, as_json, title)


def _redrive(kind: HeldKind, reasons: list[str], stages: list[str], dry_run: bool) -> None:
    try:
        summary = redrive(Settings(), kind, reasons=reasons, stages=stages, dry_run=dry_run)
    except RedriveError as error:
        typer.echo(f"{kind.value} redrive: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(json.dumps(summary.as_dict()))


@dead_letters_app.command("list")
def dead_letters_list(
    reason: ReasonOption = None,
    stage: Annotated[list[str] | None, typer.Option(help="only this stage: normalize, enrich, route")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every dead letter now on the topic: where it came from, which stage refused it and why."""
    _list(HeldKind.DEAD_LETTER, reason or [], stage or [], as_json, "dead letter(s)")


@dead_letters_app.command("redrive")
def dead_letters_redrive(
    reason: ReasonOption = None,
    stage: Annotated[list[str] | None, typer.Option(help="only this stage: normalize, enrich, route")] = None,
    dry_run: DryRunOption = False,
) -> None:
    """Send matching dead letters back to the topic they were read from (original key, value, headers)."""
    _redrive(HeldKind.DEAD_LETTER, reason or [], stage or [], dry_run)


@unrouted_app.command("list")
def unrouted_list(reason: ReasonOption = None, as_json: JsonOption = False) -> None:
    """Every unrouted report now on the topic, with why no unit was found."""
    _list(HeldKind.UNROUTED, reason or [], [], as_json, "unrouted report record(s)")


@unrouted_app.command("redrive")
def unrouted_redrive(reason: ReasonOption = None, dry_run: DryRunOption = False) -> None:
    """Send the latest record of each matching unrouted report back to the enrich stage, to be resolved again."""
    _redrive(HeldKind.UNROUTED, reason or [], [], dry_run)
