"""The broker restarts three times under traffic while every service runs: nothing dies, nothing is lost.

Traffic at about 10 reports/s goes through the intake the whole time, as an integrated system would send it: a 503
is retried after its Retry-After with the same submission. The broker (a dedicated one: its own ports and
directory, never the session's) is stopped for 15 s and started again, three times in a row. Checked: every answer
comes quickly (202, 200 duplicate or 503 with Retry-After, never a hang), the intake accepts again within seconds
of each return, each service is the same process and still alive, each says it is cut off while the broker is away
(its ``signalements_kafka_connected`` gauge, the intake's and the statistics' readiness routes) and connected again
after, and every report that got 202 is in its unit's store and counted once by the national statistics.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from pipeline_probe import (
    free_port,
    grant_units,
    make_settings,
    metric,
    query_store,
    scrape,
    services_environment,
    wait_for,
)

from devkit.intake_key import development_headers
from devkit.local_broker import LocalBroker
from devkit.local_run import Services, wait_for_http
from ops.status import status_once
from signalements.kafka_security import Role
from signalements.settings import PROJECT_ROOT
from signalements.topic_admin import ensure_topics, pipeline_topics

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

PARIS, CHAMONIX = "pn-75-pp", "gn-74-chamonix-mont-blanc"
UNITS = [PARIS, CHAMONIX, "cross-75", "cross-74"]
OUTAGES = 3
DOWN_S = 15.0
RATE = 10.0
SLOWEST_ANSWER_S = 12.0  # the produce timeout (2 s) plus a connection attempt: never a minute of silence


def dealing_point(n: int) -> tuple[str, dict]:
    """A distinct dealing point of Paris 11e: ~330 m apart in latitude, ~220 m in longitude."""
    return "moncommissariat", {
        "submission_id": f"mc-{uuid.uuid4().hex[:12]}",
        "submitted_at": datetime.now(UTC).isoformat(),
        "report": {
            "kind": "dealing_point",
            "place": {
                "label": f"{n} rue de la Roquette 75011 Paris", "housenumber": str(n), "street": "Rue de la Roquette",
                "postcode": "75011", "citycode": "75111", "city": "Paris",
                "latitude": round(48.80 + (n % 40) * 0.003, 6), "longitude": round(2.30 + (n // 40) * 0.003, 6),
            },
            "activity": "street_sales",
        },
    }


def delivery_network(n: int) -> tuple[str, dict]:
    local = datetime.now(ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")
    return "brigade-numerique", {
        "conversation_id": f"bn-{uuid.uuid4().hex[:12]}",
        "started_at": local,
        "reported_at": local,
        "report": {
            "kind": "delivery_network",
            "contact": {"phone": f"06 {n // 10000 % 100:02d} {n // 100 % 100:02d} {n % 100:02d} 11",
                        "handle": f"@livraison{n}"},
            "area_served": {"commune": "Chamonix-Mont-Blanc", "postcode": "74400"},
        },
    }


@dataclass
class Traffic:
    """An integrated system posting reports: retries what got 503, as its Retry-After says."""

    url: str
    headers: dict[str, str]  # the client's credential
    accepted: dict[str, str] = field(default_factory=dict)  # report id -> unit id
    answers: dict[int, int] = field(default_factory=dict)
    slowest_s: float = 0.0
    unexpected: list[str] = field(default_factory=list)
    accepting_at: list[float] = field(default_factory=list)  # monotonic times of 202 answers
    retry: list[tuple[str, dict, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        numbers = itertools.count(1)
        with httpx.Client(base_url=self.url, timeout=60, headers=self.headers) as client:
            started = time.monotonic()
            for sent in itertools.count():
                if self.stop.is_set():
                    return
                if self.retry and self.retry[0][2] <= f"{time.monotonic():020.3f}":
                    channel, body, _ = self.retry.pop(0)
                else:
                    n = next(numbers)
                    channel, body = dealing_point(n) if n % 2 else delivery_network(n)
                self.post(client, channel, body)
                time.sleep(max(0.0, started + (sent + 1) / RATE - time.monotonic()))

    def post(self, client: httpx.Client, channel: str, body: dict) -> None:
        began = time.monotonic()
        response = client.post(f"/v1/reports/{channel}", json=body)
        took = time.monotonic() - began
        self.slowest_s = max(self.slowest_s, took)
        self.answers[response.status_code] = self.answers.get(response.status_code, 0) + 1
        if response.status_code in (200, 202):
            self.accepted[response.json()["report_id"]] = PARIS if channel == "moncommissariat" else CHAMONIX
            if response.status_code == 202:
                self.accepting_at.append(time.monotonic())
        elif response.status_code == 503 and int(response.headers.get("retry-after", "0")) > 0:
            due = time.monotonic() + min(2.0, int(response.headers["retry-after"]))
            self.retry.append((channel, body, f"{due:020.3f}"))
        else:
            self.unexpected.append(f"{response.status_code} {response.headers.get('retry-after')} {response.text}")


def connected(url: str) -> float:
    try:
        return metric(scrape(url), "signalements_kafka_connected")
    except httpx.HTTPError:
        return -1.0


def readiness(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return -1


@pytest.mark.timeout(600)
def test_every_service_rides_out_three_broker_restarts(tmp_path: Path) -> None:
    broker = LocalBroker(home=tmp_path / "kafka", runtime_dir=PROJECT_ROOT / ".cache" / "kafka",
                         port=free_port(), controller_port=free_port())
    broker.start()
    settings = make_settings(
        broker.bootstrap_servers, tmp_path / "state", intake_produce_timeout_s=2.0, dedup_update_throttle_s=1.0,
        worker_commit_interval_s=1.0, lag_exporter_port=free_port(), stats_port=free_port(),
        kafka_ssl_cafile=broker.ca_file, kafka_credentials_dir=broker.credentials,
    )
    grant_units(settings, UNITS)
    services = Services(tmp_path / "log", services_environment(settings))
    host = settings.metrics_host
    intake = f"http://{settings.intake_host}:{settings.intake_port}"
    gauges = {
        "intake": f"{intake}/metrics",
        "worker": f"http://{host}:{settings.worker_metrics_port}/metrics",
        "consumers": f"http://{host}:{settings.consumer_metrics_port}/metrics",
        "lag-exporter": f"http://{host}:{settings.lag_exporter_port}/metrics",
        "national-stats": f"http://{host}:{settings.stats_port}/metrics",
    }
    ready_routes = [f"{intake}/readyz", f"http://{host}:{settings.stats_port}/readyz",
                    f"http://{host}:{settings.consumer_metrics_port}/readyz"]
    traffic = Traffic(intake, development_headers(settings))
    sender = threading.Thread(target=traffic.run, name="traffic", daemon=True)
    recoveries: list[float] = []
    try:
        ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
        services.start("intake", "intake")
        services.start("worker", "worker")
        services.start("consumers", "consume", *[arg for unit in UNITS for arg in ("--unit", unit)])
        services.start("lag-exporter", "lag-exporter")
        services.start("national-stats", "stats", "serve")
        wait_for_http(f"{intake}/healthz", services)
        pids = {name: process.pid for name, process in services.processes.items()}
        wait_for(lambda: all(connected(url) == 1 for url in gauges.values()), timeout_s=60,
                 what="every service connected to Kafka")
        sender.start()
        time.sleep(5)

        for _ in range(OUTAGES):
            broker.stop()
            stopped = time.monotonic()
            wait_for(lambda: all(connected(url) == 0 for url in gauges.values()), timeout_s=DOWN_S,
                     what="every service to say it is cut off from Kafka")
            assert readiness(f"{intake}/readyz") == 503
            # The operator's view names every service that answers but is cut off.
            assert set(status_once(list(gauges.values()), 0.2).cut_off_from_kafka) == set(gauges.values())
            time.sleep(max(0.0, stopped + DOWN_S - time.monotonic()))
            broker.start()
            back = time.monotonic()
            wait_for(lambda back=back: traffic.accepting_at and traffic.accepting_at[-1] > back, timeout_s=30,
                     what="the intake to accept again after the broker came back")
            recoveries.append(traffic.accepting_at[-1] - back)
            wait_for(lambda: all(connected(url) == 1 for url in gauges.values()), timeout_s=30,
                     what="every service connected again")
            assert all(readiness(url) == 200 for url in ready_routes)
            services.check_alive()
            time.sleep(5)

        traffic.stop.set()
        sender.join(timeout=60)
        with httpx.Client(base_url=intake, timeout=60, headers=traffic.headers) as client:
            while traffic.retry:  # what got 503 last is sent again, as its client would
                channel, body, _ = traffic.retry.pop(0)
                traffic.post(client, channel, body)
        assert not traffic.unexpected, traffic.unexpected[:5]
        assert traffic.slowest_s < SLOWEST_ANSWER_S, f"an answer took {traffic.slowest_s:.1f}s"
        assert traffic.answers.get(202, 0) >= 200 and traffic.answers.get(503, 0) > 0, traffic.answers

        def missing() -> list[str]:
            stored = {str(row[0]) for unit in (PARIS, CHAMONIX)
                      for row in query_store(settings, unit, "SELECT report_id FROM case_reports")}
            return [report_id for report_id in traffic.accepted if report_id not in stored]

        wait_for(lambda: not missing(), timeout_s=120, what="every accepted report in its unit's store")
        stats = f"http://{host}:{settings.stats_port}/v1/stats/departements"
        wait_for(lambda: sum(row["total_points"] for row in httpx.get(stats, timeout=5).json())
                 == len(traffic.accepted), timeout_s=60, what="the national statistics to count every point once")
        services.check_alive()
        assert {name: process.pid for name, process in services.processes.items()} == pids
        print(json.dumps({"intake_recovery_s": [round(r, 2) for r in recoveries], "answers": traffic.answers,
                          "slowest_answer_s": round(traffic.slowest_s, 2), "accepted": len(traffic.accepted)}))
    finally:
        traffic.stop.set()
        services.stop()
        broker.stop()
