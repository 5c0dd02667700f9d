"""Which units a consumer process serves when asked for "every unit of a département"."""

from __future__ import annotations

from streams.jurisdiction import JurisdictionReference, cross_unit_id_for


class UnknownDepartement(ValueError):
    pass


def units_of_departement(reference: JurisdictionReference, departement: str) -> list[str]:
    """The units competent in at least one commune of ``departement``, and its CROSS, sorted."""
    wanted = departement.strip().upper()
    units = {c.unit_id for c in reference.communes if c.departement.upper() == wanted}
    if not units:
        raise UnknownDepartement(f"no unit is competent in département {departement!r} (reference {reference.version})")
    return sorted(units | {cross_unit_id_for(wanted)})


def unit_names(reference: JurisdictionReference) -> dict[str, str]:
    """Every unit of the reference by id, with the name officers know it by (a CROSS is named by its département)."""
    names = {c.unit_id: c.unit_name for c in reference.communes}
    for departement in sorted({c.departement for c in reference.communes}):
        names.setdefault(cross_unit_id_for(departement), f"CROSS du département {departement}")
    return names
