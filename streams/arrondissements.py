"""Paris, Lyon and Marseille: the municipal arrondissement a citizen means, and CEDEX mentions in commune names.

A conversation says "Paris" with the postcode 75011, or "Marseille 3e", or "PARIS CEDEX 11": the competent unit is
found per arrondissement (each has its own code INSEE: 751xx, 6938x, 132xx), so normalization derives that code
when the name and the postcode, or the name alone, say which arrondissement it is.
"""

from __future__ import annotations

import re

from streams.place_names import fold_commune_name

# city → (postcode prefix, first code INSEE minus one, number of arrondissements)
_CITIES = {"paris": ("750", 75100, 20), "lyon": ("6900", 69380, 9), "marseille": ("130", 13200, 16)}
_NAME = re.compile(r"^(paris|lyon|marseille)(?: (\d{1,2}) ?(?:er|e|eme|ieme)?(?: arrondissement)?)?$")
_CEDEX = re.compile(r"\s*\bcedex\b(\s*\d{1,2})?\s*$", re.IGNORECASE)


# The codes INSEE of the whole cities: an address given with one of them is refined to its arrondissement.
CITY_CODES = {"75056": "paris", "69123": "lyon", "13055": "marseille"}


def refine_city_code(citycode: str, postcode: str) -> str:
    """75056 (Paris) with the postcode 75011 → 75111 (Paris 11e); any other code is kept."""
    city = CITY_CODES.get(citycode)
    return arrondissement_code(city, postcode) or citycode if city else citycode


def without_cedex(name: str) -> str:
    """'Paris Cedex 07' → 'Paris': CEDEX is a mail-sorting mention, not part of the commune's name."""
    return re.sub(r"\s+", " ", _CEDEX.sub("", name)).strip() or name.strip()


def arrondissement_code(commune_name: str | None, postcode: str | None) -> str | None:
    """The code INSEE of the municipal arrondissement, or None when the place is not in Paris, Lyon or Marseille or
    does not say which arrondissement."""
    if not commune_name:
        return None
    folded = fold_commune_name(commune_name)  # accents, case, hyphens; drops "cedex…"
    match = _NAME.match(folded)
    if match is None:
        return None
    city, number_text = match.group(1), match.group(2)
    prefix, base, count = _CITIES[city]
    number = int(number_text) if number_text else _number_from_postcode(city, postcode)
    if number is None or not 1 <= number <= count:
        return None
    return str(base + number)


def _number_from_postcode(city: str, postcode: str | None) -> int | None:
    if not postcode:
        return None
    prefix, _, _ = _CITIES[city]
    if city == "paris" and postcode == "75116":  # the 16th has two postcodes: 75016 and 75116
        return 16
    if postcode.startswith(prefix):
        return int(postcode[len(prefix):])
    return None
