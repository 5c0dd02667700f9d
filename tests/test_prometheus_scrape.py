"""A real Prometheus scrapes the running pipeline and finds what was sent.

The pipeline (intake, Faust worker, unit consumers, lag exporter) runs as real processes on the real broker; a real
Prometheus (Debian's package) runs the project's configuration and rules (deploy/prometheus/) against their ports
with a one-second interval. Known traffic goes through the intake: reports of both channels, one without a competent
unit, one invalid (refused at the door), and one unreadable record produced directly to a raw topic (dead letter).
The test then asks Prometheus' HTTP API for the counts per channel and stage, the recorded throughput, the lag and
the alerts, and compares them with what it sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pipeline_probe import RunningPipeline, wait_for
from prometheus_server import PrometheusServer, observed_pipeline
from sample_submissions import conversation_delivery_network, distinct_point, portal_dealing_point

from schemas.channels import Channel
from schemas.topics import Topics
from signalements.kafka_clients import new_producer
from signalements.kafka_security import Role

# Every report also goes to its département's CROSS queue: those run too, or their queues would lag forever.
UNITS = ["pn-75-pp", "pn-93-pp", "gn-74-chamonix-mont-blanc"]
CROSS_UNITS = ["cross-75", "cross-93", "cross-74"]
MONCOMMISSARIAT, BRIGADE = Channel.MONCOMMISSARIAT.value, Channel.BRIGADE_NUMERIQUE.value
# Routed reports sent after the warm-up, per channel.
ROUTED = {MONCOMMISSARIAT: 6, BRIGADE: 4}


@pytest.fixture(scope="module")
def observed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPipeline, PrometheusServer]]:
    with observed_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("observed"), UNITS, CROSS_UNITS) as observed:
        yield observed


def stored(prometheus: PrometheusServer) -> float:
    return prometheus.scalar('sum(signalements_stage_records_out_total{stage="consume", outcome="stored"})') or 0.0


def expect_by(prometheus: PrometheusServer, expr: str, label: str, expected: dict[str, float]) -> None:
    last: dict[str, float] = {}

    def matches() -> bool:
        nonlocal last
        last = prometheus.values_by(expr, label)
        return last == expected

    try:
        wait_for(matches, timeout_s=30, what=expr)
    except AssertionError:
        raise AssertionError(f"{expr}: Prometheus has {last}, expected {expected}") from None


def test_prometheus_sees_the_traffic_that_was_sent(observed: tuple[RunningPipeline, PrometheusServer]) -> None:
    pipeline, prometheus = observed

    # Warm-up: one report per channel, so that every labelled counter exists, and has been scraped, before the
    # measured traffic (Prometheus' rate() cannot count the first increment of a series that appears with it).
    assert pipeline.post_report(MONCOMMISSARIAT, distinct_point(portal_dealing_point())) == 202
    assert pipeline.post_report(BRIGADE, distinct_point(conversation_delivery_network())) == 202
    wait_for(lambda: stored(prometheus) == 2, timeout_s=90, what="the warm-up reports to be stored and scraped")
    # A few samples of every warmed-up counter (intake, worker, consumers), for rate() to start from.
    wait_for(
        lambda: (prometheus.scalar("min(count_over_time(signalements_stage_records_out_total[1m]))") or 0) >= 3,
        timeout_s=30, what="three scrapes of every warmed-up counter",
    )

    started = time.time()
    for index in range(max(ROUTED.values())):
        if index < ROUTED[MONCOMMISSARIAT]:
            body = distinct_point(portal_dealing_point() if index % 2 else portal_dealing_point("93066", "93200", "Saint-Denis"))
            assert pipeline.post_report(MONCOMMISSARIAT, body) == 202
        if index < ROUTED[BRIGADE]:
            assert pipeline.post_report(BRIGADE, distinct_point(conversation_delivery_network())) == 202
    # Valid, but no commune of the reference (and no position, which the commune boundaries would route): accepted,
    # then unrouted.
    nowhere = distinct_point(portal_dealing_point("99999", "74400", "Lyon"))
    del nowhere["report"]["place"]["latitude"], nowhere["report"]["place"]["longitude"]
    assert pipeline.post_report(MONCOMMISSARIAT, nowhere) == 202
    # Invalid: refused at the door.
    invalid = portal_dealing_point()
    invalid["report"]["place"]["citycode"] = "7511"
    assert pipeline.post_report(MONCOMMISSARIAT, invalid) == 422
    # Unreadable, produced directly by an "integrated system": dead-lettered by the worker.
    producer = new_producer(pipeline.settings, Role.ADMIN, "tests", acks="all")
    producer.send(Topics(pipeline.settings.topic_namespace).raw(Channel.BRIGADE_NUMERIQUE), key=b"bad", value=b"{oops")
    producer.flush(timeout=30)
    producer.close()

    total_routed = 2 + sum(ROUTED.values())
    wait_for(lambda: stored(prometheus) == total_routed, timeout_s=120, what="every routed report stored and scraped")
    wait_for(lambda: prometheus.scalar("sum(signalements_dead_letters_total)") == 1, timeout_s=60, what="the dead letter")
    finished = time.time()

    # Counts per channel and stage, as Prometheus scraped them from the three services (each on its own
    # schedule: the intake's last scrape may be older than the consumers', so each count is awaited).
    expect_by(prometheus, 'sum by (channel) (signalements_stage_records_out_total{stage="intake", outcome="accepted"})',
              "channel", {MONCOMMISSARIAT: 1 + ROUTED[MONCOMMISSARIAT] + 1, BRIGADE: 1 + ROUTED[BRIGADE]})
    expect_by(prometheus, 'sum by (reason) (signalements_stage_records_failed_total{stage="intake"})',
              "reason", {"invalid": 1})
    expect_by(prometheus, 'sum by (channel) (signalements_stage_records_out_total{stage="normalize", outcome="normalized"})',
              "channel", {MONCOMMISSARIAT: 1 + ROUTED[MONCOMMISSARIAT] + 1, BRIGADE: 1 + ROUTED[BRIGADE]})
    expect_by(prometheus, 'sum by (channel) (signalements_stage_records_out_total{stage="consume", outcome="stored"})',
              "channel", {MONCOMMISSARIAT: 1 + ROUTED[MONCOMMISSARIAT], BRIGADE: 1 + ROUTED[BRIGADE]})
    expect_by(prometheus, "sum by (reason) (signalements_unrouted_reports_total)", "reason", {"unknown_commune": 1})
    expect_by(prometheus, "sum by (stage) (signalements_dead_letters_total)", "stage", {"normalize": 1})
    expect_by(prometheus, "sum by (force) (signalements_end_to_end_latency_seconds_count)",
              "force", {"PN": 1 + ROUTED[MONCOMMISSARIAT], "GN": 1 + ROUTED[BRIGADE]})

    # Throughput: the recording rule's reports per second over the minute that holds all the measured traffic,
    # times 60, is what was sent per channel (rate() extrapolates a little at the edges of its samples).
    # Queried a few evaluations after the traffic, so that rate() has enough samples around it to extrapolate
    # little, and while the one-minute window still holds all of it (and the warm-up is long scraped).
    at = finished + 5
    assert at - started < 50, "the traffic must fit in the recording rule's one-minute window"
    wait_for(lambda: time.time() > at + 2, timeout_s=30, what="the recording rule to be evaluated after the traffic")
    per_minute = {
        channel: rate * 60
        for channel, rate in prometheus.values_by("channel:signalements_reports_accepted:rate1m", "channel", at).items()
    }
    expected = {MONCOMMISSARIAT: ROUTED[MONCOMMISSARIAT] + 1, BRIGADE: ROUTED[BRIGADE]}
    assert set(per_minute) == set(expected)
    for channel, count in expected.items():
        assert count * 0.9 <= per_minute[channel] <= count * 1.3, (channel, per_minute, expected)
    stored_rate = prometheus.values_by(
        'stage_channel_outcome:signalements_stage_records_out:rate1m{stage="consume", outcome="stored"}', "channel", at
    )
    for channel, count in ROUTED.items():
        assert count * 0.9 <= stored_rate[channel] * 60 <= count * 1.3, (channel, stored_rate)


def test_lag_and_alerts_on_the_running_pipeline(observed: tuple[RunningPipeline, PrometheusServer]) -> None:
    pipeline, prometheus = observed
    producer = new_producer(pipeline.settings, Role.ADMIN, "tests", acks="all")
    producer.send(Topics(pipeline.settings.topic_namespace).raw(Channel.MONCOMMISSARIAT), key=b"bad2", value=b"[]")
    producer.flush(timeout=30)
    producer.close()
    # Every unit queue of the running consumers is measured, and all of them are read to the end.
    wait_for(
        lambda: prometheus.scalar('signalements_consumer_groups{group_kind="unit-consumer"}') == len(UNITS + CROSS_UNITS),
        timeout_s=60, what="the lag of every unit consumer group",
    )
    wait_for(
        lambda: prometheus.scalar('max(signalements_consumer_lag_max_records{group_kind="unit-consumer"})') == 0,
        timeout_s=90, what="the unit consumers to catch up",
    )
    departements = prometheus.values_by(
        'sum by (departement) (signalements_consumer_lag_records{group_kind="unit-consumer"})', "departement"
    )
    assert set(departements) == {"75", "93", "74"}
    # The dead letter fires the alert rule, evaluated by this Prometheus from deploy/prometheus/rules/.
    firing = wait_for(
        lambda: [a for a in prometheus.alerts() if a["labels"]["alertname"] == "SignalementsDeadLetters"
                 and a["state"] == "firing"],
        timeout_s=60, what="the dead-letter alert",
    )
    assert {(a["labels"]["stage"], a["labels"]["severity"]) for a in firing} == {("normalize", "warning")}
    assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] == "SignalementsTargetDown"]
