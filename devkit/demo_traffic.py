"""Demonstration traffic: plausible submissions of both channels and both kinds on the demo units' communes.

Deterministic for a given seed. The intake issue grows this into the full generator (duplicates, ground truth).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import phonenumbers

from schemas.channels import Channel
from schemas.submissions import ActivityKind
from streams.jurisdiction import Commune

STREETS = ("rue de la République", "avenue Jean Jaurès", "place de la Gare", "rue Victor Hugo", "allée des Tilleuls")
PLATFORMS = ("telegram", "snapchat", "whatsapp", "signal")


@dataclass(frozen=True)
class DemoSubmission:
    channel: Channel
    path: str
    body: dict[str, object]


def _portal_address(rng: random.Random, commune: Commune) -> dict[str, object]:
    number, street = str(rng.randint(1, 120)), rng.choice(STREETS)
    postcode = rng.choice(commune.postcodes)
    return {
        "label": f"{number} {street} {postcode} {commune.name}",
        "housenumber": number,
        "street": street,
        "postcode": postcode,
        "citycode": commune.code,
        "city": commune.name,
    }


def _conversation_place(rng: random.Random, commune: Commune) -> dict[str, object]:
    return {
        "description": f"devant le {rng.randint(1, 120)} {rng.choice(STREETS)}",
        "commune": commune.name.upper() if rng.random() < 0.3 else commune.name,
        "postcode": rng.choice(commune.postcodes),
    }


def _mobile_number(rng: random.Random) -> str:
    """A French mobile number in the spaced writing citizens use; not every 06 range is allocated, so retry."""
    while True:
        digits = [rng.randint(10, 99) for _ in range(4)]
        number = f"0{rng.choice((6, 7))} " + " ".join(str(d) for d in digits)
        if phonenumbers.is_valid_number(phonenumbers.parse(number, "FR")):
            return number


def _delivery_contact(rng: random.Random) -> dict[str, object]:
    phone = _mobile_number(rng)
    return {"phone": phone, "handle": f"@livraison{rng.randint(1, 999)}", "platform": rng.choice(PLATFORMS)}


def moncommissariat_submission(rng: random.Random, commune: Commune, number: int) -> dict[str, object]:
    submitted_at = datetime.now(UTC).isoformat()
    if rng.random() < 0.2:
        report: dict[str, object] = {
            "kind": "delivery_network",
            "contact": _delivery_contact(rng),
            "area_served": _portal_address(rng, commune),
            "days_seen": ["vendredi", "samedi"],
            "hours_seen": "le soir",
            "description": "Livraisons à domicile annoncées sur les réseaux.",
        }
    else:
        report = {
            "kind": "dealing_point",
            "place": _portal_address(rng, commune),
            "activity": rng.choice([ActivityKind.STREET_SALES.value, ActivityKind.STASH.value]),
            "days_seen": ["lundi", "mardi", "mercredi"],
            "hours_seen": "de 16h à 23h",
            "description": "Plusieurs personnes font le guet en bas de l'immeuble.",
        }
    return {"submission_id": f"mc-{number:08d}", "submitted_at": submitted_at, "report": report}


def brigade_numerique_submission(rng: random.Random, commune: Commune, number: int) -> dict[str, object]:
    local = datetime.now(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")
    if rng.random() < 0.2:
        report: dict[str, object] = {
            "kind": "delivery_network",
            "contact": _delivery_contact(rng),
            "area_served": _conversation_place(rng, commune),
        }
    else:
        report = {"kind": "dealing_point", "place": _conversation_place(rng, commune), "when_seen": "tous les soirs"}
    return {
        "conversation_id": f"bn-{number:08d}",
        "started_at": local,
        "reported_at": local,
        "report": report,
        "transcript_excerpt": "L'usager signale un point de vente.",
    }


def demo_submissions(communes: list[Commune], seed: int = 1, start: int = 0) -> Iterator[DemoSubmission]:
    """An endless, reproducible stream of valid submissions spread over the given communes and both channels."""
    rng = random.Random(seed)
    number = start
    while True:
        commune = rng.choice(communes)
        if rng.random() < 0.5:
            body = moncommissariat_submission(rng, commune, number)
            yield DemoSubmission(Channel.MONCOMMISSARIAT, "/v1/reports/moncommissariat", body)
        else:
            body = brigade_numerique_submission(rng, commune, number)
            yield DemoSubmission(Channel.BRIGADE_NUMERIQUE, "/v1/reports/brigade-numerique", body)
        number += 1
