"""Valid submissions of both channels, on communes of the demonstration reference."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


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
