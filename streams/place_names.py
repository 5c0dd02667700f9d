"""Comparable forms of French place names: what citizens type versus what the reference spells."""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[\s\-'’_.]+")
_ABBREVIATIONS = {"st": "saint", "ste": "sainte", "sts": "saints", "stes": "saintes"}
# "Paris 1er", "Lyon 2e", "Marseille 13ème arrondissement", "Paris 11eme", "13e arrondissement de Marseille": the
# forms citizens write an arrondissement in, once folded.
_CITY_FIRST = re.compile(r"^(paris|lyon|marseille) 0?(\d{1,2}) ?(?:er|ere|e|eme|em|me)?(?: arrondissement)?$")
_NUMBER_FIRST = re.compile(r"^0?(\d{1,2}) ?(?:er|ere|e|eme|em|me)? arrondissement (?:de )?(paris|lyon|marseille)$")
_ARTICLES = ("le", "la", "les", "l")


def fold_commune_name(name: str) -> str:
    """Accent-, case-, hyphen-, apostrophe- and "St/Saint"-insensitive key of a commune name."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(char for char in text if not unicodedata.combining(char)).lower()
    text = re.sub(r"\bcedex\b.*$", "", text)
    words = [_ABBREVIATIONS.get(word, word) for word in _SEPARATORS.split(text) if word]
    return " ".join(words)


def arrondissement_name(folded: str) -> str | None:
    """The reference's folded name of the arrondissement a citizen's writing names ("paris 1er arrondissement",
    "marseille 13e arrondissement"), or None if it names none."""
    city_first, number_first = _CITY_FIRST.match(folded), _NUMBER_FIRST.match(folded)
    if city_first is not None:
        city, number = city_first.group(1), city_first.group(2)
    elif number_first is not None:
        number, city = number_first.group(1), number_first.group(2)
    else:
        return None
    ordinal = "1er" if int(number) == 1 else f"{int(number)}e"
    return f"{city} {ordinal} arrondissement"


def name_variants(folded: str) -> list[str]:
    """The folded name as written, then without or with its article ("Havre" for "Le Havre", "Haÿ-les-Roses" for
    "L'Haÿ-les-Roses"), then the arrondissement it names: the keys to try, strongest first."""
    variants = [folded]
    first, _, rest = folded.partition(" ")
    if first in _ARTICLES and rest:
        variants.append(rest)
    else:
        variants.extend(f"{article} {folded}" for article in _ARTICLES)
    arrondissement = arrondissement_name(folded)
    if arrondissement is not None:
        variants.append(arrondissement)
    return variants
