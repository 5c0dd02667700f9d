"""The intake on the real broker: accepted once per submission id, duplicates answered, nothing written twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pipeline_probe import make_settings, metric, parse_metrics, read_topic
from sample_submissions import conversation_delivery_network, portal_dealing_point

from devkit.intake_key import development_headers
from producers.accepted_submissions import AcceptedSubmissions, index_path
from producers.intake import SOURCE, create_intake_app
from producers.report_publisher import ReportPublisher
from schemas.channels import Channel
from schemas.envelope import MONCOMMISSARIAT_SUBMISSION, decode, encode, kafka_headers
from schemas.reports import report_id_for
from schemas.submissions import MonCommissariatSubmission
from schemas.topics import Topics
from signalements.kafka_clients import new_producer
from signalements.kafka_security import Role
from signalements.metrics import PipelineMetrics
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics


@contextmanager
def intake(settings: Settings) -> Iterator[TestClient]:
    """A fresh intake process's worth of state: its publisher, its index (from the state dir) and its metrics."""
    publisher = ReportPublisher(settings, Role.INTAKE, settings.intake_produce_timeout_s)
    index = AcceptedSubmissions(
        index_path(settings.state_dir), settings, Role.INTAKE, Topics(settings.topic_namespace)
    )
    try:
        yield TestClient(create_intake_app(settings, publisher, PipelineMetrics(), index), headers=development_headers(settings))
    finally:
        publisher.close()
        index.close()


@pytest.fixture
def topics_ready(settings: Settings) -> Settings:
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    return settings


def raw_records(settings: Settings, channel: Channel) -> list:
    return read_topic(settings, Topics(settings.topic_namespace).raw(channel))


def test_accepted_report_is_on_the_raw_topic_as_a_cloudevent(topics_ready: Settings) -> None:
    body = portal_dealing_point()
    with intake(topics_ready) as client:
        response = client.post("/v1/reports/moncommissariat", json=body)

    assert response.status_code == 202, response.text
    assert response.json() == {
        "report_id": report_id_for(Channel.MONCOMMISSARIAT, body["submission_id"]), "status": "accepted"
    }
    [record] = raw_records(topics_ready, Channel.MONCOMMISSARIAT)
    assert record.key == body["submission_id"].encode()
    event = decode(record.headers, record.key, record.value)
    assert event.event_id == response.json()["report_id"]
    assert event.payload == MonCommissariatSubmission.model_validate(body)


def test_resending_a_submission_is_answered_as_duplicate_and_written_once(topics_ready: Settings) -> None:
    body = conversation_delivery_network()
    with intake(topics_ready) as client:
        first = client.post("/v1/reports/brigade-numerique", json=body)
        second = client.post("/v1/reports/brigade-numerique", json=body)
        samples = parse_metrics(client.get("/metrics").text)

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"report_id": first.json()["report_id"], "status": "duplicate"}
    assert len(raw_records(topics_ready, Channel.BRIGADE_NUMERIQUE)) == 1
    assert metric(samples, "signalements_stage_records_out_total", stage="intake", outcome="duplicate") == 1
    assert metric(samples, "signalements_stage_records_out_total", stage="intake", outcome="accepted") == 1
    assert metric(samples, "signalements_intake_produce_duration_seconds_count", channel="brigade-numerique") == 1


def test_the_same_id_on_the_other_channel_is_another_report(topics_ready: Settings) -> None:
    portal = portal_dealing_point()
    conversation = conversation_delivery_network()
    conversation["conversation_id"] = portal["submission_id"]
    with intake(topics_ready) as client:
        assert client.post("/v1/reports/moncommissariat", json=portal).status_code == 202
        assert client.post("/v1/reports/brigade-numerique", json=conversation).status_code == 202


def test_concurrent_resends_produce_one_record(topics_ready: Settings) -> None:
    body = portal_dealing_point()
    with intake(topics_ready) as client, ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: client.post("/v1/reports/moncommissariat", json=body).status_code, range(8)))

    assert sorted(statuses) == [200] * 7 + [202]
    assert len(raw_records(topics_ready, Channel.MONCOMMISSARIAT)) == 1


def test_duplicates_are_recognized_after_a_restart_that_lost_the_index(topics_ready: Settings) -> None:
    body = portal_dealing_point()
    with intake(topics_ready) as client:
        assert client.post("/v1/reports/moncommissariat", json=body).status_code == 202
    index_path(topics_ready.state_dir).unlink()  # a new machine, or a lost volume: rebuilt from the raw topic

    with intake(topics_ready) as client:
        again = client.post("/v1/reports/moncommissariat", json=body)

    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert len(raw_records(topics_ready, Channel.MONCOMMISSARIAT)) == 1


def test_a_submission_produced_directly_to_the_raw_topic_is_a_duplicate_at_the_intake(topics_ready: Settings) -> None:
    # An integrated system wrote it straight to Kafka (or the intake crashed between the ack and its index insert).
    body = portal_dealing_point()
    submission = MonCommissariatSubmission.model_validate(body)
    message = encode(
        MONCOMMISSARIAT_SUBMISSION, submission, event_id=report_id_for(Channel.MONCOMMISSARIAT, body["submission_id"]),
        source=SOURCE, key=body["submission_id"],
    )
    producer = new_producer(topics_ready, Role.ADMIN, "tests", acks="all")
    producer.send(
        Topics(topics_ready.topic_namespace).raw(Channel.MONCOMMISSARIAT),
        key=body["submission_id"].encode(), value=message.value, headers=kafka_headers(message),
    ).get(timeout=30)
    producer.close()

    with intake(topics_ready) as client:
        response = client.post("/v1/reports/moncommissariat", json=body)

    assert response.json()["status"] == "duplicate"
    assert len(raw_records(topics_ready, Channel.MONCOMMISSARIAT)) == 1


def test_invalid_fields_are_named_and_nothing_is_written(topics_ready: Settings) -> None:
    body = portal_dealing_point()
    body["report"]["place"]["postcode"] = "7501"
    body["report"]["place"]["latitude"] = 40.4168
    with intake(topics_ready) as client:
        response = client.post("/v1/reports/moncommissariat", json=body)
        samples = parse_metrics(client.get("/metrics").text)

    assert response.status_code == 422
    locations = {tuple(item["loc"]) for item in response.json()["detail"]}
    assert ("body", "report", "dealing_point", "place", "postcode") in locations
    assert raw_records(topics_ready, Channel.MONCOMMISSARIAT) == []
    assert metric(samples, "signalements_stage_records_failed_total", channel="moncommissariat", reason="invalid") == 1


def test_oversized_bodies_get_413(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = make_settings(kafka_bootstrap, tmp_path, intake_max_body_bytes=2048)
    body = conversation_delivery_network()
    body["transcript_excerpt"] = "x" * 3000
    with intake(settings) as client:
        response = client.post("/v1/reports/brigade-numerique", json=body)
    assert response.status_code == 413


def test_an_id_accepted_by_another_instance_is_learnt_in_the_background(
    topics_ready: Settings, tmp_path: Path
) -> None:
    from pipeline_probe import wait_for

    # Another intake instance: its own index, caught up before the submission exists, then refreshing.
    other = AcceptedSubmissions(
        index_path(tmp_path / "other-instance"), topics_ready, Role.INTAKE, Topics(topics_ready.topic_namespace)
    )
    other.ensure_caught_up()
    body = portal_dealing_point()
    assert not other.is_accepted(Channel.MONCOMMISSARIAT, body["submission_id"])
    stop = threading.Event()
    refresher = other.keep_refreshing(0.3, stop)
    try:
        with intake(topics_ready) as client:
            assert client.post("/v1/reports/moncommissariat", json=body).status_code == 202
        wait_for(lambda: other.is_accepted(Channel.MONCOMMISSARIAT, body["submission_id"]),
                 timeout_s=30, what="the other instance's index to learn the id")
    finally:
        stop.set()
        refresher.join(timeout=30)
        other.close()
