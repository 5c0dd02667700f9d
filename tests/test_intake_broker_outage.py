"""The broker stops while the intake serves: the intake answers 503 with Retry-After, then recovers, and no report
it accepted is lost or written twice, even those whose acknowledgement was lost with the broker.

A dedicated broker (its own ports and directory) is stopped here, never the session's.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from pipeline_probe import free_port, make_settings, read_topic, services_environment, wait_for
from sample_submissions import conversation_delivery_network, portal_dealing_point

from devkit.intake_key import development_headers
from devkit.local_broker import LocalBroker
from devkit.local_run import Services, wait_for_http
from schemas.channels import Channel
from schemas.topics import Topics
from signalements.kafka_security import Role
from signalements.settings import PROJECT_ROOT
from signalements.topic_admin import ensure_topics, pipeline_topics

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes


def submission(number: int) -> tuple[str, dict, str]:
    if number % 2:
        body = conversation_delivery_network()
        return "/v1/reports/brigade-numerique", body, body["conversation_id"]
    body = portal_dealing_point()
    return "/v1/reports/moncommissariat", body, body["submission_id"]


def test_broker_outage_gives_503_then_recovery_without_loss(tmp_path: Path) -> None:
    broker = LocalBroker(
        home=tmp_path / "kafka", runtime_dir=PROJECT_ROOT / ".cache" / "kafka", port=free_port(),
        controller_port=free_port(),
    )
    broker.start()
    settings = make_settings(broker.bootstrap_servers, tmp_path / "state", intake_produce_timeout_s=2.0,
                             kafka_ssl_cafile=broker.ca_file, kafka_credentials_dir=broker.credentials)
    services = Services(tmp_path / "log", services_environment(settings))
    url = f"http://{settings.intake_host}:{settings.intake_port}"
    accepted: dict[str, str] = {}  # submission id → report id
    unanswered: list[tuple[str, dict, str]] = []
    try:
        ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
        services.start("intake", "intake")
        wait_for_http(f"{url}/healthz", services)
        with httpx.Client(base_url=url, timeout=30, headers=development_headers(settings)) as client:
            for number in range(10):
                path, body, submission_id = submission(number)
                response = client.post(path, json=body)
                assert response.status_code == 202, response.text
                accepted[submission_id] = response.json()["report_id"]

            broker.stop()
            refused = 0
            for number in range(10, 16):
                path, body, submission_id = submission(number)
                response = client.post(path, json=body)
                assert response.status_code == 503, response.text
                assert int(response.headers["retry-after"]) > 0
                refused += 1
                unanswered.append((path, body, submission_id))
            assert refused == 6

            broker.start()
            # Clients retry what was refused, as Retry-After tells them; each ends accepted or duplicate.
            def retried_all() -> bool:
                for item in list(unanswered):
                    path, body, submission_id = item
                    response = client.post(path, json=body)
                    if response.status_code in (200, 202):
                        accepted[submission_id] = response.json()["report_id"]
                        unanswered.remove(item)
                    else:
                        assert response.status_code == 503, response.text
                        time.sleep(0.5)
                return not unanswered

            wait_for(retried_all, timeout_s=120, what="the intake to accept again after the broker came back")
            for number in range(16, 20):
                path, body, submission_id = submission(number)
                response = client.post(path, json=body)
                assert response.status_code == 202, response.text
                accepted[submission_id] = response.json()["report_id"]

        topics = Topics(settings.topic_namespace)
        keys = [
            record.key.decode()
            for channel in Channel
            for record in read_topic(settings, topics.raw(channel), timeout_s=30)
        ]
        assert sorted(keys) == sorted(accepted)  # all 20, each exactly once
        assert len(accepted) == 20
    finally:
        services.stop()
        broker.stop()
