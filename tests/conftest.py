"""Test fixtures: one real Kafka broker per test session, a topic namespace per test or module.

Like Quix Streams' suite: the session starts a real broker (the project's own KRaft runtime from Maven Central)
unless KAFKA_BOOTSTRAP_SERVERS points at one, and every test gets topics of its own, so tests never see each
other's records. Nothing here skips when Kafka is absent: a broker that cannot start fails the session.

The broker runs secured, as in production: TLS from a development CA made for the session, SCRAM users, the
StandardAuthorizer. The session's environment says where its CA and its credentials directory are
(SIGNALEMENTS_KAFKA_SSL_CAFILE, SIGNALEMENTS_KAFKA_CREDENTIALS_DIR), as it would for any client of the project;
the test process acts as the administrator, each service it starts as its own role (pipeline_probe.py).

The broker starts only if a collected test needs it, so the tests that need neither a broker nor processes
(``-m "not broker and not processes"``, ``make test-fast``) run in seconds. Each test is marked by what it needs:
``broker`` when it uses the broker fixture, ``processes`` when its module starts services or tools
(``pytestmark`` there, or its use of the factories below).

Factories, as in Quix Streams' fixtures: ``settings_factory`` (an isolated pipeline's settings: its own topic
namespace, state directory and ports) and ``pipeline_factory`` (intake, worker and unit consumers as real
processes, stopped at the end of the module).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
from pipeline_probe import (
    PipelineFactory,
    RunningPipeline,
    SettingsFactory,
    free_port,
    make_settings,
    running_pipeline,
)

from devkit.local_broker import LocalBroker
from signalements.settings import PROJECT_ROOT, Settings


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:  # its CA and credentials come from the environment too
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
        with pytest.MonkeyPatch.context() as environment:
            environment.setenv("SIGNALEMENTS_KAFKA_SSL_CAFILE", str(broker.ca_file))
            environment.setenv("SIGNALEMENTS_KAFKA_CREDENTIALS_DIR", str(broker.credentials))
            yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return make_settings(kafka_bootstrap, tmp_path)


@pytest.fixture(scope="module")
def settings_factory(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> SettingsFactory:
    """``make(name="pipeline", **overrides)``: the settings of a new isolated pipeline on the session's broker."""

    def make(name: str = "pipeline", **overrides: object) -> Settings:
        return make_settings(kafka_bootstrap, tmp_path_factory.mktemp(name), **overrides)

    return make


@pytest.fixture(scope="module")
def pipeline_factory(settings_factory: SettingsFactory) -> Iterator[PipelineFactory]:
    """``make(units, cross_units=(), settings=None, **overrides)``: a running pipeline for those units' queues,
    stopped when the module's tests are done."""
    with ExitStack() as running:

        def make(units: Sequence[str], cross_units: Sequence[str] = (), settings: Settings | None = None,
                 **overrides: object) -> RunningPipeline:
            chosen = settings or settings_factory(**overrides)
            return running.enter_context(running_pipeline(chosen, list(units), cross_unit_ids=cross_units))

        yield make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        if "kafka_bootstrap" in needs:
            item.add_marker(pytest.mark.broker)
        if "pipeline_factory" in needs:
            item.add_marker(pytest.mark.processes)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster from Debian's package (scripts/install-test-tools.sh), for the case stores."""
    from devkit.throwaway_postgres import throwaway_postgres

    with throwaway_postgres() as url:
        yield url
