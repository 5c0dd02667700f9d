"""Who may post reports to the intake: one API key per integrated client, kept only as its SHA-256, with the
channels that client may post to.

A key is 256 random bits (``new_key``), so a fast hash is enough: nobody can search that space, and a slow KDF
(bcrypt, argon2) would add tens of milliseconds to every report for nothing (GitHub's tokens are kept the same way).
The file is read again when it changes, so adding or revoking a client (``signalements intake-clients``) takes
effect without a restart. A missing file means no client: every report is refused (401), never accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from schemas.channels import Channel
from signalements.watched_file import WatchedModelFile, read_model, write_model

API_KEY_HEADER = "X-Api-Key"


class IntakeClient(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="bounded: it labels the metrics")
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    channels: list[Channel] = Field(min_length=1)


class IntakeClientList(BaseModel):
    clients: list[IntakeClient] = []


def new_key() -> str:
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_clients(path: Path) -> IntakeClientList:
    return read_model(path, IntakeClientList, IntakeClientList)


def write_clients(path: Path, clients: IntakeClientList) -> None:
    write_model(path, clients)


class ClientRates:
    """A token bucket per client: ``rate`` reports a second sustained, ``burst`` at once. A flood from one client
    (a bot behind a stolen key, a loop in a portal) is refused with 429 before it reaches Kafka, and the other
    clients are not slowed by it. Per intake process: several intakes each allow that much."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 if the client may post now (one token taken), else the seconds until it may."""
        with self._lock:
            now = self._clock()
            tokens, since = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - since) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate


class IntakeClients:
    """The clients of a file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = WatchedModelFile(path, IntakeClientList, IntakeClientList)

    def identify(self, key: str) -> IntakeClient | None:
        """The client whose key this is, or None (every hash compared in constant time)."""
        digest = hash_key(key)
        found = None
        for client in self._file.current().clients:
            if hmac.compare_digest(client.key_sha256, digest):
                found = client
        return found
