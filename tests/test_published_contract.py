"""The published contract files are the code's own: the served OpenAPI, the JSON Schemas, the AsyncAPI document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pipeline_probe import make_settings
from sample_submissions import conversation_delivery_network, portal_dealing_point

from ops.contract_export import ASYNCAPI_FILE, CONTRACT_DIR, JSON_SCHEMA_DIR, OPENAPI_FILE
from producers.intake import create_intake_app
from producers.report_publisher import ReportPublisher
from schemas.envelope import (
    BRIGADE_NUMERIQUE_SUBMISSION,
    DEAD_LETTER_SCHEMA,
    EVENT_TYPES,
    MONCOMMISSARIAT_SUBMISSION,
)
from signalements.kafka_security import Role
from signalements.metrics import PipelineMetrics
from signalements.settings import PROJECT_ROOT

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes


def test_the_committed_openapi_document_is_the_one_the_intake_serves(tmp_path: Path) -> None:
    settings = make_settings("127.0.0.1:9", tmp_path, grant=False)
    publisher = ReportPublisher(settings, Role.INTAKE, 1.0)
    served = TestClient(create_intake_app(settings, publisher, PipelineMetrics())).get("/openapi.json").json()

    committed = json.loads((CONTRACT_DIR / OPENAPI_FILE).read_text(encoding="utf-8"))
    assert committed == served
    assert set(committed["paths"]) >= {"/v1/reports/moncommissariat", "/v1/reports/brigade-numerique"}
    responses = committed["paths"]["/v1/reports/moncommissariat"]["post"]["responses"]
    assert set(responses) == {"200", "202", "400", "401", "403", "413", "422", "429", "503"}
    # Every report route requires the client's key, declared as a security scheme.
    assert committed["components"]["securitySchemes"]["IntakeClientKey"] == {
        "type": "apiKey", "in": "header", "name": "X-Api-Key",
        "description": "the integrated client's API key (`signalements intake-clients add`)"}
    assert committed["paths"]["/v1/reports/moncommissariat"]["post"]["security"] == [{"IntakeClientKey": []}]


def test_contract_check_passes_on_the_committed_files() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "contract", "--check"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_contract_check_fails_when_a_file_drifts(tmp_path: Path) -> None:
    from ops.contract_export import stale_contract_files, write_contract

    write_contract(tmp_path)
    assert stale_contract_files(tmp_path) == []
    (tmp_path / JSON_SCHEMA_DIR / "case.handled.v1.json").write_text("{}\n")
    assert stale_contract_files(tmp_path) == [f"{JSON_SCHEMA_DIR}/case.handled.v1.json"]
    (tmp_path / JSON_SCHEMA_DIR / "case.opened.v1.json").write_text("{}\n")  # a version no longer published
    assert stale_contract_files(tmp_path) == [f"{JSON_SCHEMA_DIR}/case.handled.v1.json",
                                              f"{JSON_SCHEMA_DIR}/case.opened.v1.json"]


def test_there_is_one_json_schema_per_event_type_named_by_its_dataschema() -> None:
    ids = {
        json.loads(path.read_text(encoding="utf-8"))["$id"] for path in (CONTRACT_DIR / JSON_SCHEMA_DIR).glob("*.json")
    }
    assert ids == {event_type.dataschema for event_type in EVENT_TYPES.values()} | {DEAD_LETTER_SCHEMA}


def test_valid_submissions_satisfy_their_published_json_schema() -> None:
    """The exported schemas accept what the models accept (checked with a JSON Schema validator, not pydantic)."""
    import jsonschema_rs

    for event_type, body in (
        (MONCOMMISSARIAT_SUBMISSION, portal_dealing_point()),
        (BRIGADE_NUMERIQUE_SUBMISSION, conversation_delivery_network()),
    ):
        schema = json.loads((CONTRACT_DIR / JSON_SCHEMA_DIR / f"{event_type.name}.v1.json").read_text())
        validator = jsonschema_rs.validator_for(schema)
        assert validator.is_valid(body)
        body["report"]["kind"] = "rumour"
        assert not validator.is_valid(body)


def test_asyncapi_document_lists_every_topic() -> None:
    document = json.loads((CONTRACT_DIR / ASYNCAPI_FILE).read_text(encoding="utf-8"))
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        "reports.raw.moncommissariat", "reports.raw.brigade-numerique", "reports.normalized", "reports.enriched",
        "unit.{unitId}", "actions.{unitId}", "reports.unrouted", "reports.dlq", "reference.competence",
    }
