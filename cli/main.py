"""``signalements``: one command line for every service and tool of the pipeline, in three groups (services,
operator tools, development and benchmarks), one module per group. Nothing imports this package."""

from __future__ import annotations

from importlib.util import find_spec

import typer

from cli import cases, operations, services, stats
from cli.access import access_app
from cli.desk_officers import desk_officers_app
from cli.intake_clients import intake_clients_app
from cli.redrive import dead_letters_app, unrouted_app
from cli.reference import reference_app, resolve

app = typer.Typer(
    help="Signalements de points de deal: intake, stream worker, per-unit consumers and their tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services.register(app)
app.add_typer(stats.stats_app, name="stats", rich_help_panel=services.PANEL)
operations.register(app)
app.add_typer(cases.cases_app, name="cases", rich_help_panel=operations.PANEL)
app.add_typer(reference_app, name="reference", rich_help_panel=operations.PANEL)
app.add_typer(access_app, name="access", rich_help_panel=operations.PANEL)
app.add_typer(intake_clients_app, name="intake-clients", rich_help_panel=operations.PANEL)
app.add_typer(desk_officers_app, name="desk-officers", rich_help_panel=operations.PANEL)
app.command("resolve", rich_help_panel=operations.PANEL)(resolve)
app.add_typer(dead_letters_app, name="dead-letters", rich_help_panel=operations.PANEL)
app.add_typer(unrouted_app, name="unrouted", rich_help_panel=operations.PANEL)
# The runtime image has no development kit: its commands are offered only where it is installed.
if find_spec("devkit") is not None:
    from cli import development

    development.register(app)


def main() -> None:
    """The console script: a Kafka credential or certificate problem is one clear line and exit code 2, not a
    traceback (and never a retry loop)."""
    from signalements.kafka_security import KafkaAccessRefused, KafkaCredentialError
    from signalements.reporter_sealing import ReporterKeysMissing
    from streams.case_tables import IdentifierKeyMissing

    try:
        app()
    except (KafkaAccessRefused, KafkaCredentialError, IdentifierKeyMissing, ReporterKeysMissing) as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
