"""Schemathesis against the intake's own OpenAPI document, in process, on the real broker.

Valid-per-schema and invalid inputs alike: never a 5xx, every answer documented, and every report answered 202 is
on its raw topic exactly once (no accepted-but-lost report, no double write).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pipeline_probe import read_topic
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from devkit.intake_key import development_headers
from producers.accepted_submissions import AcceptedSubmissions, index_path
from producers.intake import create_intake_app
from producers.report_publisher import ReportPublisher
from schemas.channels import Channel
from schemas.reports import report_id_for
from schemas.topics import Topics
from signalements.kafka_security import Role
from signalements.metrics import PipelineMetrics
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics

CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
    negative_data_rejection,
]


def test_generated_requests_never_fail_the_server_and_accepted_reports_are_on_kafka(settings: Settings) -> None:
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    topics = Topics(settings.topic_namespace)
    publisher = ReportPublisher(settings, Role.INTAKE, settings.intake_produce_timeout_s)
    index = AcceptedSubmissions(index_path(settings.state_dir), settings, Role.INTAKE, topics)
    app = create_intake_app(settings, publisher, PipelineMetrics(), index)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    accepted: dict[tuple[Channel, str], str] = {}
    statuses: dict[int, int] = {}

    credential = development_headers(settings)
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))

    @seed(20210303)
    @given(case=cases)
    @hypothesis_settings(
        max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=False
    )
    def exercise(case: schemathesis.Case) -> None:
        response = case.call(headers=credential)  # the intake's clients authenticate: every request carries a key
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)
        if response.status_code == 202:
            channel = Channel(case.path.rsplit("/", 1)[-1])
            submission_id = case.body["submission_id" if channel is Channel.MONCOMMISSARIAT else "conversation_id"]
            assert response.json()["report_id"] == report_id_for(channel, submission_id)
            accepted[(channel, submission_id)] = response.json()["report_id"]

    try:
        exercise()
    finally:
        publisher.close()
        index.close()

    assert statuses.get(202, 0) > 0 and statuses.get(422, 0) > 0, statuses  # both sides were exercised
    on_kafka = [
        (channel, record.key.decode())
        for channel in Channel
        for record in read_topic(settings, topics.raw(channel), timeout_s=30)
    ]
    assert sorted(on_kafka) == sorted(accepted), "accepted reports missing from Kafka, or written twice"
