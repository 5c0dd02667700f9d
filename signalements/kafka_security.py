"""Who a Kafka client is and how it proves it: the principal of each service role, its password, TLS trust.

Every client of the project connects as the principal of its role (``intake``, ``worker``, ``unit-<unit id>``…),
prefixed by the topic namespace so that several pipelines on one cluster never share a principal. Passwords are
read from files named after the principal in one credentials directory (how Docker and Kubernetes mount secrets),
or for a service that runs as one principal from ``SIGNALEMENTS_KAFKA_USERNAME``/``SIGNALEMENTS_KAFKA_PASSWORD``;
never from a command-line argument. The administrator is the cluster's one super user and is not namespaced.

What each role may do on the broker is granted by ``ops/access_control.py``.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from signalements.settings import Settings


class Role(StrEnum):
    INTAKE = "intake"
    WORKER = "worker"
    NATIONAL_STATS = "national-stats"
    MONITORING = "monitoring"
    ADMIN = "admin"


ADMIN_PRINCIPAL = "admin"


def unit_role(unit_id: str) -> str:
    """The role of one unit's consumer and desk: it reads that unit's queue and writes that unit's actions."""
    return f"unit-{unit_id}"


def principal_name(settings: Settings, role: str) -> str:
    return ADMIN_PRINCIPAL if role == Role.ADMIN else f"{settings.topic_namespace}{role}"


class KafkaCredentialError(RuntimeError):
    """A role's password or the CA file is missing: the service cannot connect, and says which file it expected."""


@dataclass(frozen=True)
class KafkaCredential:
    username: str
    password: str

    def __repr__(self) -> str:  # never a password in a log line or a traceback
        return f"KafkaCredential(username={self.username!r})"


def credential_for(settings: Settings, role: str) -> KafkaCredential:
    """The username and password the role connects with."""
    if settings.kafka_username is not None and settings.kafka_password is not None:
        return KafkaCredential(settings.kafka_username, settings.kafka_password.get_secret_value())
    username = principal_name(settings, role)
    path = settings.credentials_dir / username
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        raise KafkaCredentialError(
            f"no Kafka password for principal {username!r}: expected the file {path} "
            "(grant it with `signalements access grant`, or set SIGNALEMENTS_KAFKA_USERNAME and _PASSWORD)"
        ) from None
    if not password:
        raise KafkaCredentialError(f"the Kafka password file {path} of principal {username!r} is empty")
    return KafkaCredential(username, password)


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the broker's certificate and host name against the configured CA (or the system's)."""
    cafile = settings.ca_file
    if cafile is not None and not cafile.is_file():
        raise KafkaCredentialError(f"the CA file {cafile} does not exist (SIGNALEMENTS_KAFKA_SSL_CAFILE; the local "
                                   "broker makes its own when it first starts)")
    return ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)


def kafka_python_security(settings: Settings, role: str) -> dict[str, Any]:
    """The options of a client of ``role``: kafka-python's, which aiokafka takes under the same names."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {"security_protocol": "PLAINTEXT"}
    credential = credential_for(settings, role)
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": tls_context(settings),
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": credential.username,
        "sasl_plain_password": credential.password,
    }


class KafkaAccessRefused(RuntimeError):
    """The broker refused who we are (wrong password, unknown user) or we refused the broker (untrusted certificate).

    Not a transient failure: retrying would loop forever on a configuration error, so services stop and say why.
    """


async def _try_handshake(settings: Settings, role: str, host: str, port: int, timeout_s: float) -> None:
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError as AIOKafkaError

    options = kafka_python_security(settings, role)
    try:
        conn = await asyncio.wait_for(create_conn(
            host, port, client_id="signalements-access-check", request_timeout_ms=int(timeout_s * 1000),
            **options), timeout_s)
    except ssl.SSLCertVerificationError as error:
        raise KafkaAccessRefused(
            f"the certificate of the broker {host}:{port} is not trusted ({error.verify_message}); "
            f"the CA file in use is {settings.ca_file or 'the system store'} (SIGNALEMENTS_KAFKA_SSL_CAFILE)") from None
    except ssl.SSLError as error:
        raise KafkaAccessRefused(f"TLS with the broker {host}:{port} failed: {error}") from None
    except AIOKafkaError as error:
        name = type(error).__name__
        if "Authentication" in name or "Authorization" in name or "Sasl" in name:
            raise KafkaAccessRefused(
                f"the broker {host}:{port} refused principal {options.get('sasl_plain_username')!r}: {error}") from None
        return  # anything else (the broker away): the service's own retries handle it
    except (OSError, TimeoutError):
        return
    conn.close()


def check_access(settings: Settings, role: str, timeout_s: float = 10.0) -> None:
    """Connect once to the first broker as ``role``: raise KafkaAccessRefused, with why, if the broker refuses the
    credentials or its certificate is not trusted; return if it accepts or cannot be reached (a broker away is
    the retrying services' business, a refused credential is not)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    first = settings.bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    asyncio.run(_try_handshake(settings, role, host, int(port), timeout_s))
