"""The worker's stages alone (streams/stages.py): records in, records out or the reason they cannot be processed,
without Faust and without a broker. The pipeline tests run the same stages on the real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from faust.types import TP
from pydantic import SecretStr
from sample_submissions import DELIVERY_SEAL, SEALER, conversation_delivery_network, portal_dealing_point

from schemas.channels import Channel
from schemas.envelope import (
    CASE_OPENED,
    MONCOMMISSARIAT_SUBMISSION,
    REPORT_ENRICHED,
    REPORT_NORMALIZED,
    REPORT_UNROUTED,
    EventType,
    decode,
    encode,
    event_id_for,
)
from schemas.events import CaseOpened
from schemas.reasons import ReasonCode
from schemas.reports import EnrichedReport, report_id_for
from schemas.submission_channels import SUBMISSION_CHANNELS
from schemas.topics import Topics
from signalements.settings import Settings
from streams.dedup_area import area_of_position
from streams.deliveries import Outgoing
from streams.jurisdiction import JurisdictionReference
from streams.stages import Enrich, InputRecord, Normalize, Route, StageFailure, StageOutput, case_event_records
from streams.worker_cipher import DeliverySeal

TOPICS = Topics("t.")


def record_of(topic: str, event_type: EventType, payload: object, *, key: str = "k", event_id: str = "e-1",
              headers: list[tuple[str, bytes]] | None = None, value: bytes | None = None) -> InputRecord:
    model = event_type.model.model_validate(payload) if isinstance(payload, dict) else payload
    message = encode(event_type, model, event_id=event_id, source="/tests", key=key)  # type: ignore[arg-type]
    return InputRecord(topic=topic, partition=0, offset=7, timestamp=1.7e9, key=key.encode(),
                       value=message.value if value is None else value,
                       headers=list(message.headers.items()) if headers is None else headers, tp=TP(topic, 0))


def run(step: object) -> StageOutput:
    return asyncio.run(step)  # type: ignore[arg-type]


def only(output: StageOutput) -> Outgoing:
    assert len(output.records) == 1
    return output.records[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> JurisdictionReference:
    settings = Settings(state_dir=Path(tmp_path_factory.mktemp("state")))
    return JurisdictionReference.from_settings(settings)


def normalized_record(channel: Channel, body: dict) -> InputRecord:
    spec = SUBMISSION_CHANNELS[channel]
    output = run(Normalize(TOPICS, SEALER.protect, DELIVERY_SEAL)(record_of(spec.raw_topic(TOPICS), spec.event_type, body)))
    written = only(output)
    return InputRecord(topic=written.topic, partition=0, offset=8, timestamp=1.7e9, key=written.key,
                       value=written.value, headers=written.headers, tp=TP(written.topic, 0))


@pytest.mark.parametrize("channel, body", [
    (Channel.MONCOMMISSARIAT, portal_dealing_point()),
    (Channel.BRIGADE_NUMERIQUE, conversation_delivery_network()),
])
def test_normalize_writes_the_canonical_report_keyed_and_identified_by_its_report_id(channel: Channel, body: dict) -> None:
    spec = SUBMISSION_CHANNELS[channel]
    normalize = Normalize(TOPICS, SEALER.protect, DELIVERY_SEAL)
    record = record_of(spec.raw_topic(TOPICS), spec.event_type, body)
    assert normalize.channel_of(record) == channel.value
    output = run(normalize(record))
    written = only(output)
    report_id = report_id_for(channel, str(body[spec.id_field]))
    assert output.outcome == "normalized" and written.topic == TOPICS.normalized
    assert written.key == report_id.encode()
    event = decode(written.headers, written.key, written.value)
    assert event.event_type == REPORT_NORMALIZED and event.payload.report_id == report_id
    assert dict(written.headers)["ce_id"].decode() == event_id_for(report_id, REPORT_NORMALIZED)


def test_normalize_refuses_a_record_with_the_reason_a_dead_letter_carries() -> None:
    normalize = Normalize(TOPICS, SEALER.protect, DELIVERY_SEAL)
    topic = TOPICS.raw(Channel.MONCOMMISSARIAT)
    good = record_of(topic, MONCOMMISSARIAT_SUBMISSION, portal_dealing_point())
    cases = {
        ReasonCode.INVALID_ENVELOPE: good.headers[:1],  # the CloudEvents attributes are gone
        ReasonCode.INVALID_PAYLOAD: None,
        ReasonCode.UNEXPECTED_EVENT_TYPE: None,
    }
    for code, headers in cases.items():
        if code is ReasonCode.INVALID_PAYLOAD:
            record = InputRecord(**{**good.__dict__, "value": json.dumps({"submission_id": ""}).encode()})
        elif code is ReasonCode.UNEXPECTED_EVENT_TYPE:
            record = record_of(topic, SUBMISSION_CHANNELS[Channel.BRIGADE_NUMERIQUE].event_type,
                               conversation_delivery_network())
        else:
            record = InputRecord(**{**good.__dict__, "headers": headers})
        with pytest.raises(StageFailure) as failure:
            run(normalize(record))
        assert failure.value.code is code, failure.value


def test_enrich_keys_a_report_by_its_deduplication_area_and_sends_one_without_a_unit_to_unrouted(
    reference: JurisdictionReference,
) -> None:
    unrouted: list[str] = []

    async def ready() -> None:
        return None

    enrich = Enrich(TOPICS, reference, ready, on_unrouted=unrouted.append)
    output = run(enrich(normalized_record(Channel.MONCOMMISSARIAT, portal_dealing_point())))
    written = only(output)
    event = decode(written.headers, written.key, written.value)
    assert output.outcome == "enriched" and written.topic == TOPICS.enriched
    assert event.event_type == REPORT_ENRICHED
    assert written.key == area_of_position(48.8649, 2.3700).encode() and event.payload.jurisdiction.departement == "75"
    assert not unrouted

    nowhere = portal_dealing_point(citycode="99999", postcode="99999", city="Nulle Part")
    nowhere["report"]["place"].pop("latitude")
    nowhere["report"]["place"].pop("longitude")
    output = run(enrich(normalized_record(Channel.MONCOMMISSARIAT, nowhere)))
    written = only(output)
    assert output.outcome == "unrouted" and written.topic == TOPICS.unrouted
    assert decode(written.headers, written.key, written.value).event_type == REPORT_UNROUTED
    assert len(unrouted) == 1


def test_enrich_flags_and_counts_a_position_far_outside_the_commune_its_code_gives(
    reference: JurisdictionReference,
) -> None:
    flagged: list[str] = []

    async def ready() -> None:
        return None

    enrich = Enrich(TOPICS, reference, ready, on_unrouted=lambda reason: None, on_position_outside=flagged.append)
    body = portal_dealing_point()  # an address of Paris 11e, by its code
    body["report"]["place"].update(latitude=45.9237, longitude=6.8694)  # a pin dropped in Chamonix
    written = only(run(enrich(normalized_record(Channel.MONCOMMISSARIAT, body))))
    jurisdiction = decode(written.headers, written.key, written.value).payload.jurisdiction
    assert jurisdiction.commune_code == "75111" and jurisdiction.position_outside_commune_m > 400_000
    assert flagged == ["moncommissariat"]


def test_route_hands_the_enriched_report_to_the_case_router(reference: JurisdictionReference) -> None:
    seen: list[tuple[int, str]] = []

    class Router:
        async def route_report(self, record: InputRecord, report: EnrichedReport) -> str:
            seen.append((record.offset, report.report.report_id))
            return "case_opened"

    async def ready() -> None:
        return None

    enriched = only(run(Enrich(TOPICS, reference, ready, on_unrouted=print)(
        normalized_record(Channel.MONCOMMISSARIAT, portal_dealing_point()))))
    record = InputRecord(topic=enriched.topic, partition=0, offset=9, timestamp=1.7e9, key=enriched.key,
                         value=enriched.value, headers=enriched.headers, tp=TP(enriched.topic, 0))
    output = run(Route(Router(), DELIVERY_SEAL)(record))
    assert output.outcome == "case_opened" and not output.records
    assert seen and seen[0][0] == 9


def test_a_delivery_networks_identifiers_travel_sealed_between_the_stages_and_reach_the_router_in_clear(
    reference: JurisdictionReference,
) -> None:
    seen: list[EnrichedReport] = []

    class Router:
        async def route_report(self, record: InputRecord, report: EnrichedReport) -> str:
            seen.append(report)
            return "case_opened"

    async def ready() -> None:
        return None

    normalized = normalized_record(Channel.BRIGADE_NUMERIQUE, conversation_delivery_network())
    enriched = only(run(Enrich(TOPICS, reference, ready, on_unrouted=print)(normalized)))
    for hop in (normalized, enriched):
        assert b"+33612345678" not in (hop.value or b"") and b"livreurdusoir" not in (hop.value or b"").lower()
        assert b'"sealed":' in (hop.value or b"")
    record = InputRecord(topic=enriched.topic, partition=0, offset=9, timestamp=1.7e9, key=enriched.key,
                         value=enriched.value, headers=enriched.headers, tp=TP(enriched.topic, 0))
    run(Route(Router(), DELIVERY_SEAL)(record))
    delivery = seen[0].report.delivery
    assert delivery is not None and delivery.sealed is None
    assert (delivery.phone_e164, delivery.handle, delivery.platform) == ("+33612345678", "livreurdusoir", "snapchat")
    assert '"sealed"' not in delivery.model_dump_json(), "a case event on a unit queue keeps the shape it had"

    # Altered on the topic, or sealed under another worker's key: dead-lettered, never believed.
    payload = json.loads(enriched.value or b"")
    sealed = payload["report"]["delivery"]["sealed"]
    payload["report"]["delivery"]["sealed"] = sealed[:-6] + ("AAAA==" if not sealed.endswith("AAAA==") else "BBBB==")
    for value in (json.dumps(payload).encode(), enriched.value):
        altered = InputRecord(**{**record.__dict__, "value": value})
        router = Route(Router(), DeliverySeal(b"another worker's identifier key!") if value == enriched.value
                       else DELIVERY_SEAL)
        with pytest.raises(StageFailure) as failure:
            run(router(altered))
        assert failure.value.code is ReasonCode.INVALID_PAYLOAD and "delivery.sealed" in failure.value.detail


def test_a_case_goes_to_its_unit_and_to_the_cross_of_its_departement_under_event_ids_of_their_own(
    reference: JurisdictionReference,
) -> None:
    async def ready() -> None:
        return None

    enriched_record = only(run(Enrich(TOPICS, reference, ready, on_unrouted=print)(
        normalized_record(Channel.MONCOMMISSARIAT, portal_dealing_point()))))
    enriched = decode(enriched_record.headers, enriched_record.key, enriched_record.value).payload
    case = CaseOpened(case_id="c-1", unit_id=enriched.jurisdiction.unit_id, opened_at=enriched.report.received_at,
                      first_seen=enriched.report.submitted_at, last_seen=enriched.report.submitted_at,
                      channels=[Channel.MONCOMMISSARIAT], report=enriched)
    unit_copy, cross_copy = case_event_records(TOPICS, CASE_OPENED, case)
    assert unit_copy.topic == TOPICS.unit(case.unit_id)
    assert cross_copy.topic == TOPICS.unit(enriched.jurisdiction.cross_unit_id)
    assert unit_copy.key == cross_copy.key == b"c-1"
    ids = {dict(copy.headers)["ce_id"] for copy in (unit_copy, cross_copy)}
    assert len(ids) == 2
    assert decode(cross_copy.headers, cross_copy.key, cross_copy.value).payload.unit_id == enriched.jurisdiction.cross_unit_id


def test_the_worker_creates_beforehand_exactly_the_changelog_topics_faust_uses(tmp_path: Path) -> None:
    """Created by Faust on a new cluster, they were read with no partitions and every table write failed."""
    from devkit.dev_pki import DevelopmentCA, ensure_development_secrets
    from signalements.metrics import PipelineMetrics
    from streams.app import create_app
    from streams.case_tables import changelog_topics

    settings = Settings(state_dir=tmp_path, topic_namespace="t.", worker_id="w", kafka_username="t.worker",
                        kafka_password=SecretStr("unused"),  # nothing connects: the app is only built
                        kafka_ssl_cafile=DevelopmentCA(tmp_path / "ca").ensure().certificate_file)
    ensure_development_secrets(settings)
    app = create_app(settings, PipelineMetrics(), JurisdictionReference.from_settings(settings))
    faust_names = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    assert faust_names == set(changelog_topics(settings)) == {"t.w-dedup-state-changelog"}


def test_case_events_of_the_previous_version_are_still_read_and_older_ones_refused() -> None:
    """Version 3 of the case events only widened the jurisdiction's method: a version 2 record already on a unit
    queue is read after the upgrade; version 1 (contacts in clear) stays refused."""
    from schemas.envelope import CASE_OPENED, REPORT_ENRICHED, UnsupportedSchema, decode

    assert CASE_OPENED.reads("urn:signalements:schema:case.opened:3")
    assert CASE_OPENED.reads("urn:signalements:schema:case.opened:2")
    assert not CASE_OPENED.reads("urn:signalements:schema:case.opened:1")
    assert REPORT_ENRICHED.reads("urn:signalements:schema:report.enriched:3")
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/test"),
               ("ce_type", CASE_OPENED.ce_type.encode()), ("ce_dataschema", b"urn:signalements:schema:case.opened:1")]
    with pytest.raises(UnsupportedSchema, match="case.opened:1"):
        decode(headers, b"k", b"{}")


class RecordedDeliveries:
    """What the stage runner hands Kafka, and for which input position (the offset it holds until acknowledged)."""

    def __init__(self) -> None:
        self.sent: list[tuple[InputRecord | None, Outgoing]] = []

    async def send(self, source: InputRecord | None, record: Outgoing, on_delivered: object = None) -> None:
        self.sent.append((source, record))


def test_normalize_hands_its_report_to_enrich_in_process_and_the_raw_offset_waits_for_the_enriched_record(
    reference: JurisdictionReference,
) -> None:
    from typing import cast

    from signalements.metrics import PipelineMetrics, Stage
    from streams.deliveries import Deliveries
    from streams.stage_runner import Handoff, StageRunner

    async def ready() -> None:
        return None

    metrics, deliveries = PipelineMetrics(), RecordedDeliveries()
    runner = StageRunner(TOPICS, metrics, cast(Deliveries, deliveries))
    normalize = Normalize(TOPICS, SEALER.protect, DELIVERY_SEAL)
    enrich = Enrich(TOPICS, reference, ready, on_unrouted=lambda reason: None)
    raw = record_of(TOPICS.raw(Channel.MONCOMMISSARIAT), MONCOMMISSARIAT_SUBMISSION, portal_dealing_point())
    asyncio.run(runner.run(normalize, raw, Handoff(TOPICS.normalized, enrich)))

    [(source, written)] = deliveries.sent
    assert written.topic == TOPICS.enriched, "nothing written to reports.normalized"
    assert source is not None and (source.tp, source.offset) == (raw.tp, raw.offset)
    assert decode(written.headers, written.key, written.value).event_type == REPORT_ENRICHED
    for stage, outcome in ((Stage.NORMALIZE, "normalized"), (Stage.ENRICH, "enriched")):
        labels = {"stage": stage.value, "channel": "moncommissariat", "outcome": outcome}
        assert metrics.registry.get_sample_value("signalements_stage_records_out_total", labels) == 1

    # The next stage failing: its dead letter keeps the handed-over bytes, addressed to reports.normalized (where a
    # redrive sends them, and the enrich agent reads them).
    class Refuses:
        stage = Stage.ENRICH
        channel_of = staticmethod(lambda record: "moncommissariat")

        async def __call__(self, record: InputRecord) -> StageOutput:
            raise StageFailure(ReasonCode.INVALID_PAYLOAD, "refused")

    deliveries.sent.clear()
    asyncio.run(runner.run(normalize, raw, Handoff(TOPICS.normalized, Refuses())))
    [(source, letter)] = deliveries.sent
    assert letter.topic == TOPICS.dead_letter and source is not None and source.offset == raw.offset
    headers = dict(letter.headers)
    report_id = report_id_for(Channel.MONCOMMISSARIAT, json.loads(raw.value or b"{}")["submission_id"])
    # the original bytes of the handed-over record: the canonical report (its seals drawn afresh on each run)
    assert json.loads(letter.value)["report_id"] == report_id and b'"jurisdiction"' not in letter.value
    assert headers["ce_dlqtopic"].decode() == TOPICS.normalized and headers["ce_dlqstage"] == b"enrich"
