"""Valid submissions of both channels, on communes of the demonstration reference."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from nacl.public import PrivateKey

from schemas.channels import Force
from signalements.reporter_sealing import ContactOpener, ContactSealer
from streams.worker_cipher import DeliverySeal


def portal_dealing_point(citycode: str = "75111", postcode: str = "75011", city: str = "Paris 11e Arrondissement") -> dict:
    return {
        "submission_id": f"mc-{uuid.uuid4().hex[:12]}",
        "submitted_at": datetime.now(UTC).isoformat(),
        "report": {
            "kind": "dealing_point",
            "place": {
                "label": f"12 Rue Oberkampf {postcode} {city}",
                "housenumber": "12",
                "street": "Rue Oberkampf",
                "postcode": postcode,
                "citycode": citycode,
                "city": city,
                "latitude": 48.8649,
                "longitude": 2.3700,
            },
            "activity": "street_sales",
            "days_seen": ["lundi", "vendredi"],
            "hours_seen": "de 18h à 23h",
            "description": "Guetteurs devant le hall.",
        },
        "reporter": {"email": "Citoyen@Example.org", "consent_to_recontact": True},
    }


def conversation_delivery_network(commune: str = "CHAMONIX MONT BLANC", postcode: str = "74400") -> dict:
    local = datetime.now(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")
    return {
        "conversation_id": f"bn-{uuid.uuid4().hex[:12]}",
        "started_at": local,
        "reported_at": local,
        "report": {
            "kind": "delivery_network",
            "contact": {"phone": "06 12 34 56 78", "handle": "@LivreurDuSoir", "platform": "snapchat"},
            "area_served": {"description": "tout le centre", "commune": commune, "postcode": postcode},
        },
        "transcript_excerpt": "Un numéro circule pour des livraisons.",
    }


_points = itertools.count(1)


def distinct_point(body: dict) -> dict:
    """The same sample moved to a dealing point (or a delivery network) no other call of this returns.

    Deduplication merges reports of one point into one case and holds later ones for a throttled update, so a test
    that counts what the units store must send distinct points.
    """
    n = next(_points)
    report = body["report"]
    if report["kind"] == "delivery_network":
        report["contact"]["phone"] = f"06 12 {10 + n // 100 % 90:02d} {n % 100:02d} 78"
        report["contact"]["handle"] = f"@livreur{n}"
    elif "housenumber" in report["place"]:
        report["place"]["housenumber"] = str(200 + n)
        report["place"]["label"] = f"{200 + n} Rue Oberkampf"
        if report["place"].get("latitude") is not None:
            report["place"]["latitude"] = round(report["place"]["latitude"] + 0.003 * n, 6)
    else:
        report["place"]["description"] = f"devant le {200 + n} de la grande rue"
    return body


# Reporters' contacts are sealed by the worker's normalization: a sealer with keys made for the test session, and
# the openers of each force that hold the matching private keys.
_SEALING_KEYS = {force: PrivateKey.generate() for force in Force}
SEALER = ContactSealer({force: ("tests", key.public_key) for force, key in _SEALING_KEYS.items()}, b"t" * 32)
# A delivery network's identifiers, sealed by the normalize stage for the route stage (the same identifier secret).
DELIVERY_SEAL = DeliverySeal(b"t" * 32)


def opener(force: Force) -> ContactOpener:
    return ContactOpener(force, {"tests": _SEALING_KEYS[force]})
