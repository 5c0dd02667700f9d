"""The intake's clients: a report without a known key is 401, on a channel its client may not use 403, both with a
problem body, counted by client and reason, and nothing written; the intake can serve TLS."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from pipeline_probe import metric, parse_metrics, read_topic, services_environment
from sample_submissions import conversation_delivery_network, portal_dealing_point

from devkit.dev_pki import DevelopmentCA
from devkit.local_run import Services
from ops.intake_clients import add_client, revoke_client
from producers.intake import create_intake_app
from producers.intake_clients import API_KEY_HEADER, read_clients
from producers.report_publisher import ReportPublisher
from schemas.channels import Channel
from schemas.topics import Topics
from signalements.kafka_security import Role
from signalements.metrics import PipelineMetrics
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics

# One test starts the intake as a process (see tests/conftest.py).
pytestmark = pytest.mark.processes

PORTAL = "/v1/reports/moncommissariat"
BRIGADE = "/v1/reports/brigade-numerique"


@pytest.fixture
def intake(settings: Settings) -> TestClient:
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    publisher = ReportPublisher(settings, Role.INTAKE, settings.intake_produce_timeout_s)
    return TestClient(create_intake_app(settings, publisher, PipelineMetrics()))


def refused(intake: TestClient, client: str, reason: str) -> float:
    samples = parse_metrics(intake.get("/metrics").text)
    return metric(samples, "signalements_intake_auth_refused_total", client=client, reason=reason)


def test_a_report_without_a_known_key_is_401_and_nothing_is_written(intake: TestClient, settings: Settings) -> None:
    missing = intake.post(PORTAL, json=portal_dealing_point())
    assert missing.status_code == 401 and "X-Api-Key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == 'ApiKey header="X-Api-Key"'
    unknown = intake.post(PORTAL, json=portal_dealing_point(), headers={API_KEY_HEADER: "not-a-key"})
    assert unknown.status_code == 401 and "not a client's" in unknown.json()["detail"]
    # An invalid body says nothing about itself to a caller without a key: 401, not 422.
    assert intake.post(PORTAL, json={"nonsense": True}).status_code == 401
    assert refused(intake, "unknown", "missing_key") == 2 and refused(intake, "unknown", "unknown_key") == 1
    assert read_topic(settings, Topics(settings.topic_namespace).raw(Channel.MONCOMMISSARIAT)) == []


def test_a_client_posts_only_to_its_channels(intake: TestClient, settings: Settings) -> None:
    key = add_client(settings.intake_clients_path, "ma-brigade-numerique", [Channel.BRIGADE_NUMERIQUE])
    stored = read_clients(settings.intake_clients_path).clients
    assert key not in settings.intake_clients_path.read_text() and any(c.name == "ma-brigade-numerique" for c in stored)
    headers = {API_KEY_HEADER: key}

    forbidden = intake.post(PORTAL, json=portal_dealing_point(), headers=headers)
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"] == "client ma-brigade-numerique may not post to moncommissariat"
    assert refused(intake, "ma-brigade-numerique", "channel_not_allowed") == 1
    assert read_topic(settings, Topics(settings.topic_namespace).raw(Channel.MONCOMMISSARIAT)) == []

    assert intake.post(BRIGADE, json=conversation_delivery_network(), headers=headers).status_code == 202

    # Revoked: refused at its next report, without restarting the intake.
    assert revoke_client(settings.intake_clients_path, "ma-brigade-numerique")
    assert intake.post(BRIGADE, json=conversation_delivery_network(), headers=headers).status_code == 401


def test_the_intake_serves_tls_when_given_a_certificate(settings: Settings) -> None:
    ca = DevelopmentCA(settings.secrets_dir / "intake-ca").ensure()
    certificate = ca.issue("intake")
    secured = settings.model_copy(update={"intake_tls_certfile": certificate.certificate,
                                          "intake_tls_keyfile": certificate.key})
    ensure_topics(secured, Role.ADMIN, pipeline_topics(secured))
    key = add_client(secured.intake_clients_path, "portail", [Channel.MONCOMMISSARIAT])
    services = Services(secured.log_dir, services_environment(secured))
    url = f"https://{secured.intake_host}:{secured.intake_port}"
    try:
        services.start("intake", "intake")
        with httpx.Client(verify=str(ca.certificate_file), timeout=15) as client:
            assert _wait_until_answers(client, f"{url}/healthz", services) == 200
            response = client.post(f"{url}{PORTAL}", json=portal_dealing_point(), headers={API_KEY_HEADER: key})
            assert response.status_code == 202, response.text
        with pytest.raises(httpx.ConnectError):  # a client that does not trust its CA is refused the handshake
            httpx.get(f"{url}/healthz", timeout=5)
    finally:
        services.stop()


def _wait_until_answers(client: httpx.Client, url: str, services: Services) -> int:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        services.check_alive()
        try:
            return client.get(url).status_code
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")



def test_a_client_over_its_rate_gets_429_and_the_others_are_not_slowed(settings: Settings) -> None:
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    limited = settings.model_copy(update={"intake_client_rate_per_s": 0.5, "intake_client_burst": 2})
    publisher = ReportPublisher(limited, Role.INTAKE, limited.intake_produce_timeout_s)
    intake = TestClient(create_intake_app(limited, publisher, PipelineMetrics()))
    flooder = {API_KEY_HEADER: add_client(limited.intake_clients_path, "robot", [Channel.MONCOMMISSARIAT])}
    other = {API_KEY_HEADER: add_client(limited.intake_clients_path, "portail", [Channel.MONCOMMISSARIAT])}

    answers = [intake.post(PORTAL, json=portal_dealing_point(), headers=flooder) for _ in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 429, 429]
    assert int(answers[2].headers["retry-after"]) >= 1 and "over its rate" in answers[2].json()["detail"]
    assert intake.post(PORTAL, json=portal_dealing_point(), headers=other).status_code == 202
    assert refused(intake, "robot", "rate_limited") == 2
    accepted = read_topic(limited, Topics(limited.topic_namespace).raw(Channel.MONCOMMISSARIAT))
    assert len(accepted) == 3, "what got 429 was never written"
