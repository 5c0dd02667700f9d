"""Comparable forms of French place names: what citizens type versus what the reference spells."""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[\s\-'’_.]+")
_ABBREVIATIONS = {"st": "saint", "ste": "sainte", "sts": "saints", "stes": "saintes"}
_ARRONDISSEMENT = re.compile(r"\b(\d{1,2})\s*(?:er|e|eme|ème)?\s*arrondissement\b")


def fold_commune_name(name: str) -> str:
    """Accent-, case-, hyphen-, apostrophe- and "St/Saint"-insensitive key of a commune name."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(char for char in text if not unicodedata.combining(char)).lower()
    text = re.sub(r"\bcedex\b.*$", "", text)
    words = [_ABBREVIATIONS.get(word, word) for word in _SEPARATORS.split(text) if word]
    return " ".join(words)
