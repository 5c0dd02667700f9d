"""A real Prometheus server (Debian's package) for tests: the project's own configuration and rules, with the
targets moved to a test pipeline's ports, a one-second scrape and evaluation interval and storage in a temp dir."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pipeline_probe import RunningPipeline, free_port, make_settings, running_pipeline, services_environment, wait_for

from devkit.local_run import Services, wait_for_http
from signalements.settings import PROJECT_ROOT, Settings

LOCAL_CONFIG = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.local.yml"
# Prometheus job -> the Settings field holding the port its target listens on.
JOB_PORTS = {
    "intake": "intake_port",
    "worker": "worker_metrics_port",
    "unit-consumer": "consumer_metrics_port",
    "lag-exporter": "lag_exporter_port",
    "national-stats": "stats_port",
}


def scrape_configuration(settings: Settings) -> dict[str, Any]:
    """deploy/prometheus/prometheus.local.yml, pointed at the ports of ``settings``."""
    config: dict[str, Any] = yaml.safe_load(LOCAL_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(LOCAL_CONFIG.parent / name) for name in config["rule_files"]]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(JOB_PORTS), f"prometheus.local.yml jobs changed: {sorted(jobs)}"
    for job in config["scrape_configs"]:
        port = getattr(settings, JOB_PORTS[job["job_name"]])
        job["static_configs"] = [{"targets": [f"{settings.metrics_host}:{port}"]}]
    return config


@dataclass
class PrometheusServer:
    url: str

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, str] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr}: {response.text}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def values_by(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in self.query(expr, at)}

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        result = self.query(expr, at)
        assert len(result) <= 1, f"{expr} gave several series: {result}"
        return float(result[0]["value"][1]) if result else None

    def alerts(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        alerts: list[dict[str, Any]] = body["data"]["alerts"]
        return alerts


@contextmanager
def running_prometheus(settings: Settings, work_dir: Path) -> Iterator[PrometheusServer]:
    executable = shutil.which("prometheus")
    if executable is None:
        pytest.fail(
            "prometheus is not installed: install it with `bash scripts/install-test-tools.sh` "
            "(Debian's `apt-get install prometheus`).",
            pytrace=False,
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    config_file = work_dir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(scrape_configuration(settings)), encoding="utf-8")
    port = free_port()
    log_file = work_dir / "prometheus.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                executable, f"--config.file={config_file}", f"--storage.tsdb.path={work_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            assert process.poll() is None, f"prometheus exited:\n{log_file.read_text(errors='replace')[-3000:]}"
            try:
                return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout_s=60, what="prometheus to be ready")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_lag_exporter(settings: Settings) -> Iterator[None]:
    """``signalements lag-exporter`` as a process (the pipeline probe starts intake, worker and consumers only)."""
    exporter = Services(settings.log_dir, services_environment(settings))
    try:
        exporter.start("lag-exporter", "lag-exporter")
        wait_for_http(f"http://{settings.metrics_host}:{settings.lag_exporter_port}/metrics", exporter)
        yield
    finally:
        exporter.stop()


@contextmanager
def running_national_stats(settings: Settings) -> Iterator[None]:
    """``signalements stats serve`` as a process, as the local run starts it."""
    stats = Services(settings.log_dir, services_environment(settings))
    try:
        stats.start("national-stats", "stats", "serve")
        wait_for_http(f"http://{settings.metrics_host}:{settings.stats_port}/healthz", stats)
        yield
    finally:
        stats.stop()


def wait_until_scraping(prometheus: PrometheusServer) -> None:
    wait_for(
        lambda: prometheus.values_by("up", "job") == {job: 1.0 for job in JOB_PORTS},
        timeout_s=60, what=f"prometheus to scrape the {len(JOB_PORTS)} services",
    )


@contextmanager
def observed_pipeline(
    kafka_bootstrap: str, work: Path, unit_ids: list[str], cross_unit_ids: list[str]
) -> Iterator[tuple[RunningPipeline, PrometheusServer]]:
    """A running pipeline with the lag exporter and the national statistics, and a real Prometheus scraping all of it."""
    settings = make_settings(
        kafka_bootstrap, work, lag_exporter_port=free_port(), lag_exporter_interval_s=1.0, stats_port=free_port()
    )
    with (
        running_pipeline(settings, unit_ids, cross_unit_ids=cross_unit_ids) as pipeline,
        running_lag_exporter(settings),
        running_national_stats(settings),
        running_prometheus(settings, work / "prometheus") as prometheus,
    ):
        wait_until_scraping(prometheus)
        yield pipeline, prometheus
