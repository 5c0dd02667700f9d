"""The development kit's own client of the intake: one API key for the demo traffic, the benchmarks and the tests,
made once per state directory (its plain key kept beside the clients file, in the ignored secrets folder)."""

from __future__ import annotations

from ops.intake_clients import add_client
from producers.intake_clients import API_KEY_HEADER, hash_key, read_clients
from schemas.channels import Channel
from signalements.private_files import write_private
from signalements.settings import Settings

CLIENT_NAME = "devkit"


def development_key(settings: Settings) -> str:
    """The key of the ``devkit`` client (both channels), made if it is missing or no longer valid."""
    key_file = settings.secrets_dir / f"{CLIENT_NAME}.intake-key"
    if key_file.exists():
        key = key_file.read_text().strip()
        if any(c.key_sha256 == hash_key(key) for c in read_clients(settings.intake_clients_path).clients):
            return key
    key = add_client(settings.intake_clients_path, CLIENT_NAME, list(Channel))
    write_private(key_file, key + "\n")
    return key


def development_headers(settings: Settings) -> dict[str, str]:
    return {API_KEY_HEADER: development_key(settings)}
