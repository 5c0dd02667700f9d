"""``signalements cases``: a unit's cases from its store, for its officers: list, show, parked events, handle."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.context import consumer_settings

cases_app = typer.Typer(help="A unit's cases: list, show, mark handled (table or JSON).", no_args_is_help=True)
UnitOption = Annotated[str, typer.Option("--unit", "-u", help="the unit whose store to read")]
DatabaseUrlOption = Annotated[str | None, typer.Option(help="the shared case store (default: the unit's SQLite file)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _open_case_store(unit: str, database_url: str | None):  # noqa: ANN202 (typed in consumers.case_store)
    from consumers.case_store import CaseStore, store_url_for

    settings = consumer_settings(database_url)
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
    case_id: Annotated[str, typer.Argument(help="the case id, or its short reference from `cases list`")],
    unit: UnitOption,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one case with its reports."""
    from rich.console import Console

    from consumers.case_desk import render_case

    _, store = _open_case_store(unit, database_url)
    try:
        case = store.get_case(store.resolve_reference(case_id) or case_id)
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
    case_id: Annotated[str, typer.Argument(help="the case id, or its short reference from `cases list`")],
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
        handled = handle_case(settings, store, store.resolve_reference(case_id) or case_id, CaseOutcome(outcome), to)
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
