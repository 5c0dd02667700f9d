"""Every Kafka client of the services (kafka-python) is made here: the bootstrap list, a client id, the principal
of its role with TLS (signalements/kafka_security.py), the options each kind shares, so that what every connection
needs is said in one place. And closing a client that may have lost its broker (closing then may fail; the client is dropped
either way, and a new one replaces it).

The worker's own clients are Faust's and aiokafka's (streams/app.py, streams/reference_table.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from signalements.kafka_security import kafka_python_security
from signalements.settings import Settings

log = logging.getLogger(__name__)


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """``host:port,host:port`` as the list kafka-python takes."""
    return [server.strip() for server in bootstrap_servers.split(",") if server.strip()]


def close_quietly(close: Callable[[], object], what: str) -> None:
    """``close()`` a client, logging (at debug) rather than raising if its lost broker makes that fail."""
    try:
        close()
    except Exception:  # noqa: BLE001 (a client cut off from its broker may fail to close; it is dropped either way)
        log.debug("closing %s failed", what, exc_info=True)


def new_admin(settings: Settings, role: str, client_id: str, **options: Any) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap_list(settings.bootstrap_servers), client_id=client_id,
                            **kafka_python_security(settings, role), **options)


def new_producer(settings: Settings, role: str, client_id: str, **options: Any) -> KafkaProducer:
    """A producer that waits for every in-sync replica (acks=all) unless told otherwise."""
    return KafkaProducer(bootstrap_servers=bootstrap_list(settings.bootstrap_servers), client_id=client_id,
                         **kafka_python_security(settings, role), **{"acks": "all", **options})


def new_consumer(settings: Settings, role: str, client_id: str, *topics: str, **options: Any) -> KafkaConsumer:
    """A consumer that commits only when told (the services commit after their store), unless told otherwise."""
    return KafkaConsumer(*topics, bootstrap_servers=bootstrap_list(settings.bootstrap_servers), client_id=client_id,
                         **kafka_python_security(settings, role), **{"enable_auto_commit": False, **options})
