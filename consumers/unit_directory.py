"""Which units a consumer process serves when asked for "every unit of a département".

Kept apart and small on purpose: it reads the jurisdiction reference only through ``JurisdictionReference.load``
and its per-commune ``unit_id``/``departement``, so it is one function to adapt when the reference grows a list of
units per département (and the CROSS units).
"""

from __future__ import annotations

from pathlib import Path

from streams.jurisdiction import JurisdictionReference


class UnknownDepartement(ValueError):
    pass


def units_of_departement(reference_dir: Path, departement: str) -> list[str]:
    """The ids of the units competent in at least one commune of ``departement``, sorted."""
    reference = JurisdictionReference.load(reference_dir)
    wanted = departement.strip().upper()
    units = sorted({c.unit_id for c in reference.communes if c.departement.upper() == wanted})
    if not units:
        raise UnknownDepartement(f"no unit is competent in département {departement!r} in {reference_dir}")
    return units
