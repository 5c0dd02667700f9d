"""Times as French readers read them: Europe/Paris, day first."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def paris_time(text: str | datetime | None) -> str:
    """A stored UTC time (ISO text or aware datetime) in Europe/Paris, day first; empty for none."""
    if text is None or text == "":
        return ""
    moment = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    return moment.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def paris_month(moment: datetime) -> str:
    """The month (YYYY-MM) a moment falls in, in Europe/Paris: a point opened on 31 March at 23:30 in Paris is
    March's, though it is already April in UTC."""
    return moment.astimezone(PARIS).strftime("%Y-%m")
