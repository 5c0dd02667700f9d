"""``signalements intake-clients``: which integrated systems may post reports to the intake, and to which channels."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import settings_from_environment
from schemas.channels import Channel

intake_clients_app = typer.Typer(help="The intake's clients: API keys (kept hashed) and their channels.",
                                 no_args_is_help=True)
NameOption = Annotated[str, typer.Option("--name", help="the client, e.g. portail-moncommissariat")]


@intake_clients_app.command("add")
def add(name: NameOption,
        channel: Annotated[list[Channel], typer.Option("--channel", help="a channel it may post to (repeat)")]) -> None:
    """Give a client a new key (replacing its old one) and print it once: only its SHA-256 is kept."""
    from ops.intake_clients import add_client

    path = settings_from_environment().intake_clients_path
    key = add_client(path, name, list(dict.fromkeys(channel)))
    typer.echo(key)
    typer.echo(f"client {name} may post to {', '.join(c.value for c in channel)}; key stored hashed in {path}",
               err=True)


@intake_clients_app.command("revoke")
def revoke(name: NameOption) -> None:
    """Remove a client's key: its next report gets 401."""
    from ops.intake_clients import revoke_client

    if not revoke_client(settings_from_environment().intake_clients_path, name):
        typer.echo(f"no client {name}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {name}")


@intake_clients_app.command("list")
def list_clients() -> None:
    """The clients and their channels (never a key)."""
    from producers.intake_clients import read_clients

    for client in read_clients(settings_from_environment().intake_clients_path).clients:
        typer.echo(f"{client.name}\t{','.join(c.value for c in client.channels)}")
