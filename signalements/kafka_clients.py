"""What every Kafka client of the services shares: the bootstrap list, and closing a client that may have lost its
broker (closing then may fail; the client is dropped either way, and a new one replaces it)."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
