"""The secrets docker-compose.yml mounts, made on the host before ``docker compose up``: a development CA, the
broker's certificate for the name ``kafka``, and one password file per principal (the administrator, each service
role, each demo unit). Written into ``deploy/secrets/`` (ignored by git), kept if present, never overwritten.

A real deployment brings its own CA and passwords (docs/security.md); this is what a laptop with Docker needs.
"""

from __future__ import annotations

from pathlib import Path

from devkit.dev_pki import DevelopmentCA, new_password
from ops.access_control import SERVICE_ROLES
from signalements.kafka_security import ADMIN_PRINCIPAL, unit_role
from signalements.settings import PROJECT_ROOT

SECRETS_DIR = PROJECT_ROOT / "deploy" / "secrets"
BROKER_NAME = "kafka"  # the compose service, and the host name its certificate is for


def compose_principals(demo_unit_ids: list[str]) -> list[str]:
    """Every principal docker-compose.yml runs a service as (the namespace is empty there)."""
    return [ADMIN_PRINCIPAL, *SERVICE_ROLES, *(unit_role(unit_id) for unit_id in demo_unit_ids)]


def make_compose_secrets(demo_unit_ids: list[str], folder: Path = SECRETS_DIR) -> list[str]:
    """Create what is missing; return the files created."""
    created: list[str] = []
    ca = DevelopmentCA(folder)
    if not ca.certificate_file.exists():
        created.append(ca.certificate_file.name)
    ca.ensure()
    had_broker_certificate = (folder / f"{BROKER_NAME}.pem").exists()
    broker = ca.issue(BROKER_NAME, server=True, client=True, dns_names=(BROKER_NAME,))
    if not had_broker_certificate:
        created.append(broker.bundle.name)
    credentials = folder / "kafka"
    credentials.mkdir(parents=True, exist_ok=True, mode=0o700)
    for principal in compose_principals(demo_unit_ids):
        path = credentials / principal
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(new_password() + "\n")
            created.append(f"kafka/{principal}")
    return created
