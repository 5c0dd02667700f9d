"""Intake throughput: accepted reports per second on one intake process, printed as one JSON line.

Starts one intake process (``signalements intake``) on a fresh topic namespace of the configured cluster (the local
broker is started if needed), posts generated valid reports of both channels with a number of concurrent clients,
and counts only 202 answers, each meaning the record was acknowledged by Kafka with acks=all. The client runs on
the same machine and takes its share of the CPU: the figure is a floor for a dedicated host.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from devkit.commune_places import places_of
from devkit.intake_key import development_headers
from devkit.local_broker import LocalCluster
from devkit.local_run import Services, wait_for_http
from devkit.traffic_generator import GeneratedReport, TrafficGenerator, TrafficMix
from ops.access_control import AccessControl
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics
from streams.jurisdiction import JurisdictionReference


@dataclass
class BenchResult:
    statuses: dict[int, int]
    latencies_s: list[float]
    elapsed_s: float

    def as_dict(self, reports: int, concurrency: int) -> dict[str, Any]:
        accepted = self.statuses.get(202, 0)
        ordered = sorted(self.latencies_s)

        def quantile(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if ordered else 0.0

        return {
            "benchmark": "intake",
            "reports": reports,
            "concurrency": concurrency,
            "accepted": accepted,
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
            "elapsed_s": round(self.elapsed_s, 3),
            "accepted_per_s": round(accepted / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "latency_ms": {"p50": quantile(0.5), "p95": quantile(0.95), "p99": quantile(0.99),
                           "mean": round(statistics.fmean(ordered) * 1000, 2) if ordered else 0.0},
        }


def bench_reports(settings: Settings, count: int, seed: int) -> list[GeneratedReport]:
    reference = JurisdictionReference.from_settings(settings)
    mix = TrafficMix(exact_duplicate_share=0.0, invalid_share=0.0)
    generator = TrafficGenerator(reference.communes, mix, seed=seed, run_tag=f"b{uuid.uuid4().hex[:8]}",
                                 places=places_of(reference.boundaries))
    return list(generator.reports(count))


async def post_all(url: str, reports: list[GeneratedReport], concurrency: int, headers: dict[str, str]) -> BenchResult:
    queue: asyncio.Queue[GeneratedReport] = asyncio.Queue()
    for report in reports:
        queue.put_nowait(report)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            report = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(report.path, json=report.submission)
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return BenchResult(statuses, latencies, elapsed)


def run_intake_bench(settings: Settings, reports: int, concurrency: int, warmup: int, seed: int = 1) -> dict[str, Any]:
    if settings.uses_local_broker:
        LocalCluster.from_settings(settings).start()
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    bench_settings = settings.pinned_to_cluster().model_copy(update={
        "topic_namespace": namespace,
        "state_dir": settings.state_dir / "bench" / namespace.rstrip("."),
        # One client posting as fast as it can is what the benchmark measures, not what the rate limit refuses.
        "intake_client_rate_per_s": 1e9, "intake_client_burst": 1_000_000,
    })
    ensure_topics(bench_settings, Role.ADMIN, pipeline_topics(bench_settings))
    AccessControl(bench_settings).grant([Role.INTAKE])
    services = Services(bench_settings.log_dir, bench_settings.as_environment())
    url = f"http://{bench_settings.intake_host}:{bench_settings.intake_port}"
    generated = bench_reports(bench_settings, warmup + reports, seed)
    try:
        services.start("intake", "intake")
        wait_for_http(f"{url}/healthz", services)
        if warmup:
            asyncio.run(post_all(url, generated[:warmup], concurrency, development_headers(bench_settings)))
        result = asyncio.run(post_all(url, generated[warmup:], concurrency, development_headers(bench_settings)))
    finally:
        services.stop()
    figures = result.as_dict(reports, concurrency)
    figures["topic_namespace"] = namespace
    return figures


def print_intake_bench(settings: Settings, reports: int, concurrency: int, warmup: int) -> None:
    print(json.dumps(run_intake_bench(settings, reports, concurrency, warmup)))
