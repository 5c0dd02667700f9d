"""The thin path through every stage, on the real broker, with every service as a real process.

intake (HTTP) → reports.raw.<channel> → Faust worker (normalize, enrich, route) → unit.<unit_id> → unit consumer
→ the unit's SQLite store; and the side paths: reports.dlq and reports.unrouted.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from pipeline_probe import (
    PipelineFactory,
    RunningPipeline,
    metric,
    query_store,
    read_topic,
    scrape,
    wait_for,
)
from sample_submissions import conversation_delivery_network, portal_dealing_point

from schemas.channels import Channel, Force
from schemas.envelope import decode, read_attributes
from schemas.events import CaseLinked, CaseOpened, CaseUpdated
from schemas.reports import Reporter, ReporterContact, report_id_for
from schemas.topics import Topics
from signalements.kafka_clients import new_producer
from signalements.kafka_security import Role
from signalements.reporter_sealing import ContactOpener

UNITS = ["pn-75-pp", "pn-93-pp", "gn-74-chamonix-mont-blanc", "cross-75", "cross-93", "cross-74"]


@pytest.fixture(scope="module")
def pipeline(pipeline_factory: PipelineFactory) -> RunningPipeline:
    return pipeline_factory(UNITS, dedup_update_throttle_s=1.0)


def stored_report(pipeline: RunningPipeline, unit_id: str, report_id: str) -> list[tuple[object, ...]]:
    return query_store(
        pipeline.settings, unit_id,
        "SELECT c.case_id, c.kind, c.commune_code, c.report_count, r.report FROM cases c"
        " JOIN case_reports r ON r.case_id = c.case_id WHERE r.report_id = ?",
        report_id,
    )


def elsewhere(body: dict, n: int) -> dict:
    """The sample report moved to another dealing point of the commune (tests share one pipeline and its cases)."""
    place = body["report"]["place"]
    place["housenumber"] = str(100 + n)
    place["latitude"] = round(place["latitude"] + 0.003 * n, 6)
    place["label"] = f"{100 + n} Rue Oberkampf"
    return body


def test_portal_report_reaches_the_competent_unit_store(pipeline: RunningPipeline) -> None:
    body = portal_dealing_point()
    response = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers, json=body, timeout=15)

    assert response.status_code == 202, response.text
    report_id = response.json()["report_id"]
    assert report_id == report_id_for(Channel.MONCOMMISSARIAT, body["submission_id"])
    rows = wait_for(lambda: stored_report(pipeline, "pn-75-pp", report_id), what="the case in pn-75-pp's store")
    case_id, kind, commune_code, report_count, report_json = rows[0]
    assert (kind, commune_code, report_count) == ("dealing_point", "75111", 1)
    enriched = json.loads(str(report_json))
    assert enriched["jurisdiction"]["method"] == "code_insee"
    assert enriched["jurisdiction"]["force"] == "PN"
    assert enriched["report"]["place"]["street_address"] == "12 rue oberkampf"
    # The consenting reporter's contact is stored sealed for each force; the police unit's key opens it.
    assert "citoyen@example.org" not in str(report_json).lower()
    reporter = Reporter.model_validate(enriched["report"]["reporter"])
    assert {sealed.force for sealed in reporter.sealed} == {Force.POLICE, Force.GENDARMERIE}
    police = ContactOpener.load(pipeline.settings.reporter_keys_path, Force.POLICE)
    assert police.open(reporter) == ReporterContact(email="citoyen@example.org")
    private_key = next(pipeline.settings.reporter_keys_path.glob("PN.*.private"))
    gendarmerie_only = ContactOpener(Force.POLICE, {}).open(reporter)  # without the police private key: nothing
    assert gendarmerie_only is None and private_key.stat().st_mode & 0o077 == 0

    # On the unit's queue: a CloudEvent (binary mode) keyed by its case id.
    unit_records = read_topic(pipeline.settings, Topics(pipeline.settings.topic_namespace).unit("pn-75-pp"))
    mine = [r for r in unit_records if r.key == str(case_id).encode()]
    assert len(mine) == 1
    attributes = read_attributes(mine[0].headers)
    assert attributes["ce_specversion"] == "1.0"
    assert attributes["ce_type"] == "fr.interieur.signalements.case.opened"
    assert attributes["ce_dataschema"] == "urn:signalements:schema:case.opened:3"
    event = decode(mine[0].headers, mine[0].key, mine[0].value)
    assert isinstance(event.payload, CaseOpened)
    assert event.payload.unit_id == "pn-75-pp"


def test_brigade_numerique_report_resolves_by_postcode_and_name(pipeline: RunningPipeline) -> None:
    body = conversation_delivery_network(commune="chamonix-mont-blanc", postcode="74400")
    response = httpx.post(f"{pipeline.intake_url}/v1/reports/brigade-numerique", headers=pipeline.intake_headers, json=body, timeout=15)

    assert response.status_code == 202, response.text
    report_id = response.json()["report_id"]
    rows = wait_for(lambda: stored_report(pipeline, "gn-74-chamonix-mont-blanc", report_id), what="the case in the brigade's store")
    enriched = json.loads(str(rows[0][4]))
    assert rows[0][1:3] == ("delivery_network", "74056")
    assert enriched["jurisdiction"]["method"] == "postcode_name"
    assert enriched["jurisdiction"]["force"] == "GN"
    assert enriched["jurisdiction"]["cross_unit_id"] == "cross-74"
    # The département's CROSS gets the report in its own queue, beside the brigade's.
    cross_rows = wait_for(lambda: stored_report(pipeline, "cross-74", report_id), what="the case in the CROSS store")
    assert cross_rows[0][1:3] == ("delivery_network", "74056")
    assert enriched["report"]["delivery"] == {
        "phone_e164": "+33612345678", "handle": "livreurdusoir", "platform": "snapchat",
    }


def test_brigade_numerique_report_with_only_a_gps_position_routes_by_the_shipped_boundaries(
    pipeline: RunningPipeline,
) -> None:
    """No commune, no postcode: the position alone, inside Chamonix-Mont-Blanc's real polygon (out of the box)."""
    local = datetime.now(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")
    body = {
        "conversation_id": f"bn-gps-{uuid.uuid4().hex[:12]}", "started_at": local, "reported_at": local,
        "report": {"kind": "dealing_point", "activity": "street_sales",
                   "place": {"description": "derrière la gare", "gps": "45.9237, 6.8694"}},
    }
    response = httpx.post(f"{pipeline.intake_url}/v1/reports/brigade-numerique", headers=pipeline.intake_headers, json=body, timeout=15)

    assert response.status_code == 202, response.text
    report_id = response.json()["report_id"]
    rows = wait_for(lambda: stored_report(pipeline, "gn-74-chamonix-mont-blanc", report_id), what="the case in the brigade's store")
    enriched = json.loads(str(rows[0][4]))
    assert rows[0][1:3] == ("dealing_point", "74056")
    assert enriched["jurisdiction"]["method"] == "coordinates"
    assert enriched["jurisdiction"]["unit_id"] == "gn-74-chamonix-mont-blanc"


def test_same_submission_twice_is_stored_once(pipeline: RunningPipeline) -> None:
    body = elsewhere(portal_dealing_point(), 1)
    first = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers, json=body, timeout=15)
    second = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers, json=body, timeout=15)
    assert (first.status_code, second.status_code) == (202, 200)  # the intake writes it once
    report_id = first.json()["report_id"]
    assert second.json() == {"report_id": report_id, "status": "duplicate"}
    # A second copy can still reach the raw topic (two intake instances racing, an integrated system re-sending
    # directly): everything downstream must apply it once.
    topics = Topics(pipeline.settings.topic_namespace)
    raw_records = read_topic(pipeline.settings, topics.raw(Channel.MONCOMMISSARIAT))
    [raw] = [r for r in raw_records if r.key == body["submission_id"].encode()]
    producer = new_producer(pipeline.settings, Role.ADMIN, "tests", acks="all")
    producer.send(raw.topic, key=raw.key, value=raw.value, headers=list(raw.headers)).get(timeout=30)
    producer.close()

    wait_for(lambda: stored_report(pipeline, "pn-75-pp", report_id), what="the case")
    # Both raw records went through every stage; the unit queue holds the same event id twice at most,
    # and the store applies it once.
    wait_for(
        lambda: len([r for r in read_topic(pipeline.settings, topics.enriched) if report_id.encode() in (r.value or b"")])
        == 2,
        what="both copies normalized and enriched",
    )
    wait_for(
        lambda: query_store(
            pipeline.settings, "pn-75-pp",
            "SELECT COUNT(*) FROM applied_events e JOIN case_reports r ON r.case_id = e.case_id WHERE r.report_id = ?",
            report_id,
        ) == [(1,)],
        what="exactly one applied event",
    )
    assert len(stored_report(pipeline, "pn-75-pp", report_id)) == 1


def test_unparseable_record_goes_to_dead_letter_with_original_bytes(pipeline: RunningPipeline) -> None:
    topics = Topics(pipeline.settings.topic_namespace)
    garbage = b"\xff\xfenot json at all"
    producer = new_producer(pipeline.settings, Role.ADMIN, "tests", acks="all")
    producer.send(
        topics.raw(Channel.MONCOMMISSARIAT), key=b"bad-1", value=garbage,
        headers=[("ce_type", b"fr.interieur.signalements.submission.moncommissariat"), ("ce_id", b"x"),
                 ("ce_source", b"/test"), ("ce_specversion", b"1.0")],
    ).get(timeout=10)
    no_envelope = b'{"submission_id": "no-headers"}'
    producer.send(topics.raw(Channel.BRIGADE_NUMERIQUE), key=b"bad-2", value=no_envelope).get(timeout=10)
    producer.close()

    def dead_letters() -> dict[bytes, object]:
        return {r.key: r for r in read_topic(pipeline.settings, topics.dead_letter) if r.key in (b"bad-1", b"bad-2")}

    letters = wait_for(lambda: (found := dead_letters()) and len(found) == 2 and found, what="two dead letters")
    invalid, unenveloped = letters[b"bad-1"], letters[b"bad-2"]
    assert invalid.value == garbage
    assert unenveloped.value == no_envelope
    first, second = read_attributes(invalid.headers), read_attributes(unenveloped.headers)
    assert first["ce_type"] == "fr.interieur.signalements.deadletter"
    assert first["ce_dlqreasoncode"] == "invalid_payload"
    assert first["ce_dlqstage"] == "normalize"
    assert first["ce_dlqtopic"] == topics.raw(Channel.MONCOMMISSARIAT)
    assert first["original-ce_id"] == "x"
    assert second["ce_dlqreasoncode"] == "invalid_envelope"
    assert "ce_type" in second["ce_dlqreason"]


@pytest.mark.parametrize(
    ("broken", "reason_says"),
    [
        ({"ce_specversion": b"0.3"}, "ce_specversion '0.3' is not '1.0'"),
        ({"ce_specversion": None}, "ce_specversion"),
        ({"ce_id": b""}, "ce_id"),
        ({"ce_source": None}, "ce_source"),
        ({"ce_time": b"yesterday"}, "ce_time"),
    ],
    ids=["specversion-0.3", "no-specversion", "empty-id", "no-source", "bad-time"],
)
def test_a_valid_report_in_a_broken_envelope_is_dead_lettered_never_routed(
    pipeline: RunningPipeline, broken: dict[str, bytes | None], reason_says: str
) -> None:
    topics = Topics(pipeline.settings.topic_namespace)
    body = elsewhere(portal_dealing_point(), 40 + len(reason_says))
    good = {"ce_specversion": b"1.0", "ce_id": b"broken-envelope", "ce_source": b"/test",
            "ce_type": b"fr.interieur.signalements.submission.moncommissariat",
            "ce_time": datetime.now(UTC).isoformat().encode()}
    headers = [(name, value) for name, value in {**good, **broken}.items() if value is not None]
    key = body["submission_id"].encode()
    producer = new_producer(pipeline.settings, Role.ADMIN, "tests", acks="all")
    producer.send(topics.raw(Channel.MONCOMMISSARIAT), key=key, value=json.dumps(body).encode(),
                  headers=headers).get(timeout=10)
    producer.close()

    letters = wait_for(lambda: [r for r in read_topic(pipeline.settings, topics.dead_letter) if r.key == key],
                       what="the dead letter")
    attributes = read_attributes(letters[0].headers)
    assert attributes["ce_dlqreasoncode"] == "invalid_envelope"
    assert reason_says in attributes["ce_dlqreason"]
    report_id = report_id_for(Channel.MONCOMMISSARIAT, body["submission_id"])
    passed_on = [r for topic in (topics.normalized, topics.enriched) for r in read_topic(pipeline.settings, topic)
                 if report_id.encode() in (r.value or b"")]
    assert passed_on == []  # never passed on, so never routed


def test_a_body_that_is_not_json_is_400_and_counted_unreadable(pipeline: RunningPipeline) -> None:
    before = metric(scrape(f"{pipeline.intake_url}/metrics"), "signalements_stage_records_failed_total",
                    stage="intake", reason="unreadable")
    response = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", content=b'{"submission_id": ',
                          headers={**pipeline.intake_headers, "content-type": "application/json"}, timeout=15)
    assert response.status_code == 400
    assert "not readable JSON" in response.json()["detail"]
    after = metric(scrape(f"{pipeline.intake_url}/metrics"), "signalements_stage_records_failed_total",
                   stage="intake", reason="unreadable")
    assert after == before + 1


def test_report_without_a_competent_unit_goes_to_unrouted(pipeline: RunningPipeline) -> None:
    # 99999 is no code INSEE, and no commune of 74400 is called Lyon: nothing to route to.
    body = portal_dealing_point(citycode="99999", postcode="74400", city="Lyon")
    del body["report"]["place"]["latitude"], body["report"]["place"]["longitude"]
    response = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers, json=body, timeout=15)
    assert response.status_code == 202
    report_id = response.json()["report_id"]
    topic = Topics(pipeline.settings.topic_namespace).unrouted

    records = wait_for(
        lambda: [r for r in read_topic(pipeline.settings, topic) if r.key == report_id.encode()],
        what="the unrouted report",
    )
    unrouted = json.loads(records[0].value)
    assert unrouted["reason"] == "unknown_commune"
    assert unrouted["report"]["report_id"] == report_id


def test_every_service_counts_its_stage(pipeline: RunningPipeline) -> None:
    body = elsewhere(portal_dealing_point(), 2)
    response = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers, json=body, timeout=15)
    wait_for(lambda: stored_report(pipeline, "pn-75-pp", response.json()["report_id"]), what="the case")

    intake = scrape(f"{pipeline.intake_url}/metrics")
    worker = scrape(pipeline.worker_metrics_url)
    consumer = scrape(pipeline.consumer_metrics_url)
    accepted = metric(intake, "signalements_stage_records_out_total", stage="intake", outcome="accepted")
    assert accepted >= 1
    for stage, outcome in (("normalize", "normalized"), ("route", "case_opened")):
        assert metric(worker, "signalements_stage_records_out_total", stage=stage, outcome=outcome) >= 1
    assert metric(worker, "signalements_routing_latency_seconds_count", channel="moncommissariat") >= 1
    assert metric(consumer, "signalements_stage_records_out_total", stage="consume", outcome="stored") >= 1
    assert metric(consumer, "signalements_end_to_end_latency_seconds_count", channel="moncommissariat") >= 1
    assert metric(intake, "signalements_build_info", schema_version="1") == 1
    assert metric(worker, "signalements_dedup_outcomes_total", outcome="opened") >= 1
    assert metric(worker, "signalements_cases_opened_total", force="PN") >= 1

    # The consumers publish their open cases by force and département (the dashboards' ranking), CROSS copies aside.
    def open_cases_agree() -> bool:
        in_store = query_store(pipeline.settings, "pn-75-pp", "SELECT COUNT(*) FROM cases WHERE status = 'open'")
        published = metric(scrape(pipeline.consumer_metrics_url), "signalements_open_cases", force="PN", departement="75")
        return bool(in_store) and in_store[0][0] == published > 0

    wait_for(open_cases_agree, timeout_s=30, what="the open-cases gauge to match pn-75-pp's store")


def test_two_citizens_reporting_one_point_make_one_case_then_an_update(pipeline: RunningPipeline) -> None:
    first, second = elsewhere(portal_dealing_point(), 3), elsewhere(portal_dealing_point(), 3)
    # the second citizen writes the address their own way, from a position 40 m away
    second["report"]["place"].update(street="r. Oberkampf", latitude=first["report"]["place"]["latitude"] + 0.00036)
    second["reporter"] = {"email": "voisin@example.org", "consent_to_recontact": True}
    ids = []
    for body in (first, second):
        response = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers, json=body, timeout=15)
        assert response.status_code == 202, response.text
        ids.append(response.json()["report_id"])
    unit_topic = Topics(pipeline.settings.topic_namespace).unit("pn-75-pp")

    def case_events() -> list[tuple[str, object]]:
        decoded = [decode(r.headers, r.key, r.value) for r in read_topic(pipeline.settings, unit_topic)]
        opened = [e for e in decoded if isinstance(e.payload, CaseOpened) and e.payload.report.report.report_id == ids[0]]
        if not opened:
            return []
        case_id = opened[0].payload.case_id
        return [(e.event_type.name, e.payload) for e in decoded if e.payload.case_id == case_id]

    events = wait_for(lambda: (found := case_events()) and len(found) >= 2 and found, what="the case and its update")
    assert [name for name, _ in events] == ["case.opened", "case.updated"]
    update = events[1][1]
    assert isinstance(update, CaseUpdated)
    assert (update.case_version, update.report_count) == (2, 2)
    assert [r.report.report_id for r in update.new_reports] == [ids[1]]
    assert not any(
        isinstance(e.payload, CaseOpened) and e.payload.report.report.report_id == ids[1]
        for e in (decode(r.headers, r.key, r.value) for r in read_topic(pipeline.settings, unit_topic))
    )


def test_a_point_on_the_boundary_between_two_units_is_one_case_and_the_other_unit_is_told(
    pipeline: RunningPipeline,
) -> None:
    """Rue de Bagnolet where Paris 20e (pn-75-pp) meets Bagnolet (pn-93-pp): two citizens 55 m apart, one on each
    side of the boundary. One case, Paris's (the first report's unit), with both reports; Bagnolet's unit gets a
    case.linked on its queue and in its store, and never a case of its own for that point."""
    paris = portal_dealing_point(citycode="75120", postcode="75020", city="Paris 20e Arrondissement")
    paris["report"]["place"].update(latitude=48.863895, longitude=2.414345, street="Rue de Bagnolet",
                                    housenumber="190", label="190 Rue de Bagnolet 75020 Paris")
    bagnolet = portal_dealing_point(citycode="93006", postcode="93170", city="Bagnolet")
    bagnolet["report"]["place"].update(latitude=48.864395, longitude=2.414345, street="Rue Sadi Carnot",
                                       housenumber="2", label="2 Rue Sadi Carnot 93170 Bagnolet")
    bagnolet["reporter"] = {"email": "riverain@example.org", "consent_to_recontact": True}
    ids = []
    for body in (paris, bagnolet):
        response = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers,
                              json=body, timeout=15)
        assert response.status_code == 202, response.text
        ids.append(response.json()["report_id"])
    topics = Topics(pipeline.settings.topic_namespace)

    def events_on(unit_id: str) -> list:
        return [decode(r.headers, r.key, r.value) for r in read_topic(pipeline.settings, topics.unit(unit_id))]

    def owner_case() -> CaseUpdated | None:
        return next((e.payload for e in events_on("pn-75-pp") if isinstance(e.payload, CaseUpdated)
                     and [r.report.report_id for r in e.payload.new_reports] == [ids[1]]), None)

    update = wait_for(owner_case, timeout_s=60, what="the Bagnolet report in Paris's case")
    assert update.unit_id == "pn-75-pp" and update.report_count == 2
    assert update.new_reports[0].jurisdiction.unit_id == "pn-93-pp"

    def linked_on(unit_id: str) -> CaseLinked | None:
        return next((e.payload for e in events_on(unit_id) if isinstance(e.payload, CaseLinked)
                     and e.payload.report.report.report_id == ids[1]), None)

    link = wait_for(lambda: linked_on("pn-93-pp"), timeout_s=30, what="case.linked on Bagnolet's unit queue")
    assert (link.case_id, link.owner_unit_id, link.report_count) == (update.case_id, "pn-75-pp", 2)
    # Seine-Saint-Denis's CROSS is told too (Paris's CROSS has the case itself)
    assert wait_for(lambda: linked_on("cross-93"), timeout_s=30, what="case.linked for cross-93").case_id == link.case_id
    assert not [e for e in events_on("pn-93-pp")
                if isinstance(e.payload, CaseOpened) and e.payload.report.report.report_id == ids[1]]
    stored = wait_for(lambda: query_store(
        pipeline.settings, "pn-93-pp",
        "SELECT case_id, owner_unit_id, report_count FROM linked_reports WHERE report_id = ?", ids[1]),
        timeout_s=30, what="the link in Bagnolet's unit store")
    assert stored == [(link.case_id, "pn-75-pp", 2)]
    assert stored_report(pipeline, "pn-75-pp", ids[1])[0][0] == link.case_id


def test_invalid_submission_is_refused_with_the_field_and_the_reason(pipeline: RunningPipeline) -> None:
    body = portal_dealing_point()
    body["report"]["place"]["citycode"] = "7511"
    phone_body = conversation_delivery_network()
    phone_body["report"]["contact"]["phone"] = "06 12"

    bad_code = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", headers=pipeline.intake_headers, json=body, timeout=15)
    bad_phone = httpx.post(f"{pipeline.intake_url}/v1/reports/brigade-numerique", headers=pipeline.intake_headers, json=phone_body, timeout=15)
    too_big = httpx.post(
        f"{pipeline.intake_url}/v1/reports/moncommissariat",
        content=b"{" + b" " * (pipeline.settings.intake_max_body_bytes + 1) + b"}",
        headers={**pipeline.intake_headers, "content-type": "application/json"}, timeout=15,
    )

    assert bad_code.status_code == 422
    assert bad_code.json()["detail"][0]["loc"] == ["body", "report", "dealing_point", "place", "citycode"]
    assert bad_phone.status_code == 422
    assert bad_phone.json()["detail"][0]["loc"] == ["body", "report", "contact", "phone"]
    assert too_big.status_code == 413

