"""The operator's side of the intake's clients: add one (its key is shown once, only its hash is kept), revoke one.

Both rewrite the clients file atomically; the running intake reads it again at its next request.
"""

from __future__ import annotations

from pathlib import Path

from producers.intake_clients import IntakeClient, hash_key, new_key, read_clients, write_clients
from schemas.channels import Channel


def add_client(path: Path, name: str, channels: list[Channel]) -> str:
    """Give ``name`` a new key for ``channels`` (replacing any key it had); return the key, to hand to the client."""
    key = new_key()
    clients = read_clients(path)
    clients.clients = [c for c in clients.clients if c.name != name]
    clients.clients.append(IntakeClient(name=name, key_sha256=hash_key(key), channels=channels))
    write_clients(path, clients)
    return key


def revoke_client(path: Path, name: str) -> bool:
    """Remove ``name``'s key; False if it had none."""
    clients = read_clients(path)
    kept = [c for c in clients.clients if c.name != name]
    if len(kept) == len(clients.clients):
        return False
    clients.clients = kept
    write_clients(path, clients)
    return True
