"""The AsyncAPI document, read by the official AsyncAPI parser (@asyncapi/parser on node), matches the models.

The parser is pinned in tests/asyncapi_parser/package.json and its lock; the fixture installs it with `npm ci`
into tests/asyncapi_parser/node_modules (ignored by git) when missing or out of date.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops.contract_export import ASYNCAPI_FILE, CONTRACT_DIR
from schemas.asyncapi import DEAD_LETTER_TOPIC, TOPICS, as_asyncapi_schema, message_id
from schemas.channels import Channel
from schemas.envelope import EVENT_TYPES
from schemas.topics import Topics

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

PARSER_DIR = Path(__file__).parent / "asyncapi_parser"


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed (scripts/install-test-tools.sh installs them)"
    stamp = PARSER_DIR / "node_modules" / ".lock.sha256"
    digest = hashlib.sha256((PARSER_DIR / "package-lock.json").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=PARSER_DIR, check=True,
                       capture_output=True, timeout=600)
        stamp.write_text(digest)
    result = subprocess.run(
        [node, str(PARSER_DIR / "parse.mjs"), str(CONTRACT_DIR / ASYNCAPI_FILE)],
        capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(result.stdout)


def test_the_official_parser_finds_no_error(parsed: dict[str, Any]) -> None:
    errors = [d for d in parsed["diagnostics"] if d["severity"] in ("error", "warning")]
    assert errors == []
    assert parsed["version"] == "3.0.0"


def test_every_topic_of_the_code_is_a_channel_with_its_events(parsed: dict[str, Any]) -> None:
    topics = Topics()
    expected_addresses = {
        *topics.raw_all, topics.normalized, topics.enriched, topics.unrouted, topics.dead_letter,
        topics.reference_competence,
        topics.unit("pn-x").replace("pn-x", "{unitId}"),  # one channel for every unit queue
        topics.actions("pn-x").replace("pn-x", "{unitId}"),  # and for every unit's actions
    }
    assert {channel["address"] for channel in parsed["channels"].values()} == expected_addresses
    for topic in TOPICS:
        names = {m["name"] for m in parsed["channels"][topic.channel_id]["messages"].values()}
        assert names == {event_type.ce_type for event_type in topic.event_types}
    documented = {event_type.ce_type for topic in TOPICS for event_type in topic.event_types}
    assert documented == set(EVENT_TYPES)  # no event type of the code is left out
    assert parsed["channels"][DEAD_LETTER_TOPIC.channel_id]["messages"]["deadLetter"]["headers"]["properties"][
        "ce_dlqreason"
    ]
    assert parsed["channels"]["rawMoncommissariat"]["address"] == topics.raw(Channel.MONCOMMISSARIAT)


def test_each_message_payload_is_exactly_its_model_schema(parsed: dict[str, Any]) -> None:
    for topic in TOPICS:
        messages = parsed["channels"][topic.channel_id]["messages"]
        for event_type in topic.event_types:
            message = messages[message_id(event_type)]
            expected = inline_refs(as_asyncapi_schema(event_type.model.model_json_schema(mode="validation")))
            assert without_parser_marks(message["payload"]) == expected, event_type.name
            headers = message["headers"]["properties"]
            assert headers["ce_type"]["const"] == event_type.ce_type
            assert headers["ce_dataschema"]["const"] == event_type.dataschema
            assert message["key"]["type"] == "string"


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
        return {key: resolve(value) for key, value in node.items()}

    return resolve(schema)


def without_parser_marks(node: Any) -> Any:
    if isinstance(node, list):
        return [without_parser_marks(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: without_parser_marks(value) for key, value in node.items() if not key.startswith("x-parser-")}
