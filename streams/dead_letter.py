"""Dead letters: a record a stage cannot process, kept whole with the reason.

The dead-letter record's value is the original value, byte for byte, and its key the original key. Its headers are
a CloudEvents envelope of type ``fr.interieur.signalements.deadletter`` whose extension attributes say why and
where from (``ce_dlqreason``, ``ce_dlqstage``, ``ce_dlqtopic``, ``ce_dlqpartition``, ``ce_dlqoffset``); the original
headers follow, each renamed ``original-<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.envelope import DEAD_LETTER_SCHEMA, DEAD_LETTER_TYPE
from schemas.identifiers import DEAD_LETTER_ID_NAMESPACE, stable_id

ORIGINAL_PREFIX = "original-"  # the refused record's own headers, renamed so they never pass for the letter's
MAX_REASON_BYTES = 1000


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def build_dead_letter(
    *,
    stage: str,
    reason_code: str,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None,
    source: str,
) -> DeadLetter:
    # The id is a function of the record's position, so a reprocessed record yields the same dead letter id.
    event_id = stable_id(DEAD_LETTER_ID_NAMESPACE, topic, partition, offset)
    original = headers.items() if isinstance(headers, Mapping) else (headers or [])
    envelope = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", DEAD_LETTER_TYPE.encode()),
        ("ce_dataschema", DEAD_LETTER_SCHEMA.encode()),
        ("ce_time", datetime.now(UTC).isoformat().replace("+00:00", "Z").encode()),
        ("ce_dlqstage", stage.encode()),
        ("ce_dlqreasoncode", reason_code.encode()),
        ("ce_dlqreason", reason.encode()[:MAX_REASON_BYTES]),
        ("ce_dlqtopic", topic.encode()),
        ("ce_dlqpartition", str(partition).encode()),
        ("ce_dlqoffset", str(offset).encode()),
    ]
    renamed = [(f"{ORIGINAL_PREFIX}{name}", bytes(content)) for name, content in original if content is not None]
    return DeadLetter(key=key, value=value or b"", headers=envelope + renamed)
