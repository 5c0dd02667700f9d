"""``signalements desk-officers``: who may open which unit's desk."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import settings_from_environment

desk_officers_app = typer.Typer(help="The desk's officers: their accounts (passwords kept hashed) and units.",
                                no_args_is_help=True)
LoginOption = Annotated[str, typer.Option("--login", help="the officer's login, e.g. brigadier.martin")]


@desk_officers_app.command("add")
def add(login: LoginOption,
        unit: Annotated[list[str], typer.Option("--unit", help="a unit whose desk the officer may open (repeat)")]) -> None:
    """Give an officer a new password (replacing the old one) and print it once: only its scrypt hash is kept."""
    from ops.desk_officers import add_officer
    from streams.jurisdiction import JurisdictionReference

    settings = settings_from_environment()
    known = set(JurisdictionReference.from_settings(settings).unit_ids)
    unknown = [unit_id for unit_id in unit if unit_id not in known]
    if unknown:
        typer.echo(f"unknown unit(s): {', '.join(unknown)} (see the competence reference)", err=True)
        raise typer.Exit(1)
    password = add_officer(settings.desk_officers_path, login, list(dict.fromkeys(unit)))
    typer.echo(password)
    typer.echo(f"officer {login} may open the desk of {', '.join(unit)}; password stored hashed in "
               f"{settings.desk_officers_path}", err=True)


@desk_officers_app.command("revoke")
def revoke(login: LoginOption) -> None:
    """Remove an officer's account: their next request goes back to the login page."""
    from ops.desk_officers import revoke_officer

    if not revoke_officer(settings_from_environment().desk_officers_path, login):
        typer.echo(f"no officer {login}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {login}")


@desk_officers_app.command("list")
def list_officers() -> None:
    """The officers and their units (never a password)."""
    from consumers.desk_officers import read_officers

    for officer in read_officers(settings_from_environment().desk_officers_path).officers:
        typer.echo(f"{officer.login}\t{','.join(officer.unit_ids)}")
