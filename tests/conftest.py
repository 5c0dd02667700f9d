"""Test fixtures: one real Kafka broker per test session, a topic namespace per test or module.

Like Quix Streams' suite: the session starts a real broker (the project's own KRaft runtime from Maven Central)
unless KAFKA_BOOTSTRAP_SERVERS points at one, and every test gets topics of its own, so tests never see each
other's records. Nothing here skips when Kafka is absent: a broker that cannot start fails the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_probe import free_port, make_settings

from devkit.local_broker import LocalBroker
from signalements.settings import PROJECT_ROOT, Settings


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = LocalBroker(
        home=tmp_path_factory.mktemp("kafka"),
        runtime_dir=PROJECT_ROOT / ".cache" / "kafka",
        port=free_port(),
        controller_port=free_port(),
    )
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return make_settings(kafka_bootstrap, tmp_path)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster from Debian's package (scripts/install-test-tools.sh), for the case stores."""
    from devkit.throwaway_postgres import throwaway_postgres

    with throwaway_postgres() as url:
        yield url
