"""How citizens write what they report, shared by the development kit's synthetic traffic: messaging platforms,
French mobile numbers and their many writings, commune names as typed, positions a few metres off.

Two generators use it, for two purposes: ``devkit.traffic_generator`` (a realistic mix over the reference's real
communes, with duplicates and invalid input, for the demo, `generate`, the intake and pipeline benchmarks) and
``devkit.dedup_traffic`` (ground truth with guaranteed geometry: distinct points at least 200 m apart, to measure
deduplication's precision and recall and to check the fault tests' invariants).
"""

from __future__ import annotations

import math
import random
import unicodedata
from zoneinfo import ZoneInfo

import phonenumbers

from schemas.submissions import MessagingPlatform

PARIS = ZoneInfo("Europe/Paris")
METRES_PER_DEGREE = 111_195.0
PLATFORMS = tuple(p.value for p in MessagingPlatform if p is not MessagingPlatform.OTHER)


def mobile_digits(rng: random.Random) -> str:
    """A valid French mobile number, national significant digits (``612345678``); not every 06/07 range is
    allocated, so only numbers the phone library holds valid are kept."""
    while True:
        digits = f"{rng.choice('67')}{rng.randint(0, 99_999_999):08d}"
        if phonenumbers.is_valid_number(phonenumbers.parse("+33" + digits)):
            return digits


def phone_writings(digits: str) -> list[str]:
    """The common writings of one French number (``digits`` without the leading 0): all one E.164 number."""
    pairs = " ".join(digits[i:i + 2] for i in range(1, 9, 2))
    return [
        f"0{digits[0]} {pairs}", f"0{digits}", f"0{digits[0]}.{pairs.replace(' ', '.')}",
        f"+33 {digits[0]} {pairs}", f"+33{digits}", f"0033 {digits[0]} {pairs}", f"0033{digits}",
    ]


def commune_name_writing(rng: random.Random, name: str) -> str:
    """How a citizen may type a commune's name: case, accents, "St" for "Saint", spaces for hyphens."""
    variants = [name, name.upper(), name.lower(), strip_accents(name), name.replace("-", " ")]
    if "Saint-" in name or "Saint " in name:
        variants += [name.replace("Saint-", "St-").replace("Saint ", "St "), name.replace("Saint-", "St ")]
    return rng.choice(variants)


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def offset_position(position: tuple[float, float], north_m: float, east_m: float) -> tuple[float, float]:
    """``position`` moved by so many metres north and east (good enough over the few kilometres used here)."""
    latitude = position[0] + north_m / METRES_PER_DEGREE
    longitude = position[1] + east_m / (METRES_PER_DEGREE * max(0.2, math.cos(math.radians(position[0]))))
    return (round(latitude, 6), round(longitude, 6))
