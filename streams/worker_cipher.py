"""What only the worker may read, encrypted wherever it leaves the worker's memory.

Two uses, one construction (AES-256-GCM under a key derived with HKDF from the identifier secret every worker
shares, one key per use):

- the deduplication state (RocksDB files and changelog topics): ``state_cipher``;
- a delivery network's phone number and handle on the worker's internal topics (``reports.normalized``,
  ``reports.enriched``, ``reports.unrouted``): ``DeliverySeal``. The normalize stage seals them, the route stage
  opens them to key the deduplication (a keyed hash) and to put them, in clear, on the unit's queue, the one place
  its officers must read them. An operator reading an internal topic or a dead letter sees neither.

A value altered on a topic or on disk fails its authentication tag and is refused rather than believed; a sealed
delivery is bound to its report id, so it cannot be moved onto another report.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError

from schemas.reports import E164, Canonical, CanonicalReport, DeliveryNetwork, EnrichedReport

NONCE_BYTES = 12


class WorkerCipher:
    """AES-256-GCM with a random nonce per value, under the key of one ``purpose``."""

    def __init__(self, secret: bytes, purpose: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, bound_to: bytes | None = None) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, bound_to)

    def open(self, sealed: bytes, bound_to: bytes | None = None) -> bytes:
        """The plain value; ``cryptography.exceptions.InvalidTag`` if it was altered or sealed under another key."""
        return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], bound_to)


def state_cipher(secret: bytes) -> WorkerCipher:
    # The purpose string is part of the key: changing it would make every stored state unreadable.
    return WorkerCipher(secret, b"signalements dedup state")


class DeliveryIdentifiers(Canonical):
    """What ``DeliveryNetwork.sealed`` holds once opened."""

    phone_e164: E164 | None = None
    handle: str | None = None


class UnreadableDelivery(ValueError):
    """A sealed delivery that this worker's key does not open (altered, or sealed with another identifier key)."""


class DeliverySeal:
    """Seals a delivery network's identifiers for the worker's internal hops, and opens them at the route stage."""

    def __init__(self, secret: bytes) -> None:
        self._cipher = WorkerCipher(secret, b"signalements internal delivery identifiers")

    def seal(self, report: CanonicalReport) -> CanonicalReport:
        delivery = report.delivery
        if delivery is None or delivery.sealed is not None or not (delivery.phone_e164 or delivery.handle):
            return report
        identifiers = DeliveryIdentifiers(phone_e164=delivery.phone_e164, handle=delivery.handle)
        sealed = self._cipher.seal(identifiers.model_dump_json().encode(), report.report_id.encode())
        hidden = DeliveryNetwork(platform=delivery.platform, sealed=base64.b64encode(sealed).decode())
        return report.model_copy(update={"delivery": hidden})

    def open(self, enriched: EnrichedReport) -> EnrichedReport:
        """The report with its delivery in clear (a report whose delivery is not sealed is returned as it is)."""
        report = enriched.report
        delivery = report.delivery
        if delivery is None or delivery.sealed is None:
            return enriched
        try:
            plain = self._cipher.open(base64.b64decode(delivery.sealed, validate=True), report.report_id.encode())
            identifiers = DeliveryIdentifiers.model_validate_json(plain)
        except (InvalidTag, binascii.Error, ValidationError) as error:
            raise UnreadableDelivery(
                "delivery.sealed: not opened by this worker's identifier key (altered, or sealed with another key)"
            ) from error
        clear = DeliveryNetwork(platform=delivery.platform, **identifiers.model_dump())
        return enriched.model_copy(update={"report": report.model_copy(update={"delivery": clear})})
