"""Build the compact commune reference from the open data of the npm registry.

Sources (all MIT, pinned in reference/sources/package.json):
- @etalab/decoupage-administratif: the Code officiel géographique (COG) of INSEE: current communes, municipal
  arrondissements, communes déléguées and associées, former codes (``anciensCodes``), département and region;
- the same package at 0.8.0 (installed as decoupage-administratif-historique), whose data/historique-communes.json
  (the COG's history of communes since 1943, which later versions no longer ship) names the former codes: the
  communes merged without a commune déléguée, or whose commune déléguée has since been removed;
- codes-postaux: La Poste's postcodes per commune, with the commune name and the delivery label.

Output, in reference/france/ (committed, so the runtime needs no npm):
- communes.csv: every code a report may carry, each pointing to the *routable* code it resolves to (a current
  commune or a municipal arrondissement), a former code with the name it bore when it merged;
- postcodes.csv: every (postcode, folded name) pair a citizen may write, pointing to a routable code, with the
  strength of its evidence (``streams.jurisdiction.NameEvidence``: a former commune's name is the weakest);
- departements.csv and manifest.json (sources, versions, build date: the reference version).
"""

from __future__ import annotations

import csv
import json
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from streams.jurisdiction import NameEvidence
from streams.place_names import fold_commune_name

COG_PACKAGE = "@etalab/decoupage-administratif"
POSTCODE_PACKAGE = "codes-postaux"
# An npm alias of @etalab/decoupage-administratif 0.8.0: its data/historique-communes.json (COG 2019) is the COG's
# history of communes since 1943, which later versions of the package no longer ship.
HISTORY_PACKAGE = "decoupage-administratif-historique"
HISTORY_FILE = Path("data") / "historique-communes.json"
# At the date of its last event one code may hold several states (the commune déléguée it became, its part of an
# older fusion, the commune nouvelle it was the chef-lieu of): the first of these types names it as it merged.
HISTORY_TYPE_PREFERENCE = ("COMD", "COMA", "COMP", "COM")
HISTORY_START = "1943-01-01"  # an entry without dateDebut existed when the history starts
# Départements the pipeline serves: metropolitan (with Corsica) and overseas 971-978; the uninhabited TAAF (984)
# and the Pacific collectivities (98x) have no commune a report could name.
SERVED_DEPARTEMENT_PREFIXES = tuple(f"{n:02d}" for n in range(1, 96)) + ("2A", "2B") + tuple(
    f"97{n}" for n in range(1, 9)
)


class CodeKind(StrEnum):
    COMMUNE = "commune"
    ARRONDISSEMENT = "arrondissement"
    DELEGUEE = "deleguee"
    ASSOCIEE = "associee"
    FORMER = "former"


@dataclass(frozen=True)
class CommuneCode:
    """One code a report may carry and the routable code (current commune or arrondissement) it stands for."""

    code: str
    kind: CodeKind
    name: str
    routable_code: str
    departement: str
    region: str
    city_code: str = ""  # for an arrondissement: Paris, Lyon or Marseille
    postcodes: tuple[str, ...] = ()
    population: int = 0


@dataclass
class PostcodeIndex:
    """(postcode, folded name) → routable code, keeping the strongest evidence and dropping true ambiguities."""

    entries: dict[tuple[str, str], tuple[NameEvidence, set[str]]] = field(default_factory=dict)

    def add(self, postcode: str, name: str, routable_code: str, evidence: NameEvidence) -> None:
        key = (postcode, fold_commune_name(name))
        current = self.entries.get(key)
        if current is None or evidence < current[0]:
            self.entries[key] = (evidence, {routable_code})
        elif evidence == current[0]:
            current[1].add(routable_code)

    def rows(self) -> list[tuple[str, str, str, int]]:
        """Unambiguous pairs only: a name shared by two communes of one postcode at equal strength routes nowhere.
        Each with the strength of its evidence (``NameEvidence``), which a name written alone reads."""
        return sorted(
            (postcode, folded, next(iter(codes)), int(evidence))
            for (postcode, folded), (evidence, codes) in self.entries.items()
            if len(codes) == 1
        )


def _load_json(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    assert isinstance(data, list), path
    return data


def install_sources(sources_dir: Path) -> None:
    """npm ci: exactly the versions of package-lock.json, into the ignored node_modules/."""
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=sources_dir, check=True)


def package_version(sources_dir: Path, package: str) -> str:
    manifest = json.loads((sources_dir / "node_modules" / package / "package.json").read_text(encoding="utf-8"))
    return str(manifest["version"])


def read_cog(sources_dir: Path) -> list[CommuneCode]:
    raw = _load_json(sources_dir / "node_modules" / COG_PACKAGE / "data" / "communes.json")
    served = [c for c in raw if str(c["departement"]) in SERVED_DEPARTEMENT_PREFIXES]
    codes: list[CommuneCode] = []
    routable = {str(c["code"]) for c in served if c["type"] in ("commune-actuelle", "arrondissement-municipal")}
    for c in served:
        code, kind_name = str(c["code"]), str(c["type"])
        departement, region, name = str(c["departement"]), str(c["region"]), str(c["nom"])
        if kind_name in ("commune-actuelle", "arrondissement-municipal"):
            kind = CodeKind.COMMUNE if kind_name == "commune-actuelle" else CodeKind.ARRONDISSEMENT
            postcodes = tuple(str(p) for p in c.get("codesPostaux", []) or [])
            codes.append(CommuneCode(
                code=code, kind=kind, routable_code=code, city_code=str(c.get("commune", "")),
                postcodes=postcodes, population=int(c.get("population", 0) or 0),
                departement=departement, region=region, name=name,
            ))
            for former in c.get("anciensCodes", []) or []:
                if str(former) not in routable:
                    codes.append(CommuneCode(
                        code=str(former), kind=CodeKind.FORMER, routable_code=code,
                        departement=departement, region=region, name="",
                    ))
        else:
            kind = CodeKind.DELEGUEE if kind_name == "commune-deleguee" else CodeKind.ASSOCIEE
            codes.append(CommuneCode(code=code, kind=kind, routable_code=str(c["chefLieu"]),
                                     departement=departement, region=region, name=name))
    return codes


def history_names(history: list[dict[str, Any]]) -> dict[str, str]:
    """Each code of the COG's history with the name of its last state: the name the commune bore when it merged."""
    latest: dict[str, tuple[tuple[str, int], str]] = {}
    for entry in history:
        code, kind = str(entry["code"]), str(entry["type"])
        rank = (str(entry.get("dateDebut") or HISTORY_START), -HISTORY_TYPE_PREFERENCE.index(kind))
        if code not in latest or rank > latest[code][0]:
            latest[code] = (rank, str(entry["nom"]))
    return {code: name for code, (_, name) in latest.items()}


def read_history_names(sources_dir: Path) -> dict[str, str]:
    return history_names(_load_json(sources_dir / "node_modules" / HISTORY_PACKAGE / HISTORY_FILE))


def name_former_codes(codes: list[CommuneCode], names: dict[str, str]) -> list[CommuneCode]:
    """The former codes with the name the history gives them (the COG of the day lists their codes only)."""
    return [replace(c, name=names.get(c.code, "")) if c.kind is CodeKind.FORMER else c for c in codes]


# The names of the codes that are not routable themselves, written with a postcode of the commune they belong to.
ALIAS_EVIDENCE = {
    CodeKind.DELEGUEE: NameEvidence.DELEGUEE, CodeKind.ASSOCIEE: NameEvidence.DELEGUEE,
    CodeKind.FORMER: NameEvidence.FORMER,
}


def build_postcode_index(codes: list[CommuneCode], postcode_rows: list[dict[str, object]]) -> PostcodeIndex:
    """Names citizens write with a postcode, strongest evidence first: the commune's own name (COG), La Poste's
    commune name, La Poste's delivery label, the city name with an arrondissement's postcode ("Paris" + 75011), the
    name of a commune déléguée or associée, then the name of a former commune (the COG's history), each of these two
    with every postcode of the commune it merged into. A weaker name never takes a pair a stronger one holds."""
    by_code = {c.code: c for c in codes if c.kind in (CodeKind.COMMUNE, CodeKind.ARRONDISSEMENT)}
    alias = {c.code: c.routable_code for c in codes if c.kind not in (CodeKind.COMMUNE, CodeKind.ARRONDISSEMENT)}
    index = PostcodeIndex()
    arrondissements_by_city: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for commune in by_code.values():
        if commune.kind is CodeKind.ARRONDISSEMENT:
            for postcode in commune.postcodes:
                arrondissements_by_city[commune.city_code][postcode].add(commune.code)
    for commune in by_code.values():
        for postcode in commune.postcodes:
            if commune.code in arrondissements_by_city:
                # "Paris" with 75011 means the 11th arrondissement; the city itself only when the postcode spans
                # several arrondissements.
                arrondissements = arrondissements_by_city[commune.code].get(postcode, set())
                target = next(iter(arrondissements)) if len(arrondissements) == 1 else commune.code
                index.add(postcode, commune.name, target, NameEvidence.COMMUNE)
            else:
                index.add(postcode, commune.name, commune.code, NameEvidence.COMMUNE)
    for row in postcode_rows:
        row_code = str(row["codeCommune"])
        routable = row_code if row_code in by_code else alias.get(row_code)
        if routable is None:
            continue
        postcode = str(row["codePostal"])
        index.add(postcode, str(row["nomCommune"]), routable, NameEvidence.LA_POSTE_NAME)
        index.add(postcode, str(row["libelleAcheminement"]), routable, NameEvidence.LA_POSTE_LABEL)
    for code in codes:
        evidence = ALIAS_EVIDENCE.get(code.kind)
        if evidence is not None and code.name and code.routable_code in by_code:
            for postcode in by_code[code.routable_code].postcodes:
                index.add(postcode, code.name, code.routable_code, evidence)
    return index


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def build_commune_reference(sources_dir: Path, output_dir: Path, install: bool = True) -> dict[str, object]:
    """Install the pinned sources (npm ci), read them, write the compact reference; returns the manifest."""
    if install:
        install_sources(sources_dir)
    codes = name_former_codes(read_cog(sources_dir), read_history_names(sources_dir))
    postcode_rows = _load_json(sources_dir / "node_modules" / POSTCODE_PACKAGE / "codes-postaux.json")
    index = build_postcode_index(codes, postcode_rows)
    departements = [
        d for d in _load_json(sources_dir / "node_modules" / COG_PACKAGE / "data" / "departements.json")
        if str(d["code"]) in SERVED_DEPARTEMENT_PREFIXES
    ]
    output_dir.mkdir(parents=True, exist_ok=True)
    kind_order = list(CodeKind)
    _write_csv(
        output_dir / "communes.csv",
        ["code", "kind", "name", "routable_code", "departement", "region", "city_code", "postcodes", "population"],
        [
            (c.code, c.kind.value, c.name, c.routable_code, c.departement, c.region, c.city_code,
             "-".join(c.postcodes), c.population)
            for c in sorted(codes, key=lambda c: (c.code, kind_order.index(c.kind)))
        ],
    )
    _write_csv(output_dir / "postcodes.csv", ["postcode", "folded_name", "routable_code", "evidence"], index.rows())
    _write_csv(
        output_dir / "departements.csv", ["code", "name", "region"],
        [(d["code"], d["nom"], d["region"]) for d in departements],
    )
    cog_version = package_version(sources_dir, COG_PACKAGE)
    postcode_version = package_version(sources_dir, POSTCODE_PACKAGE)
    history_version = package_version(sources_dir, HISTORY_PACKAGE)
    manifest: dict[str, object] = {
        "version": f"cog-{cog_version}+history-{history_version}+cp-{postcode_version}",
        "built_at": datetime.now(UTC).date().isoformat(),
        "sources": {COG_PACKAGE: cog_version, HISTORY_PACKAGE: history_version, POSTCODE_PACKAGE: postcode_version},
        "counts": {
            kind.value: sum(1 for c in codes if c.kind is kind) for kind in CodeKind
        } | {
            "former_named": sum(1 for c in codes if c.kind is CodeKind.FORMER and c.name),
            "postcode_names": len(index.rows()), "departements": len(departements),
        },
    }
    (output_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
