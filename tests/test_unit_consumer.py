"""The per-unit consumer on the real broker: idempotence, held updates, parked events, a crash between the store's
commit and the offset commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from consumer_probe import (
    STORE_BACKENDS,
    committed_offsets,
    consuming,
    open_store,
    produce,
    produce_raw,
    with_store_backend,
)
from pipeline_probe import metric, read_topic, scrape, wait_for

from devkit.synthetic_cases import CHAMONIX, PARIS_11, case_opened, case_updated
from schemas.envelope import CASE_OPENED, encode
from schemas.topics import Topics
from signalements.settings import Settings

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

UNIT = PARIS_11.unit_id


@pytest.fixture(params=STORE_BACKENDS)
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Every test here runs on both store backends (SQLite files, and PostgreSQL with the same schema)."""
    return with_store_backend(request, settings)


def case_row(settings: Settings, case_id: str) -> tuple[int, int, str] | None:
    store = open_store(settings, UNIT)
    try:
        case = store.get_case(case_id)
        return (case.report_count, len(case.reports), case.status) if case else None
    finally:
        store.close()


def test_the_same_events_twice_change_nothing(settings: Settings) -> None:
    opened, updated = case_opened(PARIS_11, "twice"), case_updated(PARIS_11, "twice", 2)
    produce(settings, UNIT, [opened, updated, opened, updated])

    with consuming(settings, [UNIT]):
        wait_for(lambda: (case_row(settings, opened.key) or (0, 0, ""))[1] == 2, what="the case with both reports")
        samples = wait_for(
            lambda: (s := scrape(f"http://127.0.0.1:{settings.consumer_metrics_port}/metrics"))
            and metric(s, "signalements_consumer_events_total", outcome="duplicate") == 2 and s,
            what="two duplicates counted",
        )

    assert case_row(settings, opened.key) == (2, 2, "open")
    store = open_store(settings, UNIT)
    assert (store.count("cases"), store.count("case_reports"), store.count("applied_events")) == (1, 2, 2)
    assert metric(samples, "signalements_consumer_events_total", event_type="case.opened", outcome="stored") == 1
    assert metric(samples, "signalements_consumer_events_total", event_type="case.updated", outcome="updated") == 1
    lags = [(labels["partition"], value) for name, labels, value in samples if name == "signalements_unit_consumer_lag_records"]
    assert {partition for partition, _ in lags} <= {str(p) for p in range(settings.unit_topic_partitions)} and lags
    assert sum(value for _, value in lags) == 0  # everything read
    backend = "postgresql" if settings.consumer_database_url else "sqlite"
    assert metric(samples, "signalements_consumer_store_transaction_seconds_count", backend=backend) >= 1


def test_updates_before_their_opening_are_held_then_applied_in_order(settings: Settings) -> None:
    key = "early-updates"
    produce(settings, UNIT, [case_updated(PARIS_11, key, 3), case_updated(PARIS_11, key, 2)])

    with consuming(settings, [UNIT]):
        store = open_store(settings, UNIT)
        wait_for(lambda: store.count("held_events") == 2, what="both updates held")
        assert store.count("cases") == 0
        opened = case_opened(PARIS_11, key)
        produce(settings, UNIT, [opened])
        wait_for(lambda: store.count("held_events") == 0, what="the held updates released")

    case = store.get_case(opened.key)
    assert case is not None
    # The newest update's totals win whatever order the updates came in.
    assert (case.case_version, case.report_count, len(case.reports)) == (3, 3, 3)
    assert store.count("applied_events") == 3


FUTURE_VERSION = CASE_OPENED.version + 1  # a version of the schema this reader does not know yet


def test_unreadable_events_are_parked_with_the_reason_and_never_block_the_queue(settings: Settings) -> None:
    good = case_opened(PARIS_11, "after-the-garbage")
    future = encode(good.event_type, good.payload, event_id="v2", source="/test", key=good.key)
    future_headers = [
        (k, v if k != "ce_dataschema" else f"urn:signalements:schema:case.opened:{FUTURE_VERSION}".encode())
        for k, v in future.headers.items()
    ]
    wrong_unit = case_opened(CHAMONIX, "not-ours")
    wrong = encode(wrong_unit.event_type, wrong_unit.payload, event_id="w", source="/test", key=wrong_unit.key)
    base = [(k, v) for k, v in future.headers.items() if k in ("ce_specversion", "ce_id", "ce_source", "ce_type")]
    produce_raw(settings, UNIT, b"k1", b"\xff\xfe not json", base)
    produce_raw(settings, UNIT, b"k2", future.value, future_headers)
    produce_raw(settings, UNIT, b"k3", b'{"case_id": "x"}', [])
    produce_raw(settings, UNIT, wrong_unit.key.encode(), wrong.value, list(wrong.headers.items()))
    produce(settings, UNIT, [good])

    with consuming(settings, [UNIT]):
        store = open_store(settings, UNIT)
        wait_for(lambda: store.count("cases") == 1, what="the good case after the garbage")
        wait_for(lambda: store.count("parked_events") == 4, what="four parked events")
        samples = scrape(f"http://127.0.0.1:{settings.consumer_metrics_port}/metrics")

    listed = subprocess.run(
        [sys.executable, "-m", "cli.main", "cases", "parked", "--unit", UNIT, "--json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **settings.as_environment()},
    )
    assert listed.returncode == 0, listed.stderr
    assert [row["offset"] for row in json.loads(listed.stdout)] == [row["offset"] for row in store.parked()]
    reasons = sorted(row["reason_code"] for row in store.parked())
    assert reasons == ["invalid_envelope", "invalid_payload", "unsupported_schema", "wrong_unit"]
    by_code = {row["reason_code"]: row["reason"] for row in store.parked()}
    assert f"case.opened:{FUTURE_VERSION}" in by_code["unsupported_schema"]
    assert "ce_type" in by_code["invalid_envelope"]
    assert metric(samples, "signalements_consumer_parked_events_total") == 4
    assert metric(samples, "signalements_consumer_parked_events_total", reason="unsupported_schema") == 1
    # The original bytes are kept for whoever repairs them.
    from sqlalchemy import select

    from consumers.store_schema import parked_events

    with store.engine.connect() as connection:
        values = set(connection.scalars(select(parked_events.c.value)))
    assert b"\xff\xfe not json" in values


# The exit status of a consumer process that dies right after its first store commit, before the offset commit.
FAULT_EXIT_CODE = 75
# The same service as `signalements consume --unit <UNIT>`, but the process dies (os._exit: no cleanup, no commit,
# as a kill would) right after the store committed its first batch and before the offsets are committed.
DIE_AFTER_THE_STORE_COMMIT = f"""
import os
from consumers import unit_consumer
from signalements.settings import Settings

store_batch = unit_consumer.UnitConsumer.store_batch

def store_then_die(self, records):
    store_batch(self, records)
    os._exit({FAULT_EXIT_CODE})

unit_consumer.UnitConsumer.store_batch = store_then_die
unit_consumer.run_unit_consumers(Settings(), [{UNIT!r}])
"""


def run_consumer_process(settings: Settings, tmp_path: Path, die_after_store_commit: bool = False) -> subprocess.Popen[bytes]:
    log = (tmp_path / "consumer.log").open("ab")
    command = ["-c", DIE_AFTER_THE_STORE_COMMIT] if die_after_store_commit else ["-m", "cli.main", "consume", "--unit", UNIT]
    return subprocess.Popen(
        [sys.executable, *command], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **settings.as_environment()},
    )


def test_a_crash_between_the_store_commit_and_the_offset_commit_loses_nothing_and_duplicates_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    events = [case_opened(PARIS_11, f"crash-{i}") for i in range(30)]
    produce(settings, UNIT, events)

    crashing = run_consumer_process(settings, tmp_path, die_after_store_commit=True)
    assert crashing.wait(timeout=120) == FAULT_EXIT_CODE, (tmp_path / "consumer.log").read_text()

    store = open_store(settings, UNIT)
    stored_before_crash = store.count("cases")
    assert stored_before_crash > 0  # the store committed...
    assert committed_offsets(settings, UNIT) == {}  # ...the offsets never were: the batch will be read again

    restarted = run_consumer_process(settings, tmp_path)
    try:
        wait_for(lambda: store.count("cases") == 30, timeout_s=120, what="all 30 cases after the restart")
        metrics_url = f"http://127.0.0.1:{settings.consumer_metrics_port}/metrics"
        samples = wait_for(
            lambda: (s := _scrape_quietly(metrics_url))
            and metric(s, "signalements_consumer_events_total", outcome="duplicate") == stored_before_crash and s,
            what="the replayed batch counted as duplicates",
        )
        topic = Topics(settings.topic_namespace).unit(UNIT)
        total = len(read_topic(settings, topic))
        wait_for(lambda: sum(committed_offsets(settings, UNIT).values()) == total, what="offsets committed")
    finally:
        restarted.terminate()
        restarted.wait(timeout=60)

    assert (store.count("cases"), store.count("case_reports"), store.count("applied_events")) == (30, 30, 30)
    assert metric(samples, "signalements_consumer_events_total", outcome="stored") == 30 - stored_before_crash
    reports = json.loads(store.get_case(events[0].key).model_dump_json())["reports"]  # type: ignore[union-attr]
    assert len(reports) == 1


def _scrape_quietly(url: str) -> list | None:  # type: ignore[type-arg]
    try:
        return scrape(url)
    except httpx.HTTPError:  # the process is still starting its metrics server
        return None
