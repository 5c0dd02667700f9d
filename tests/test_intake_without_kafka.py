"""An unreachable broker is an error to the caller: 503 with Retry-After, never a false "accepted"."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from pipeline_probe import free_port, make_settings, metric, parse_metrics
from pydantic import SecretStr
from sample_submissions import portal_dealing_point

from devkit.intake_key import development_headers
from producers.intake import create_intake_app
from producers.report_publisher import ReportPublisher
from signalements.kafka_link import KafkaLink
from signalements.kafka_security import Role
from signalements.metrics import PipelineMetrics


def test_intake_answers_503_when_no_broker_listens(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    # Secured as always (TLS and SCRAM to a port where nothing listens): the credential is given, the broker absent.
    settings = make_settings(nobody, tmp_path, grant=False, intake_produce_timeout_s=1.0, kafka_username="intake",
                             kafka_password=SecretStr("unused"))
    metrics = PipelineMetrics()
    publisher = ReportPublisher(settings, Role.INTAKE, settings.intake_produce_timeout_s,
                                KafkaLink(metrics.kafka_connected, "intake"))
    client = TestClient(create_intake_app(settings, publisher, metrics), headers=development_headers(settings))

    response = client.post("/v1/reports/moncommissariat", json=portal_dealing_point())

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "retry later" in response.json()["detail"]
    samples = parse_metrics(client.get("/metrics").text)
    assert metric(samples, "signalements_stage_records_failed_total", stage="intake", reason="kafka_unavailable") == 1
    assert metric(samples, "signalements_stage_records_out_total", stage="intake", outcome="accepted") == 0
    assert metric(samples, "signalements_kafka_connected") == 0
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "not ready" in ready.json()["detail"]
    assert client.get("/healthz").status_code == 200  # alive all the same: a supervisor must not restart it

    # Kafka failed a moment ago: the next report is refused at once, not after another connection timeout.
    started = time.monotonic()
    again = client.post("/v1/reports/moncommissariat", json=portal_dealing_point())
    assert again.status_code == 503 and time.monotonic() - started < 0.5
    publisher.close()
