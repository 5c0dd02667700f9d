"""Dead letters and unrouted reports sent back into a running pipeline once their cause is fixed, through the
operator's commands, on the real broker with real processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipeline_probe import (
    PipelineFactory,
    RunningPipeline,
    free_port,
    make_settings,
    metric,
    query_store,
    read_topic,
    scrape,
    wait_for,
)
from pydantic import SecretStr
from sample_submissions import portal_dealing_point

from ops.reference_topic import publish_competence
from schemas.channels import Channel, Force
from schemas.envelope import MONCOMMISSARIAT_SUBMISSION, REDRIVEN_FROM_HEADER, encode, read_attributes
from schemas.reports import report_id_for
from schemas.submissions import MonCommissariatSubmission
from schemas.topics import Topics
from signalements.kafka_clients import new_producer
from signalements.kafka_security import Role
from signalements.settings import PROJECT_ROOT, Settings
from streams.dead_letter import build_dead_letter
from streams.jurisdiction import Competence

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

VIF = Competence("38545", "Vif", Force.GENDARMERIE, "38-vif", "Brigade de gendarmerie de Vif", ("38450",))
UNITS = ["pn-75-pp", "gn-38-vif"]


@pytest.fixture(scope="module")
def pipeline(pipeline_factory: PipelineFactory, tmp_path_factory: pytest.TempPathFactory) -> RunningPipeline:
    # A competence table without Vif: its reports are valid but no unit is competent, until the row is published.
    reference = tmp_path_factory.mktemp("redrive") / "reference"
    shutil.copytree(PROJECT_ROOT / "reference" / "demo", reference)
    table = reference / "competence-territoriale.csv"
    rows = table.read_text(encoding="utf-8").splitlines(keepends=True)
    table.write_text("".join(row for row in rows if not row.startswith(f"{VIF.commune_code};")), encoding="utf-8")
    return pipeline_factory(UNITS, reference_dir=reference)


def signalements(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=120,
        env={"PATH": "", **settings.as_environment()}, cwd=PROJECT_ROOT,
    )


def summary_of(settings: Settings, *args: str) -> dict[str, Any]:
    result = signalements(settings, *args)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def listed(settings: Settings, *args: str) -> list[dict[str, Any]]:
    result = signalements(settings, *args, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def stored(settings: Settings, unit_id: str, report_id: str) -> list[tuple[object, ...]]:
    return query_store(settings, unit_id, "SELECT case_id FROM case_reports WHERE report_id = ?", report_id)


def route_outcomes(pipeline: RunningPipeline, outcome: str) -> float:
    return metric(scrape(pipeline.worker_metrics_url), "signalements_stage_records_out_total", stage="route",
                  outcome=outcome)


def test_dead_letters_go_back_where_they_came_from_and_never_twice(pipeline: RunningPipeline) -> None:
    settings = pipeline.settings
    topics = Topics(settings.topic_namespace)
    raw_topic = topics.raw(Channel.MONCOMMISSARIAT)
    # A valid report that a past bug refused: its dead letter is what the worker would have written then.
    body = portal_dealing_point()
    submission = MonCommissariatSubmission.model_validate(body)
    report_id = report_id_for(Channel.MONCOMMISSARIAT, submission.submission_id)
    original = encode(MONCOMMISSARIAT_SUBMISSION, submission, event_id=report_id, source="/test",
                      key=submission.submission_id)
    letter = build_dead_letter(
        stage="normalize", reason_code="internal_error", reason="KeyError", topic=raw_topic, partition=0, offset=7,
        key=submission.submission_id.encode(), value=original.value, headers=dict(original.headers), source="/test",
    )
    producer = new_producer(settings, Role.ADMIN, "tests", acks="all")
    producer.send(topics.dead_letter, key=letter.key, value=letter.value, headers=letter.headers).get(timeout=30)
    # And a record no fix will make readable: the worker dead-letters it itself.
    producer.send(raw_topic, key=b"no-envelope", value=b'{"submission_id": "no-envelope"}').get(timeout=30)
    producer.close()
    wait_for(lambda: len(read_topic(settings, topics.dead_letter)) == 2, what="two dead letters")

    held = {record["reason_code"]: record for record in listed(settings, "dead-letters", "list")}
    assert set(held) == {"internal_error", "invalid_envelope"}
    assert held["internal_error"]["origin"] == f"{raw_topic}:0:7" and held["internal_error"]["send_to"] == raw_topic
    assert held["invalid_envelope"]["stage"] == "normalize" and "ce_type" in held["invalid_envelope"]["reason"]
    assert listed(settings, "dead-letters", "list", "--reason", "internal_error")[0]["origin"] == f"{raw_topic}:0:7"

    raw_before = len(read_topic(settings, raw_topic))
    dry = summary_of(settings, "dead-letters", "redrive", "--reason", "internal_error", "--dry-run")
    assert (dry["held"], dry["matched"], dry["would_redrive"]) == (2, 1, 1)
    assert len(read_topic(settings, raw_topic)) == raw_before, "a dry run sends nothing"

    sent = summary_of(settings, "dead-letters", "redrive", "--reason", "internal_error")
    assert (sent["redriven"], sent["by_destination"]) == (1, {raw_topic: 1})
    wait_for(lambda: stored(settings, "pn-75-pp", report_id), what="the refused report stored by its unit")
    [again] = [r for r in read_topic(settings, raw_topic) if r.key == submission.submission_id.encode()]
    assert again.value == original.value
    assert read_attributes(again.headers)[REDRIVEN_FROM_HEADER] == held["internal_error"]["position"]

    # The unreadable record fails again: a new letter names the one it came from, which is then superseded.
    assert summary_of(settings, "dead-letters", "redrive", "--reason", "invalid_envelope")["redriven"] == 1
    wait_for(lambda: len(read_topic(settings, topics.dead_letter)) == 3, what="the record dead-lettered again")
    dry = summary_of(settings, "dead-letters", "redrive", "--reason", "invalid_envelope", "--dry-run")
    assert (dry["matched"], dry["superseded"], dry["would_redrive"]) == (2, 1, 1)


def test_unrouted_reports_are_routed_again_after_the_reference_is_fixed(pipeline: RunningPipeline) -> None:
    settings = pipeline.settings
    body = portal_dealing_point(citycode=VIF.commune_code, postcode="38450", city="Vif")
    del body["report"]["place"]["latitude"], body["report"]["place"]["longitude"]
    response = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers, json=body, timeout=15)
    assert response.status_code == 202, response.text
    report_id = response.json()["report_id"]

    held = wait_for(lambda: listed(settings, "unrouted", "list"), what="the unrouted report")
    assert [(h["origin"], h["reason_code"]) for h in held] == [(report_id, "no_competent_unit")]
    assert summary_of(settings, "unrouted", "redrive", "--dry-run")["would_redrive"] == 1

    publish_competence(settings, [VIF])  # the fix: the missing row, live on the reference topic
    wait_for(
        lambda: metric(scrape(pipeline.worker_metrics_url), "signalements_reference_updates_total", outcome="applied"),
        what="the worker applying the new row",
    )
    sent = summary_of(settings, "unrouted", "redrive")
    assert (sent["redriven"], sent["by_reason"]) == (1, {"no_competent_unit": 1})
    cases = wait_for(lambda: stored(settings, "gn-38-vif", report_id), what="the report stored by Vif's brigade")

    # Its unrouted record stays on the topic (a log), so a second redrive sends it again: harmless, the route
    # stage knows the report and the unit keeps one case.
    duplicates_before = route_outcomes(pipeline, "duplicate")
    assert summary_of(settings, "unrouted", "redrive")["redriven"] == 1
    wait_for(lambda: route_outcomes(pipeline, "duplicate") > duplicates_before, what="the report dropped as known")
    assert stored(settings, "gn-38-vif", report_id) == cases


def test_an_unreachable_broker_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    settings = make_settings(f"127.0.0.1:{free_port()}", tmp_path, grant=False, intake_produce_timeout_s=2.0,
                             kafka_username="admin", kafka_password=SecretStr("unused"))
    result = signalements(settings, "dead-letters", "list")
    assert result.returncode == 1
    assert "Kafka is unreachable" in result.stderr
