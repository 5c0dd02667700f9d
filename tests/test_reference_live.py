"""The competence table on its compacted topic, held by the running Faust worker: a commune moving from gendarmerie
to police zone changes where its next report goes, without a restart. Real broker, real processes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from pipeline_probe import (
    RunningPipeline,
    make_settings,
    metric,
    query_store,
    read_topic,
    running_pipeline,
    scrape,
    wait_for,
)
from sample_submissions import portal_dealing_point

from ops.reference_topic import publish_competence, publish_reference_if_empty, published_record_count
from schemas.channels import Force
from schemas.envelope import decode
from schemas.reference import CompetenceRow
from schemas.topics import Topics
from signalements.kafka_clients import new_producer
from signalements.kafka_security import Role
from signalements.settings import Settings
from streams.jurisdiction import Competence, CompetenceTable

VIF = {"citycode": "38545", "postcode": "38450", "city": "Vif"}


def report_units(settings: Settings, report_id: str, unit_ids: list[str]) -> dict[str, str]:
    """unit id → the force recorded on the report's case, for the units whose store holds the report."""
    found = {}
    for unit_id in unit_ids:
        rows = query_store(settings, unit_id, "SELECT report FROM case_reports WHERE report_id = ?", report_id)
        if rows:
            found[unit_id] = json.loads(str(rows[0][0]))["jurisdiction"]["force"]
    return found


def reference_updates(pipeline: RunningPipeline, outcome: str) -> float:
    """The worker's count of reference rows by outcome; 0 while its metrics endpoint is not up yet."""
    try:
        samples = scrape(pipeline.worker_metrics_url)
    except httpx.HTTPError:
        return 0.0
    return metric(samples, "signalements_reference_updates_total", outcome=outcome)


def post_vif_report(pipeline: RunningPipeline) -> str:
    body = portal_dealing_point(**VIF)
    del body["report"]["place"]["latitude"], body["report"]["place"]["longitude"]
    response = httpx.post(f"{pipeline.intake_url}/v1/reports/moncommissariat", json=body, timeout=15,
                          headers=pipeline.intake_headers)
    assert response.status_code == 202, response.text
    return str(response.json()["report_id"])


def test_a_commune_changing_unit_takes_effect_in_the_running_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = make_settings(kafka_bootstrap, tmp_path)
    table = CompetenceTable.load(settings.reference_dir)
    # A new cluster: the whole table is published once, then left alone.
    assert publish_reference_if_empty(settings, table.rows.values()) == len(table.rows)
    assert publish_reference_if_empty(settings, table.rows.values()) == 0
    assert published_record_count(settings) == len(table.rows)
    units = ["gn-38-vif", "pn-38-grenoble"]

    with running_pipeline(settings, units) as pipeline:
        # The worker reads the whole topic into its table at start-up: every row matches its files.
        wait_for(
            lambda: reference_updates(pipeline, "unchanged") >= len(table.rows),
            timeout_s=120, what="the worker holding the whole reference topic",
        )
        before = post_vif_report(pipeline)
        assert wait_for(lambda: report_units(settings, before, units), what="Vif's report") == {"gn-38-vif": "GN"}

        moved = Competence("38545", "Vif", Force.POLICE, "38-grenoble", "Commissariat de police de Grenoble",
                           ("38450",))
        publish_competence(settings, [moved])
        wait_for(
            lambda: reference_updates(pipeline, "applied") >= 1,
            what="the worker applying the change",
        )
        after = post_vif_report(pipeline)
        assert wait_for(lambda: report_units(settings, after, units), what="Vif's next report") == {
            "pn-38-grenoble": "PN"
        }
        assert report_units(settings, before, units) == {"gn-38-vif": "GN"}, "a routed report stays where it went"
        versions = [
            json.loads(str(query_store(settings, unit, "SELECT report FROM case_reports WHERE report_id = ?", rid)[0][0]))
            ["jurisdiction"]["reference_version"]
            for unit, rid in (("gn-38-vif", before), ("pn-38-grenoble", after))
        ]
        # The report routed after the change names the live change in its reference version.
        assert "+live-" not in versions[0] and versions[1].startswith(versions[0] + "+live-"), versions

    # The topic is compacted and its records are CloudEvents of the official row.
    topic = Topics(settings.topic_namespace).reference_competence
    records = [r for r in read_topic(settings, topic, timeout_s=30) if r.key == b"38545"]
    latest = decode(records[-1].headers, records[-1].key, records[-1].value).payload
    assert isinstance(latest, CompetenceRow) and (latest.institution, latest.id_service) == ("PN", "38-grenoble")


def test_an_invalid_row_on_the_reference_topic_is_refused_and_counted(kafka_bootstrap: str, tmp_path: Path) -> None:

    settings = make_settings(kafka_bootstrap, tmp_path)
    # No wait for the worker: the row may arrive while it starts, which must not stop its streams either.
    with running_pipeline(settings, ["gn-38-vif"]) as pipeline:
        producer = new_producer(settings, Role.ADMIN, "tests", acks="all")
        bad = {"code_commune": "38545", "libelle_commune": "Vif", "institution": "XX", "id_service": "38-vif",
               "service": "Brigade", "code_postal": "38450", "codes_postaux": "38450"}
        producer.send(Topics(settings.topic_namespace).reference_competence, key=b"38545",
                      value=json.dumps(bad).encode()).get(timeout=10)
        producer.close()
        wait_for(
            lambda: reference_updates(pipeline, "invalid") >= 1,
            what="the invalid row counted",
        )
        report_id = post_vif_report(pipeline)
        assert wait_for(lambda: report_units(settings, report_id, ["gn-38-vif"]), what="the report") == {
            "gn-38-vif": "GN"
        }
