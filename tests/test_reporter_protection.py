"""After an end-to-end run with known contacts and free text, every topic, every store and every service log is
searched for them: a reporter's contact is in clear nowhere but the raw topics (what the citizen sent); a delivery
network's number and handle are in clear only where its units must read them (their queues and stores), never on
the worker's internal topics, in its state or its changelogs; no log line holds a contact or the free text.
"""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from pipeline_probe import PipelineFactory, RunningPipeline, query_store, read_topic, wait_for
from sample_submissions import conversation_delivery_network, portal_dealing_point

from schemas.channels import Channel
from schemas.reports import report_id_for
from signalements.kafka_clients import new_admin
from signalements.kafka_security import Role

UNITS = ["pn-75-pp", "gn-74-chamonix-mont-blanc"]
CROSS = ["cross-75", "cross-74"]
RUN = uuid.uuid4().hex[:8]
REPORTER_EMAIL = f"temoin.{RUN}@example.org"
REPORTER_PHONE_WRITTEN, REPORTER_PHONE = "07 81 23 45 67", "+33781234567"
DELIVERY_PHONE_WRITTEN, DELIVERY_PHONE = "06 55 44 33 22", "+33655443322"
DELIVERY_HANDLE_WRITTEN, DELIVERY_HANDLE = f"@Livreur{RUN}", f"livreur{RUN}"
FREE_TEXT = f"portail vert du fond de la cour {RUN}"


@pytest.fixture(scope="module")
def pipeline(pipeline_factory: PipelineFactory) -> RunningPipeline:
    running = pipeline_factory(UNITS, cross_units=CROSS)
    point = portal_dealing_point()
    point["report"]["description"] = FREE_TEXT
    point["reporter"] = {"email": REPORTER_EMAIL, "phone": REPORTER_PHONE_WRITTEN, "consent_to_recontact": True}
    network = conversation_delivery_network()
    network["report"]["contact"]["phone"] = DELIVERY_PHONE_WRITTEN
    network["report"]["contact"]["handle"] = DELIVERY_HANDLE_WRITTEN
    network["reporter"] = {"email": REPORTER_EMAIL, "consent_to_recontact": True}
    assert running.post_report("moncommissariat", point) == 202
    assert running.post_report("brigade-numerique", network) == 202
    for unit_id, channel, body in (("pn-75-pp", Channel.MONCOMMISSARIAT, point["submission_id"]),
                                   ("gn-74-chamonix-mont-blanc", Channel.BRIGADE_NUMERIQUE, network["conversation_id"])):
        report_id = report_id_for(channel, body)
        wait_for(lambda unit_id=unit_id, report_id=report_id: query_store(
            running.settings, unit_id, "SELECT 1 FROM case_reports WHERE report_id = ?", report_id),
            what=f"the report stored by {unit_id}")
    return running


def topic_contents(pipeline: RunningPipeline) -> dict[str, bytes]:
    """Every record of every topic of the pipeline (keys, values, header values), as the administrator reads it."""
    admin = new_admin(pipeline.settings, Role.ADMIN, "tests-scan")
    try:
        names = [t for t in admin.list_topics() if t.startswith(pipeline.settings.topic_namespace)]
    finally:
        admin.close()
    contents = {}
    for name in names:
        records = read_topic(pipeline.settings, name)
        contents[name] = b"\n".join(
            b" ".join([record.key or b"", record.value or b"", *(value or b"" for _, value in record.headers)])
            for record in records)
    return contents


def store_contents(pipeline: RunningPipeline) -> dict[str, bytes]:
    """Every row of every SQLite store the run made (the units' stores, the intake's index), as text."""
    contents = {}
    for path in pipeline.settings.state_dir.rglob("*.sqlite3"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = [repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')]  # noqa: S608
        contents[path.name] = "\n".join(rows).encode()
    return contents


def holding(contents: dict[str, bytes], *needles: str) -> set[str]:
    return {name for name, blob in contents.items() if any(needle.encode() in blob for needle in needles)}


def test_a_reporters_contact_is_in_clear_only_on_the_raw_topics(pipeline: RunningPipeline) -> None:
    topics = topic_contents(pipeline)
    raw = {pipeline.settings.topic_namespace + f"reports.raw.{channel.value}" for channel in Channel}
    # The scan finds what is there: the citizen's own submissions hold the contact as they wrote it.
    assert holding(topics, REPORTER_EMAIL) == raw
    assert holding(topics, REPORTER_PHONE, REPORTER_PHONE_WRITTEN) <= raw
    assert holding(topics, REPORTER_PHONE_WRITTEN) == {pipeline.settings.topic_namespace + "reports.raw.moncommissariat"}
    assert holding(store_contents(pipeline), REPORTER_EMAIL, REPORTER_PHONE, REPORTER_PHONE_WRITTEN) == set()


def test_a_delivery_number_is_in_clear_only_where_its_units_read_it(pipeline: RunningPipeline) -> None:
    namespace = pipeline.settings.topic_namespace
    topics = topic_contents(pipeline)
    its_queues = {f"{namespace}unit.gn-74-chamonix-mont-blanc", f"{namespace}unit.cross-74"}
    changelogs = {name for name in topics if name.endswith("-changelog")}
    assert changelogs and {f"{namespace}reports.normalized", f"{namespace}reports.enriched"} <= set(topics)
    # The worker's internal topics, its state and its changelogs hold the number and the handle only encrypted.
    assert holding(topics, DELIVERY_PHONE) == its_queues
    assert holding(topics, DELIVERY_HANDLE) == its_queues
    # What the citizen wrote, as they wrote it, is on the raw topic only.
    assert holding(topics, DELIVERY_PHONE_WRITTEN) == {f"{namespace}reports.raw.brigade-numerique"}
    stores = holding(store_contents(pipeline), DELIVERY_PHONE)
    assert stores and stores <= {"gn-74-chamonix-mont-blanc.sqlite3", "cross-74.sqlite3"}


def test_no_service_logs_a_contact_or_the_free_text(pipeline: RunningPipeline) -> None:
    logs = {path.name: path.read_bytes() for path in pipeline.settings.log_dir.glob("*.log")}
    assert {"intake.log", "worker.log", "consumers.log"} <= set(logs)
    assert all(logs[name] for name in ("worker.log",)), "the worker logged something: the search means something"
    needles = (REPORTER_EMAIL, REPORTER_PHONE, REPORTER_PHONE_WRITTEN, DELIVERY_PHONE, DELIVERY_PHONE_WRITTEN,
               FREE_TEXT, RUN)
    assert holding(logs, *needles) == set()
