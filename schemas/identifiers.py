"""Every stable identifier of the pipeline, in one place: a UUID v5 of one namespace per kind of id and of what the
id stands for. The same input always gives the same id, whoever computes it and however often, which is what
makes every stage idempotent (a record processed twice yields the same ids, and consumers apply an id once).

The namespace values are part of the event contract: changing one changes every id of its kind.
"""

from __future__ import annotations

import uuid
from typing import Final

# A report: its channel and the channel's own submission id.
REPORT_ID_NAMESPACE: Final = uuid.UUID("6f1c4a52-3a0e-4d55-9d1e-2c55b0e0d7a1")
# A case: its unit and what opened it (the first report).
CASE_ID_NAMESPACE: Final = uuid.UUID("0b6f7e3e-93a3-4c5e-8a53-5b3d7a1f9c20")
# An event the worker writes: its CloudEvents type and its subject (a report, a case and its version).
EVENT_ID_NAMESPACE: Final = uuid.UUID("9a4f3e1c-5d2b-4b8e-a7c6-1e0f2d3c4b5a")
# A dead letter: the position of the record it holds.
DEAD_LETTER_ID_NAMESPACE: Final = uuid.UUID("3c2a9c43-1f55-4d38-9c2f-8f3b1c9e0a64")
# A case handled or transferred from a unit's desk: what is done to which case at which version.
HANDLING_ID_NAMESPACE: Final = uuid.UUID("c4a1e9d2-7b3f-4e60-9a85-2f1d0c3b4a59")
# A competence row published on the reference topic: the commune and the row's content.
REFERENCE_ROW_ID_NAMESPACE: Final = uuid.UUID("3c1d2b7e-6a4f-4f0e-9e2d-8b5a7c6d1e0f")
# Synthetic case events of the development kit (consumer tests and benchmark).
SYNTHETIC_EVENT_ID_NAMESPACE: Final = uuid.UUID("3d1c2b7a-6e5f-4a8b-9c0d-1e2f3a4b5c6d")


def stable_id(namespace: uuid.UUID, *parts: object) -> str:
    """The id of ``parts`` (joined with ``:``) in ``namespace``."""
    return str(uuid.uuid5(namespace, ":".join(str(part) for part in parts)))
