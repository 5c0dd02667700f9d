"""Topic names: part of the public contract, kept exactly as published.

A ``namespace`` prefix (empty in production) lets several pipelines, or several test runs, share one cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.channels import Channel

UNIT_ID_PATTERN = r"^(pn|gn|cross)-[a-z0-9]+(?:-[a-z0-9]+)*$"
_UNIT_ID_RE = re.compile(UNIT_ID_PATTERN)


@dataclass(frozen=True)
class Topics:
    namespace: str = ""

    def raw(self, channel: Channel) -> str:
        return f"{self.namespace}reports.raw.{channel.value}"

    @property
    def raw_all(self) -> list[str]:
        return [self.raw(channel) for channel in Channel]

    @property
    def normalized(self) -> str:
        """Internal: canonical reports, keyed by report id."""
        return f"{self.namespace}reports.normalized"

    @property
    def enriched(self) -> str:
        """Internal: reports with their jurisdiction, keyed by unit id so one unit's reports meet on one partition."""
        return f"{self.namespace}reports.enriched"

    @property
    def unrouted(self) -> str:
        return f"{self.namespace}reports.unrouted"

    @property
    def dead_letter(self) -> str:
        return f"{self.namespace}reports.dlq"

    @property
    def reference_competence(self) -> str:
        """Compacted: the competence table, one row per commune keyed by code INSEE; read by every worker."""
        return f"{self.namespace}reference.competence"

    def unit(self, unit_id: str) -> str:
        if not _UNIT_ID_RE.match(unit_id):
            raise ValueError(f"not a unit id: {unit_id!r}")
        return f"{self.namespace}unit.{unit_id}"

    def actions(self, unit_id: str) -> str:
        """What one unit's operators do with its cases (handled, transferred): written by that unit only, read by
        the worker, which puts each action on the queues it concerns (a unit never writes to another's queue)."""
        if not _UNIT_ID_RE.match(unit_id):
            raise ValueError(f"not a unit id: {unit_id!r}")
        return f"{self.namespace}actions.{unit_id}"

    def unit_of_actions(self, topic: str) -> str | None:
        """The unit whose actions ``topic`` carries (the principal allowed to write it), or None."""
        prefix = f"{self.namespace}actions."
        unit_id = topic[len(prefix):] if topic.startswith(prefix) else ""
        return unit_id if _UNIT_ID_RE.match(unit_id) else None

    def is_per_unit(self, topic: str) -> bool:
        """A unit's queue or its actions topic (one of each per unit, about 6,100 units)."""
        for prefix in (f"{self.namespace}unit.", f"{self.namespace}actions."):
            if topic.startswith(prefix) and _UNIT_ID_RE.match(topic[len(prefix):]):
                return True
        return False

    @property
    def actions_pattern(self) -> str:
        return "^" + re.escape(f"{self.namespace}actions.") + ".*"

    @property
    def unit_pattern(self) -> str:
        """Regular expression matching every unit queue (for national consumers)."""
        return "^" + re.escape(f"{self.namespace}unit.") + ".*"
