"""The secrets docker-compose.yml mounts, made on the host before ``docker compose up``: a development CA, the
brokers' certificate for the names ``kafka-1`` to ``kafka-3``, and one password file per principal (the administrator, each service
role, each demo unit). Written into ``deploy/secrets/`` (ignored by git), kept if present, never overwritten.

A real deployment brings its own CA and passwords (docs/security.md); this is what a laptop with Docker needs.
"""

from __future__ import annotations

from pathlib import Path

from devkit.dev_pki import DEVELOPMENT_KEY_ID, DevelopmentCA, ensure_identifier_key, new_password
from ops.access_control import SERVICE_ROLES
from schemas.channels import Force
from signalements.kafka_security import ADMIN_PRINCIPAL, unit_role
from signalements.private_files import write_private
from signalements.reporter_sealing import write_key_pair
from signalements.settings import PROJECT_ROOT

SECRETS_DIR = PROJECT_ROOT / "deploy" / "secrets"
BROKER_NAME = "kafka"  # the certificate's name (and super user) of every node
BROKER_NODES = ("kafka-1", "kafka-2", "kafka-3")  # the compose services, the host names the certificate is for
IDENTIFIER_KEY = "dedup-identifiers.key"  # the workers' HMAC key of phone numbers and handles


def compose_principals(demo_unit_ids: list[str]) -> list[str]:
    """Every principal docker-compose.yml runs a service as (the namespace is empty there)."""
    return [ADMIN_PRINCIPAL, *SERVICE_ROLES, *(unit_role(unit_id) for unit_id in demo_unit_ids)]


def write_new_key_pair(directory: Path, force: Force) -> list[Path]:
    """The force's development key pair, if it is not there yet; the files made."""
    public, private = directory / f"{force.value}.{DEVELOPMENT_KEY_ID}.public", directory / f"{force.value}.{DEVELOPMENT_KEY_ID}.private"
    if public.exists() and private.exists():
        return []
    return list(write_key_pair(directory, force, DEVELOPMENT_KEY_ID))


def make_compose_secrets(demo_unit_ids: list[str], folder: Path = SECRETS_DIR) -> list[str]:
    """Create what is missing; return the files created."""
    created: list[str] = []
    ca = DevelopmentCA(folder)
    if not ca.certificate_file.exists():
        created.append(ca.certificate_file.name)
    ca.ensure()
    had_broker_certificate = (folder / f"{BROKER_NAME}.pem").exists()
    broker = ca.issue(BROKER_NAME, server=True, client=True, dns_names=(BROKER_NAME, *BROKER_NODES))
    if not had_broker_certificate:
        created.append(broker.bundle.name)
    if ensure_identifier_key(folder / IDENTIFIER_KEY):
        created.append(IDENTIFIER_KEY)
    for force in Force:  # the workers seal reporters' contacts with the public keys, the units open them
        for path in write_new_key_pair(folder / "reporter-keys", force):
            created.append(f"reporter-keys/{path.name}")
    credentials = folder / "kafka"
    for principal in compose_principals(demo_unit_ids):
        path = credentials / principal
        if not path.exists():
            write_private(path, new_password() + "\n")
            created.append(f"kafka/{principal}")
    return created
