"""``signalements status``: the pipeline at a glance in an operator's terminal, refreshed every second.

It reads the services' ``/metrics`` endpoints directly (intake, worker, unit consumers, lag exporter: the ports of
``Settings``), or one Prometheus server through its federation endpoint (``/federate``, which answers in the same
exposition format with every instance's series), so it needs nothing but HTTP. Rates are the difference between
two readings ``window`` seconds apart; percentiles come from the histogram buckets observed in that window (or since
the services started, when nothing was observed in it).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from signalements.settings import Settings

Labels = tuple[tuple[str, str], ...]
QUANTILES = (0.5, 0.95, 0.99)
PREFIX = "signalements_"


@dataclass(frozen=True)
class Reading:
    """Every ``signalements_*`` sample of every source at one moment, summed over sources with equal labels."""

    at: float
    samples: dict[tuple[str, Labels], float]
    sources_up: dict[str, bool]
    # Per service (its URL, or its Prometheus job/instance): is it connected to Kafka (signalements_kafka_connected)?
    kafka_links: dict[str, bool] = field(default_factory=dict)

    def total(self, name: str, **match: str) -> float:
        return sum(
            value for (sample, labels), value in self.samples.items()
            if sample == name and all(dict(labels).get(k) == v for k, v in match.items())
        )

    def has(self, name: str) -> bool:
        return any(sample == name for sample, _ in self.samples)

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        grouped: dict[str, float] = defaultdict(float)
        for (sample, labels), value in self.samples.items():
            found = dict(labels)
            if sample == name and all(found.get(k) == v for k, v in match.items()):
                grouped[found.get(label, "")] += value
        return dict(grouped)

    def maximum(self, name: str, **match: str) -> float | None:
        values = [
            value for (sample, labels), value in self.samples.items()
            if sample == name and all(dict(labels).get(k) == v for k, v in match.items())
        ]
        return max(values) if values else None


def parse_exposition(text: str, into: dict[tuple[str, Labels], float], links: dict[str, bool] | None = None,
                     source: str = "") -> None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(PREFIX) or sample.name.endswith("_created"):
                continue
            if sample.name == "signalements_kafka_connected" and links is not None:
                # Not summed: which service is cut off is the point (a federation names each by job and instance).
                job, instance = sample.labels.get("job"), sample.labels.get("instance")
                links[f"{job} {instance}" if job else source] = sample.value >= 1
            # Federation adds job/instance; they must not split sums across sources.
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("job", "instance")))
            key = (sample.name, labels)
            into[key] = into.get(key, 0.0) + sample.value


def read_sources(client: httpx.Client, urls: Iterable[str]) -> Reading:
    samples: dict[tuple[str, Labels], float] = {}
    up: dict[str, bool] = {}
    links: dict[str, bool] = {}
    for url in urls:
        try:
            response = client.get(url, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError:
            up[url] = False
            continue
        parse_exposition(response.text, samples, links, url)
        up[url] = True
    return Reading(time.time(), samples, up, links)


def service_urls(settings: Settings) -> list[str]:
    host = settings.metrics_host
    return [
        f"http://{settings.intake_host}:{settings.intake_port}/metrics",
        f"http://{host}:{settings.worker_metrics_port}/metrics",
        f"http://{host}:{settings.consumer_metrics_port}/metrics",
        f"http://{host}:{settings.lag_exporter_port}/metrics",
        f"http://{host}:{settings.stats_port}/metrics",
    ]


def federation_url(prometheus_url: str) -> str:
    """Prometheus' federation endpoint, selecting the project's series of every instance it scrapes."""
    return prometheus_url.rstrip("/") + "/federate?" + urlencode({"match[]": '{__name__=~"signalements_.+"}'})


def quantile_from_buckets(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated within its bucket as Prometheus' histogram_quantile."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower  # above the largest finite bucket: its bound is all that is known
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


class LatencyPercentiles(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None
    observations: int
    over: str  # "window" or "since start"


class StatusSnapshot(BaseModel):
    """What `signalements status --json` prints: the figures an operator watches."""

    window_s: float
    sources_up: dict[str, bool]
    reports_per_s: dict[str, float]
    reports_accepted: dict[str, int]
    intake_rejected: dict[str, int]
    stage_in_per_s: dict[str, float]
    cases_opened: int
    cases_updated: int
    cases_per_s: float
    dedup_ratio: float | None
    lag_by_kind: dict[str, int]
    lag_by_stage: dict[str, int]  # records waiting before each stage: where reports are waiting
    max_unit_lag: int | None
    lag_by_departement: dict[str, int]
    end_to_end_latency: LatencyPercentiles
    failed_by_stage: dict[str, int]
    dead_letters: int
    unrouted: int
    # Changelog records the workers have still to read back: active (their partitions wait), standby (copies).
    worker_recovery: dict[str, int]
    # Services that answer but cannot reach Kafka (they retry by themselves): their URL or job and instance.
    cut_off_from_kafka: list[str] = []


def _rate(now: float, before: float, seconds: float) -> float:
    return max(0.0, now - before) / seconds if seconds > 0 else 0.0  # a restarted service resets its counters


def _buckets(reading: Reading, name: str) -> dict[float, float]:
    return {float(bound): count for bound, count in reading.by(name, "le").items()}


def _cases_opened(reading: Reading) -> float:
    # Until the route stage counts cases by force and département, an opened case is its case_opened outcome.
    if reading.has("signalements_cases_opened_total"):
        return reading.total("signalements_cases_opened_total")
    return reading.total("signalements_stage_records_out_total", stage="route", outcome="case_opened")


def summarize(before: Reading, now: Reading) -> StatusSnapshot:
    seconds = now.at - before.at
    out, in_ = "signalements_stage_records_out_total", "signalements_stage_records_in_total"
    accepted_now = now.by(out, "channel", stage="intake", outcome="accepted")
    accepted_before = before.by(out, "channel", stage="intake", outcome="accepted")
    stage_now, stage_before = now.by(in_, "stage"), before.by(in_, "stage")
    dedup = now.by("signalements_dedup_outcomes_total", "outcome")
    dedup_total = sum(dedup.values())
    histogram = "signalements_end_to_end_latency_seconds_bucket"
    window = {le: max(0.0, count - _buckets(before, histogram).get(le, 0.0)) for le, count in _buckets(now, histogram).items()}
    over = "window"
    if not window or max(window.values()) <= 0:
        window, over = _buckets(now, histogram), "since start"
    lag = "signalements_consumer_lag_records"
    max_unit_lag = now.maximum("signalements_consumer_lag_max_records", group_kind="unit-consumer")
    return StatusSnapshot(
        window_s=round(seconds, 3),
        sources_up=now.sources_up,
        reports_per_s={c: _rate(v, accepted_before.get(c, 0.0), seconds) for c, v in accepted_now.items()},
        reports_accepted={c: int(v) for c, v in accepted_now.items()},
        intake_rejected={r: int(v) for r, v in now.by("signalements_stage_records_failed_total", "reason", stage="intake").items()},
        stage_in_per_s={s: _rate(v, stage_before.get(s, 0.0), seconds) for s, v in stage_now.items()},
        cases_opened=int(_cases_opened(now)),
        cases_updated=int(now.total("signalements_cases_updated_total")),
        cases_per_s=_rate(_cases_opened(now), _cases_opened(before), seconds),
        dedup_ratio=(dedup_total - dedup.get("opened", 0.0)) / dedup_total if dedup_total else None,
        lag_by_kind={k: int(v) for k, v in now.by(lag, "group_kind").items()},
        lag_by_stage={s: int(v) for s, v in now.by(lag, "stage").items()},
        max_unit_lag=None if max_unit_lag is None else int(max_unit_lag),
        lag_by_departement={d: int(v) for d, v in now.by(lag, "departement", group_kind="unit-consumer").items()},
        end_to_end_latency=LatencyPercentiles(
            p50=quantile_from_buckets(0.5, window), p95=quantile_from_buckets(0.95, window),
            p99=quantile_from_buckets(0.99, window),
            observations=int(max(window.values(), default=0.0)), over=over,
        ),
        failed_by_stage={s: int(v) for s, v in now.by("signalements_stage_records_failed_total", "stage").items()},
        dead_letters=int(now.total("signalements_dead_letters_total")),
        unrouted=int(now.total("signalements_unrouted_reports_total")),
        worker_recovery={
            role: int(v) for role, v in now.by("signalements_worker_recovery_remaining_records", "partition_role").items()
        },
        cut_off_from_kafka=sorted(source for source, connected in now.kafka_links.items() if not connected),
    )


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def render(snapshot: StatusSnapshot) -> Group:
    """The status view: what comes in, what becomes cases, where reports wait, how long they take, what fails."""
    traffic = Table(title="Reports", expand=True)
    for column in ("channel", "reports/s", "accepted", "stage", "in/s", "waiting"):
        traffic.add_column(column, justify="right" if column not in ("channel", "stage") else "left")
    channels = sorted(snapshot.reports_accepted)
    stages = sorted(snapshot.stage_in_per_s)
    for index in range(max(len(channels), len(stages), 1)):
        channel = channels[index] if index < len(channels) else ""
        stage = stages[index] if index < len(stages) else ""
        traffic.add_row(
            channel, f"{snapshot.reports_per_s.get(channel, 0.0):.2f}" if channel else "",
            str(snapshot.reports_accepted.get(channel, "")) if channel else "",
            stage, f"{snapshot.stage_in_per_s[stage]:.2f}" if stage else "",
            str(snapshot.lag_by_stage.get(stage, "")) if stage else "",
        )
    cases = Table(title="Cases and lag", expand=True)
    columns = ["cases opened", "cases updated", "cases/s", "dedup ratio", "worker lag", "unit lag", "max unit lag"]
    dedup = "—" if snapshot.dedup_ratio is None else f"{snapshot.dedup_ratio:.0%}"
    row = [
        str(snapshot.cases_opened), str(snapshot.cases_updated), f"{snapshot.cases_per_s:.2f}", dedup,
        str(snapshot.lag_by_kind.get("worker", "—")), str(snapshot.lag_by_kind.get("unit-consumer", "—")),
        "—" if snapshot.max_unit_lag is None else str(snapshot.max_unit_lag),
    ]
    # Only while a worker reads its state back: the view must fit an 80x24 terminal the rest of the time.
    recovery = snapshot.worker_recovery
    if any(recovery.values()):
        columns.append("recovering")
        row.append(f"{recovery.get('active', 0)} (+{recovery.get('standby', 0)} standby)")
    for column in columns:
        cases.add_column(column, justify="right")
    cases.add_row(*row)
    health = Table(title="Latency and errors", expand=True)
    for column in ("e2e p50", "e2e p95", "e2e p99", "intake rejected", "failed", "dead letters", "unrouted", "sources up"):
        health.add_column(column, justify="right")
    latency = snapshot.end_to_end_latency
    up = sum(snapshot.sources_up.values())
    health.add_row(
        _seconds(latency.p50), _seconds(latency.p95), _seconds(latency.p99),
        str(sum(snapshot.intake_rejected.values())), str(sum(snapshot.failed_by_stage.values())),
        str(snapshot.dead_letters), str(snapshot.unrouted),
        f"{up}/{len(snapshot.sources_up)}" + ("" if up == len(snapshot.sources_up) else " ⚠"),
    )
    if not snapshot.cut_off_from_kafka:
        return Group(traffic, cases, health)
    # Only while it is so: up (it answers) but cut off from Kafka, which a "sources up" count cannot show.
    warning = Text(f"⚠ cut off from Kafka, retrying: {', '.join(snapshot.cut_off_from_kafka)}", style="bold red")
    return Group(traffic, cases, health, warning)


def status_once(
    urls: list[str], window_s: float, on_first_reading: Callable[[], None] | None = None
) -> StatusSnapshot:
    with httpx.Client(timeout=3) as client:
        before = read_sources(client, urls)
        if not any(before.sources_up.values()):
            raise ConnectionError("no metrics endpoint answers: " + ", ".join(urls))
        if on_first_reading is not None:
            on_first_reading()
        time.sleep(window_s)
        return summarize(before, read_sources(client, urls))


def run_status(urls: list[str], window_s: float, refresh_s: float = 1.0) -> None:
    """Refresh every ``refresh_s``, with rates over the last ``window_s`` of readings, until Ctrl-C."""
    readings: deque[Reading] = deque()
    with httpx.Client(timeout=min(3.0, refresh_s * 2)) as client, Live(auto_refresh=False, screen=False) as live:
        while True:
            readings.append(read_sources(client, urls))
            while len(readings) > 2 and readings[-1].at - readings[1].at >= window_s:
                readings.popleft()
            live.update(render(summarize(readings[0], readings[-1])), refresh=True)
            time.sleep(refresh_s)
