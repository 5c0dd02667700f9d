"""``signalements access``: the broker's principals and ACLs (grant, revoke), and what every topic allows (show).

Run as the administrator (its password in the credentials directory, or SIGNALEMENTS_KAFKA_USERNAME/_PASSWORD).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.context import settings_from_environment

access_app = typer.Typer(help="Who may read and write what on the broker: grant, revoke, show.", no_args_is_help=True)
UnitsOption = Annotated[list[str] | None, typer.Option("--unit", "-u", help="a unit id (repeat for several)")]
DepartementOption = Annotated[str | None, typer.Option(help="every unit competent in this département, and its CROSS")]
AllUnitsOption = Annotated[bool, typer.Option("--all-units", help="every unit of the competence table")]
ServicesOption = Annotated[bool, typer.Option(
    "--services", help="the service roles: intake, worker, national-stats, monitoring")]


def _roles(unit: list[str] | None, departement: str | None, all_units: bool, services: bool) -> list[str]:
    from consumers.unit_directory import unit_names, units_of_departement
    from ops.access_control import SERVICE_ROLES, unit_roles
    from streams.jurisdiction import JurisdictionReference

    units = list(unit or [])
    if departement or all_units:
        reference = JurisdictionReference.from_settings(settings_from_environment())
        more = sorted(unit_names(reference)) if all_units else units_of_departement(reference, departement or "")
        units += [u for u in more if u not in units]
    roles = [*(SERVICE_ROLES if services else ()), *unit_roles(units)]
    if not roles:
        raise typer.BadParameter("say whose access: --services, --unit, --departement or --all-units")
    return roles


def _print(changes: list[str]) -> None:
    for change in changes:
        typer.echo(change)
    typer.echo(f"{len(changes)} change(s)", err=True)


@access_app.command("grant")
def grant(unit: UnitsOption = None, departement: DepartementOption = None, all_units: AllUnitsOption = False,
          services: ServicesOption = False) -> None:
    """Create the principals (SCRAM credential, password file) and exactly their ACLs; idempotent."""
    from ops.access_control import AccessControl

    _print(AccessControl(settings_from_environment()).grant(_roles(unit, departement, all_units, services)))


@access_app.command("revoke")
def revoke(unit: UnitsOption = None, departement: DepartementOption = None, all_units: AllUnitsOption = False,
           services: ServicesOption = False) -> None:
    """Delete the principals' ACLs, SCRAM credentials and password files; idempotent."""
    from ops.access_control import AccessControl

    _print(AccessControl(settings_from_environment()).revoke(_roles(unit, departement, all_units, services)))


@access_app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False) -> None:
    """Every topic with its effective retention and who may do what on it."""
    from rich.console import Console
    from rich.table import Table

    from ops.access_control import topic_access

    found = topic_access(settings_from_environment())
    if as_json:
        typer.echo(json.dumps([{"topic": t.topic, "retention_ms": t.retention_ms, "cleanup_policy": t.cleanup_policy,
                                "acls": list(t.rights)} for t in found], ensure_ascii=False))
        return
    table = Table(title=f"{len(found)} topic(s)")
    for column in ("topic", "retention", "cleanup", "allowed"):
        table.add_column(column, overflow="fold")
    for t in found:
        table.add_row(t.topic, t.retention, t.cleanup_policy, "\n".join(t.rights) or "(administrator only)")
    Console().print(table)
