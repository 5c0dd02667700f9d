"""A consenting reporter's contact, sealed for each force as soon as the worker normalizes the report, and opened
only by a unit of that force.

Sealed boxes (libsodium through PyNaCl: an ephemeral X25519 key, XSalsa20-Poly1305) are authenticated public-key
encryption: the worker seals with the forces' public keys and cannot open what it sealed; a police unit's
consumer or desk opens the police box with the police private key, a gendarmerie unit the gendarmerie box.

Keys are files in one directory (``SIGNALEMENTS_REPORTER_KEYS_DIR``): ``<force>.<key id>.public`` and
``<force>.<key id>.private``, each the base64 of a 32-byte key. The worker needs the public files only; a unit's
services need their force's private file(s) only. Rotation: add a key with a later id (ids sort: ``2027-01``);
the worker seals with the latest id of each force from its next start; keep the old private key where events
sealed with it must still be read (the event names its key id), delete it once they have expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from schemas.channels import Force
from schemas.reports import Reporter, ReporterContact, SealedContact
from signalements.private_files import write_private


class ReporterKeysMissing(RuntimeError):
    """The worker cannot seal a contact for a force without its public key: it says so instead of dropping it."""


def _key_files(directory: Path, kind: str) -> dict[Force, dict[str, bytes]]:
    found: dict[Force, dict[str, bytes]] = {}
    for path in sorted(directory.glob(f"*.*.{kind}")) if directory.is_dir() else []:
        force_name, key_id, _ = path.name.split(".", 2)
        try:
            force = Force(force_name)
        except ValueError:
            continue
        found.setdefault(force, {})[key_id] = base64.b64decode(path.read_bytes().strip())
    return found


@dataclass(frozen=True)
class ContactSealer:
    """What the worker holds: each force's latest public key, and the HMAC key of contact hashes."""

    public_keys: dict[Force, tuple[str, PublicKey]]
    hash_secret: bytes = field(repr=False)

    @classmethod
    def load(cls, directory: Path, hash_secret: bytes) -> ContactSealer:
        keys = _key_files(directory, "public")
        missing = [force.value for force in Force if force not in keys]
        if missing:
            raise ReporterKeysMissing(
                f"no public key for {', '.join(missing)} in {directory} (SIGNALEMENTS_REPORTER_KEYS_DIR): "
                "reporters' contacts could not be sealed for that force")
        latest = {force: max(by_id.items()) for force, by_id in keys.items()}
        return cls({force: (key_id, PublicKey(raw)) for force, (key_id, raw) in latest.items()}, hash_secret)

    def protect(self, contact: ReporterContact) -> Reporter:
        plain = json.dumps(contact.model_dump(mode="json"), sort_keys=True).encode()
        material = f"{contact.email or ''}|{contact.phone_e164 or ''}".encode()
        return Reporter(
            contact_hash=hmac.new(self.hash_secret, material, hashlib.sha256).hexdigest()[:32],
            sealed=[SealedContact(force=force, key_id=key_id,
                                  sealed=base64.b64encode(SealedBox(public).encrypt(plain)).decode())
                    for force, (key_id, public) in sorted(self.public_keys.items())],
        )


@dataclass(frozen=True)
class ContactOpener:
    """What a unit's services hold: their force's private keys, by key id."""

    force: Force
    private_keys: dict[str, PrivateKey] = field(repr=False)

    @classmethod
    def load(cls, directory: Path, force: Force) -> ContactOpener:
        keys = _key_files(directory, "private").get(force, {})
        return cls(force, {key_id: PrivateKey(raw) for key_id, raw in keys.items()})

    def open(self, reporter: Reporter | None) -> ReporterContact | None:
        """The contact, if this force's box is there and its key is held; None otherwise (never an error page)."""
        sealed = reporter.for_force(self.force) if reporter is not None else None
        key = self.private_keys.get(sealed.key_id) if sealed is not None else None
        if sealed is None or key is None:
            return None
        try:
            plain = SealedBox(key).decrypt(base64.b64decode(sealed.sealed))
        except CryptoError:
            return None
        return ReporterContact.model_validate_json(plain)


def write_key_pair(directory: Path, force: Force, key_id: str) -> tuple[Path, Path]:
    """A new key pair for ``force`` (the private file readable by its owner only); kept if it exists."""
    public_path = directory / f"{force.value}.{key_id}.public"
    private_path = directory / f"{force.value}.{key_id}.private"
    if public_path.exists() and private_path.exists():
        return public_path, private_path
    private = PrivateKey.generate()
    write_private(private_path, base64.b64encode(bytes(private)) + b"\n")
    public_path.write_bytes(base64.b64encode(bytes(private.public_key)) + b"\n")
    return public_path, private_path
