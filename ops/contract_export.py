"""Write the published contract (OpenAPI of the intake, JSON Schema of every payload, AsyncAPI of the topics).

The files in ``schemas/contract/`` are generated from the code and committed, so integrators can read them without
running anything; ``signalements contract --check`` (and the tests) fail when they drift from the code.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from signalements import __version__
from signalements.kafka_security import Role
from signalements.settings import PROJECT_ROOT, Settings

CONTRACT_DIR = PROJECT_ROOT / "schemas" / "contract"
OPENAPI_FILE = "openapi.json"
ASYNCAPI_FILE = "asyncapi.json"
JSON_SCHEMA_DIR = "json-schema"


def intake_openapi() -> dict[str, Any]:
    """The OpenAPI document exactly as the intake serves it at ``/openapi.json``."""
    from producers.intake import create_intake_app
    from producers.report_publisher import ReportPublisher
    from signalements.metrics import PipelineMetrics

    with tempfile.TemporaryDirectory() as state_dir:
        # Nothing connects: the publisher and the index only reach Kafka when a report is submitted.
        settings = Settings(state_dir=Path(state_dir), kafka_bootstrap_servers="127.0.0.1:9")
        publisher = ReportPublisher(settings, Role.INTAKE, 1.0)
        return create_intake_app(settings, publisher, PipelineMetrics()).openapi()


def contract_files() -> dict[str, str]:
    """Relative path → file text of every contract file."""
    from schemas.asyncapi import build_asyncapi
    from schemas.json_schemas import all_payload_schemas

    files = {OPENAPI_FILE: _dump(intake_openapi()), ASYNCAPI_FILE: _dump(build_asyncapi(__version__))}
    for name, schema in all_payload_schemas().items():
        files[f"{JSON_SCHEMA_DIR}/{name}"] = _dump(schema)
    return files


def write_contract(directory: Path = CONTRACT_DIR) -> list[Path]:
    """Write every contract file, and remove the ones the code no longer generates."""
    written = []
    expected = contract_files()
    for stale in directory.rglob("*.json") if directory.is_dir() else []:
        if stale.relative_to(directory).as_posix() not in expected:
            stale.unlink()
    for relative, text in expected.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_contract_files(directory: Path = CONTRACT_DIR) -> list[str]:
    """The contract files that are missing or differ from what the code generates, and those it no longer
    generates (a schema version the readers now refuse)."""
    expected = contract_files()
    present = {path.relative_to(directory).as_posix() for path in directory.rglob("*.json")} if directory.is_dir() else set()
    drifted = [
        relative
        for relative, text in expected.items()
        if not (directory / relative).exists() or (directory / relative).read_text(encoding="utf-8") != text
    ]
    return sorted(drifted + sorted(present - set(expected)))


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
