"""The link a service keeps to Kafka: what its gauge, its readiness route and the intake's fail-fast read."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from signalements.kafka_link import KafkaLink, readiness_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_link_follows_its_clients_and_refuses_quickly_only_just_after_a_failure() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("connected", "test", registry=registry)

    def value() -> float | None:
        return registry.get_sample_value("connected")

    clock = Clock()
    link = KafkaLink(gauge, "test", quiet_period_s=1.0, clock=clock)
    ready = readiness_of(link)
    assert value() == 0 and not link.connected  # starting: not ready until Kafka answered once

    link.up()
    assert value() == 1 and ready() is None and not link.just_failed()

    link.down("write failed: KafkaTimeoutError")
    clock.now += 0.5
    assert value() == 0 and link.just_failed()
    assert ready() == "cut off from Kafka for 0s: write failed: KafkaTimeoutError"
    clock.now += 0.6  # the quiet period is over: the next request tries Kafka again
    assert not link.just_failed()
    link.down("cannot connect: NoBrokersAvailable")
    clock.now += 9.0
    assert ready() == "cut off from Kafka for 10s: cannot connect: NoBrokersAvailable"

    link.up()
    assert link.connected and value() == 1 and link.cut_off_for_s() == 0.0
