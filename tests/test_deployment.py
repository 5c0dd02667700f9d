"""The deployment description (Dockerfile, docker-compose.yml, deploy/) stays in step with the local run and the code.

docker-compose.yml is read through the real compose parser: Debian's ``docker-compose config`` validates it against
the Compose schema and prints it normalized, with no Docker engine needed (scripts/install-test-tools.sh installs it).
What it prints is then checked against what the project itself says: the services that ``signalements demo``
(devkit/local_run.py) starts, the ports and environment variables of ``Settings``, the units of the demo
jurisdiction reference, the metrics of ``PipelineMetrics``, and the Kafka release of broker/pom.xml.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml  # PyYAML, from the test extras: docker-compose 1.29 prints its normalized configuration as YAML only
from promql_check import check_expressions_parse, promql_metric_names, registry_sample_names

from cli.main import app as cli_app
from signalements.settings import PROJECT_ROOT, Settings
from streams.jurisdiction import JurisdictionReference, read_demo_unit_ids

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
PROMETHEUS_COMPOSE = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_LOCAL = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.local.yml"
GRAFANA = PROJECT_ROOT / "deploy" / "grafana"
GRAFANA_DATASOURCE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "signalements.yml"
DASHBOARD = GRAFANA / "dashboards" / "signalements-pipeline.json"

# The commands of the local run that are not services: local_run.py creates the topics and grants the principals
# before starting anything, which the compose file does with one-shot `topics` and `access` services that the
# others wait for.
TOPICS_COMMAND = "topics"
ACCESS_COMMAND = "access"
SETUP_COMMANDS = {TOPICS_COMMAND, ACCESS_COMMAND}
KAFKA_PROPERTIES = PROJECT_ROOT / "deploy" / "kafka" / "server.properties"
# Prometheus job name -> the `signalements` command whose metrics it scrapes (and Settings field of their port).
METRICS_JOBS = {
    "intake": "intake", "worker": "worker", "unit-consumer": "consume", "lag-exporter": "lag-exporter",
    "national-stats": "stats",
}
METRICS_PORT_FIELD = {
    "intake": "intake_port", "worker": "worker_metrics_port", "consume": "consumer_metrics_port",
    "lag-exporter": "lag_exporter_port", "stats": "stats_port", "desk": "desk_port",
}
STATE_DIR = "/var/lib/signalements"
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
WORKERS = ("worker-1", "worker-2")


def default(field: str) -> Any:
    """A Settings default, whatever the environment of the test run says."""
    return Settings.model_fields[field].default


def settings_env_names() -> set[str]:
    names = {f"SIGNALEMENTS_{name.upper()}" for name in Settings.model_fields if name != "kafka_bootstrap_servers"}
    return names | {"KAFKA_BOOTSTRAP_SERVERS"}


# --- reading the compose file through docker-compose -------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail(
            "docker-compose is not installed: it validates docker-compose.yml (no Docker engine needed). "
            "Install it with `bash scripts/install-test-tools.sh` (Debian's `apt-get install docker-compose`).",
            pytrace=False,
        )
    result = subprocess.run(
        [executable, "-f", str(COMPOSE_FILE), "config"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"docker-compose config rejected docker-compose.yml:\n{result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict) and config.get("services"), f"no services in:\n{result.stdout}"
    return config


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def python_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile, i.e. running the `signalements` command line."""
    return {name: service for name, service in services.items() if "build" in service}


def services_running(python_services: dict[str, dict[str, Any]], command: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, s) for name, s in python_services.items() if s["command"][0] == command]


def service_running(python_services: dict[str, dict[str, Any]], command: str) -> tuple[str, dict[str, Any]]:
    matches = services_running(python_services, command)
    assert len(matches) == 1, f"expected one service running `signalements {command}`, found {[n for n, _ in matches]}"
    return matches[0]


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(published, target) pairs, from either form docker-compose normalizes ports to."""
    pairs = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:  # "[host_ip:]published:target[/protocol]"
            *_, published, target = str(port).split("/")[0].split(":")
            pairs.add((int(published), int(target)))
    return pairs


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source (a named volume or an absolute host path)."""
    targets = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            targets[volume["target"]] = str(volume.get("source", ""))
        else:
            source, target, *_ = str(volume).split(":")
            targets[target] = source
    return targets


# --- what the local run starts -----------------------------------------------------------------------------------


def local_run_commands() -> tuple[set[str], bool]:
    """The `signalements` commands run_local_pipeline starts (Services.start(name, command, ...)), and whether it
    creates the topics first, read from devkit/local_run.py itself."""
    tree = ast.parse((PROJECT_ROOT / "devkit" / "local_run.py").read_text(encoding="utf-8"))
    run = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run_local_pipeline")
    commands: set[str] = set()
    creates_topics = False
    grants = False
    for node in ast.walk(run):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "grant":
            grants = True
        if isinstance(func, ast.Attribute) and func.attr == "start" and len(node.args) >= 2:
            command = node.args[1]
            if isinstance(command, ast.Constant) and isinstance(command.value, str):
                commands.add(command.value)
        if isinstance(func, ast.Name) and func.id == "ensure_topics":
            creates_topics = True
    assert grants, "the local run grants the principals before starting the services"
    return commands, creates_topics


def secret_names(service: dict[str, Any]) -> list[str]:
    """The secrets a service mounts (docker-compose normalizes each to ``{"source": name}``)."""
    return sorted(secret["source"] if isinstance(secret, dict) else str(secret) for secret in service.get("secrets", []))


def broker_properties() -> dict[str, str]:
    lines = KAFKA_PROPERTIES.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_local_run_is_readable() -> None:
    commands, creates_topics = local_run_commands()
    assert commands == {"intake", "worker", "consume", "desk", "lag-exporter", "stats"}
    assert creates_topics


def test_docker_compose_config_accepts_the_file(compose: dict[str, Any]) -> None:
    assert {*KAFKA_NODES, "intake", *WORKERS, "unit-consumer", "prometheus", "grafana"} <= set(compose["services"])


def test_python_services_run_what_the_local_run_runs(python_services: dict[str, dict[str, Any]]) -> None:
    commands, creates_topics = local_run_commands()
    expected = commands | ({TOPICS_COMMAND} if creates_topics else set()) | {ACCESS_COMMAND}
    running = sorted(service["command"][0] for service in python_services.values())
    # one compose service per command of the local run, but the two workers of one application
    assert running == sorted([*expected, "worker"]), running
    assert [name for name, _ in services_running(python_services, "worker")] == list(WORKERS)
    cli_commands = set(typer.main.get_command(cli_app).commands)  # type: ignore[attr-defined]
    assert set(running) <= cli_commands
    for name, service in python_services.items():
        assert Path(service["build"]["context"]).resolve() == PROJECT_ROOT.resolve(), name
        assert service["image"] == python_services[next(iter(python_services))]["image"], "one image for all"


def test_services_start_after_kafka_and_the_topics(
    services: dict[str, dict[str, Any]], python_services: dict[str, dict[str, Any]]
) -> None:
    setup = {service_running(python_services, command)[0] for command in SETUP_COMMANDS}
    for command in SETUP_COMMANDS:
        assert service_running(python_services, command)[1].get("restart", "no") == "no", "set-up runs once"
    for name, service in python_services.items():
        depends_on = service.get("depends_on", {})
        for node in KAFKA_NODES:
            assert depends_on.get(node, {}).get("condition") == "service_healthy", (name, node)
        if name not in setup:
            for step in setup:
                assert depends_on.get(step, {}).get("condition") == "service_completed_successfully", (name, step)
    assert all("healthcheck" in services[node] for node in KAFKA_NODES)


def test_published_ports_are_the_settings_defaults(python_services: dict[str, dict[str, Any]]) -> None:
    for command, field in METRICS_PORT_FIELD.items():
        name, service = services_running(python_services, command)[0]
        port = default(field)
        assert (port, port) in published_ports(service), f"{name} must publish {field}={port}"
    # the second worker: the same port in its container, another on the host
    assert published_ports(python_services["worker-2"]) == {(9111, default("worker_metrics_port"))}
    _, topics = service_running(python_services, TOPICS_COMMAND)
    assert not published_ports(topics)


def test_unit_consumer_consumes_every_demo_unit(python_services: dict[str, dict[str, Any]]) -> None:
    _, consumer = service_running(python_services, "consume")
    args = consumer["command"][1:]
    assert len(args) % 2 == 0 and all(flag in ("--unit", "-u") for flag in args[0::2]), args
    units = args[1::2]
    demo_units = read_demo_unit_ids(default("reference_dir"))
    assert len(units) == len(set(units))
    assert units == demo_units, "the compose consumer serves the demo units, in the order of demo-units.txt"
    reference = JurisdictionReference.load(default("reference_dir"), default("commune_reference_dir"))
    assert set(demo_units) <= set(reference.unit_ids), "every demo unit is a unit of the reference"
    assert reference.demo_unit_ids == demo_units
    # ...and the local run starts its consumers for that list, not for the thousands of units of the reference.
    tree = ast.parse((PROJECT_ROOT / "devkit" / "local_run.py").read_text(encoding="utf-8"))
    run = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run_local_pipeline")
    attributes = {n.attr for n in ast.walk(run) if isinstance(n, ast.Attribute)}
    assert "demo_unit_ids" in attributes and "unit_ids" not in attributes


def test_python_services_environment_is_settings(
    services: dict[str, dict[str, Any]], python_services: dict[str, dict[str, Any]]
) -> None:
    known = settings_env_names()
    node_ids = {services[node]["environment"]["NODE_ID"] for node in KAFKA_NODES}
    template = broker_properties()["advertised.listeners"]
    kafka_listeners = {template.replace("@NODE_ID@", node_id) for node_id in node_ids}
    for name, service in python_services.items():
        environment = {key: str(value) for key, value in service.get("environment", {}).items()}
        assert set(environment) <= known, f"{name}: not Settings fields: {sorted(set(environment) - known)}"
        assert environment.get("KAFKA_BOOTSTRAP_SERVERS"), f"{name} must use the compose broker"
        servers = {f"SASL_SSL://{server}" for server in environment["KAFKA_BOOTSTRAP_SERVERS"].split(",")}
        assert servers == kafka_listeners, f"{name}: {servers} are not the nodes' advertised listeners"
        # The values must be what Settings accepts: read them as a service process does, from its environment.
        clean = {k: v for k, v in os.environ.items() if k not in known}
        result = subprocess.run(
            [sys.executable, "-c", "from signalements.settings import Settings; print(Settings().model_dump_json())"],
            env={**clean, **environment}, capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT,
        )
        assert result.returncode == 0, f"{name}: Settings rejects its environment:\n{result.stderr}"
        settings = json.loads(result.stdout)
        assert settings["intake_host"] == "0.0.0.0" and settings["metrics_host"] == "0.0.0.0", name
        assert settings["state_dir"] == STATE_DIR, name
        assert settings["kafka_security_protocol"] == "SASL_SSL", f"{name} runs secured"
        assert settings["kafka_ssl_cafile"] == "/run/secrets/ca.crt" and "ca.crt" in secret_names(service), name
        assert settings["topic_replication_factor"] == 3, f"{name}: topics replicated on the three nodes"


def test_stateful_services_keep_their_state_in_volumes(
    compose: dict[str, Any], python_services: dict[str, dict[str, Any]]
) -> None:
    named_volumes = set(compose.get("volumes") or {})
    for command in ("worker", "consume", "intake", "stats"):
        for name, service in services_running(python_services, command):
            assert volume_targets(service).get(STATE_DIR) in named_volumes, f"{name} needs a named volume on {STATE_DIR}"
    workers = {volume_targets(service)[STATE_DIR] for _, service in services_running(python_services, "worker")}
    assert len(workers) == len(WORKERS), "each worker its own state (RocksDB), the standby copies in it"
    data = {volume_targets(compose["services"][node]).get("/var/lib/kafka/data") for node in KAFKA_NODES}
    assert data <= named_volumes and len(data) == len(KAFKA_NODES)


def test_kafka_is_a_three_node_kraft_cluster_secured_like_the_local_broker(services: dict[str, dict[str, Any]]) -> None:
    pom = ET.parse(PROJECT_ROOT / "broker" / "pom.xml").getroot()
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = pom.find("m:properties/m:kafka.version", namespace)
    if version is None:
        version = pom.find("properties/kafka.version")
    assert version is not None and version.text
    cluster_ids, node_ids = set(), []
    for node in KAFKA_NODES:
        kafka = services[node]
        image, _, tag = kafka["image"].rpartition(":")
        assert image == "apache/kafka" and tag == version.text, "the same Kafka release as the local broker"
        cluster_ids.add(kafka["environment"]["CLUSTER_ID"])
        node_ids.append(kafka["environment"]["NODE_ID"])
        mounted = set(volume_targets(kafka))
        assert {"/opt/signalements/server.properties", "/opt/signalements/start.sh"} <= mounted
        assert "NODE_ID" in kafka["healthcheck"]["test"][1], "each node checks itself"
    assert len(cluster_ids) == 1 and node_ids == ["1", "2", "3"]
    properties = broker_properties()
    assert properties["process.roles"] == "broker,controller" and properties["node.id"] == "@NODE_ID@"
    assert properties["controller.quorum.voters"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
    assert "controller.quorum.bootstrap.servers" not in properties, "a static quorum"
    assert "--standalone" not in (PROJECT_ROOT / "deploy" / "kafka" / "start.sh").read_text(encoding="utf-8")
    assert properties["min.insync.replicas"] == "2" and properties["offsets.topic.replication.factor"] == "3"
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["advertised.listeners"].split(",") == ["SASL_SSL://kafka-@NODE_ID@:9092"], "no plaintext listener"
    assert properties["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["super.users"] == "User:admin;User:kafka"
    assert properties["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    # The local broker is secured the same way, and its cluster fences a lost node as fast.
    local = (PROJECT_ROOT / "broker" / "listeners-secured.properties").read_text(encoding="utf-8")
    for key in ("authorizer.class.name", "allow.everyone.if.no.acl.found", "sasl.enabled.mechanisms",
                "listener.security.protocol.map", "ssl.principal.mapping.rules"):
        assert f"{key}={properties[key]}" in local, key
    local_cluster = (PROJECT_ROOT / "devkit" / "local_broker.py").read_text(encoding="utf-8")
    assert f"broker.session.timeout.ms={properties['broker.session.timeout.ms']}" in local_cluster


def test_each_service_holds_only_its_own_principals_password(python_services: dict[str, dict[str, Any]],
                                                           services: dict[str, dict[str, Any]]) -> None:
    units = [f"unit-{unit_id}" for unit_id in read_demo_unit_ids(default("reference_dir"))]
    expected = {
        "intake": ["intake"], "worker": ["worker", "dedup-identifiers.key", "PN.dev-1.public", "GN.dev-1.public"],
        "consume": units,  # it stores the sealed contacts as they come: no key
        "desk": [*units, "PN.dev-1.private", "GN.dev-1.private"], "lag-exporter": ["monitoring"],
        "stats": ["national-stats"], TOPICS_COMMAND: ["admin"],
        ACCESS_COMMAND: ["admin", "intake", "worker", "national-stats", "monitoring", *units],
    }
    for command, principals in expected.items():
        for name, service in services_running(python_services, command):
            assert secret_names(service) == sorted(["ca.crt", *principals]), name
    for node in KAFKA_NODES:
        assert secret_names(services[node]) == ["admin", "ca.crt", "kafka.pem"], node
    _, access = service_running(python_services, ACCESS_COMMAND)
    command = access["command"]
    assert command[:3] == ["access", "grant", "--services"] and set(command[3::2]) == {"--unit"}, command
    assert [f"unit-{unit_id}" for unit_id in command[4::2]] == units, "every demo unit is granted"


def test_compose_secrets_makes_every_file_the_compose_file_mounts(compose: dict[str, Any], tmp_path: Path) -> None:
    from devkit.compose_secrets import SECRETS_DIR, make_compose_secrets

    created = make_compose_secrets(read_demo_unit_ids(default("reference_dir")), tmp_path)
    mounted = {Path(secret["file"]).resolve().relative_to(SECRETS_DIR.resolve()).as_posix()
               for secret in compose["secrets"].values()}
    assert mounted == set(created) - {"ca.key"} and mounted <= set(created)
    assert make_compose_secrets(read_demo_unit_ids(default("reference_dir")), tmp_path) == []  # kept, not remade
    assert (tmp_path / "kafka" / "admin").stat().st_mode & 0o077 == 0, "passwords readable by their owner only"


def test_dockerfile_builds_the_signalements_command() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert any("pip install -c constraints.txt -e ." in line for line in instructions)
    assert 'ENTRYPOINT ["signalements"]' in instructions
    copied = {part.rstrip("/") for line in instructions if line.startswith("COPY ") for part in line.split()[1:-1]}
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    reference_top = default("reference_dir").relative_to(PROJECT_ROOT).parts[0]
    runtime = packages - {"devkit"}  # the development kit stays out of the runtime image
    missing = (runtime | {reference_top, "pyproject.toml", "constraints.txt"}) - copied
    assert not missing, f"the image misses {sorted(missing)}"
    assert "devkit" not in copied, "the development kit is not copied into the runtime image"


# --- Prometheus --------------------------------------------------------------------------------------------------


def scrape_targets(path: Path) -> dict[str, set[str]]:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    jobs: dict[str, set[str]] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics").startswith("/metrics"), job["job_name"]
        jobs[job["job_name"]] = {t for static in job.get("static_configs", []) for t in static["targets"]}
    return jobs


def test_prometheus_scrapes_every_metrics_port(python_services: dict[str, dict[str, Any]]) -> None:
    compose_jobs = scrape_targets(PROMETHEUS_COMPOSE)
    local_jobs = scrape_targets(PROMETHEUS_LOCAL)
    assert set(compose_jobs) == set(local_jobs) == set(METRICS_JOBS)
    for job, command in METRICS_JOBS.items():
        port = default(METRICS_PORT_FIELD[command])
        names = [name for name, _ in services_running(python_services, command)]
        assert compose_jobs[job] == {f"{name}:{port}" for name in names}, job
        assert local_jobs[job] == {f"{default('metrics_host')}:{port}"}, job
    assert default("intake_host") == default("metrics_host"), "the local file uses one host for every job"


def test_prometheus_and_grafana_mount_the_deploy_files(services: dict[str, dict[str, Any]]) -> None:
    prometheus = volume_targets(services["prometheus"])
    assert Path(prometheus["/etc/prometheus/prometheus.yml"]) == PROMETHEUS_COMPOSE
    # The rule files are named relative to the configuration file, in both configurations.
    assert Path(prometheus["/etc/prometheus/rules"]) == PROMETHEUS_COMPOSE.parent / "rules"
    for config in (PROMETHEUS_COMPOSE, PROMETHEUS_LOCAL):
        rule_files = yaml.safe_load(config.read_text(encoding="utf-8"))["rule_files"]
        assert [(config.parent / name).is_file() for name in rule_files] == [True] * len(rule_files), config
        assert rule_files == ["rules/signalements.rules.yml"], config
    grafana = volume_targets(services["grafana"])
    assert Path(grafana["/etc/grafana/provisioning"]) == GRAFANA / "provisioning"
    provider = yaml.safe_load(GRAFANA_PROVIDER.read_text(encoding="utf-8"))["providers"][0]
    assert Path(grafana[provider["options"]["path"]]) == DASHBOARD.parent
    datasource = yaml.safe_load(GRAFANA_DATASOURCE.read_text(encoding="utf-8"))["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert (9090, 9090) in published_ports(services["prometheus"])


# --- Grafana dashboard -------------------------------------------------------------------------------------------

def dashboard_expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str) and value.strip():  # templating variables
                yield value
            else:
                yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_expressions(item)


def test_promql_metric_names_reads_expressions() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, channel) (rate(a_seconds_bucket{stage="route"}[$__rate_interval])))'
        " / on (job) group_left (version) up offset 5m + 1e3 * count without (x) (b_total)"
    )
    assert promql_metric_names(expr) == {"a_seconds_bucket", "up", "b_total"}


def test_dashboard_uses_only_pipeline_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    expressions = list(dashboard_expressions(dashboard))
    assert expressions, "the dashboard has no query"
    known = registry_sample_names() | recorded_names()
    used = set().union(*(promql_metric_names(expr) for expr in expressions))
    assert used and used <= known, f"not metrics of signalements/metrics.py or its rules: {sorted(used - known)}"
    # The panels the pipeline needs: throughput, failures, dead letters, unrouted, routing and end-to-end latency,
    # deduplication, cases, consumer lag, top départements.
    joined = "\n".join(expressions)
    assert re.search(r"by \([^)]*stage[^)]*channel[^)]*\) \(rate\(signalements_stage_records_out_total", joined)
    for metric in (
        "signalements_stage_records_failed_total", "signalements_dead_letters_total",
        "signalements_unrouted_reports_total",
    ):
        assert metric in used
    for histogram in ("signalements_routing_latency_seconds", "signalements_end_to_end_latency_seconds"):
        for quantile in ("0.5", "0.95", "0.99"):
            assert re.search(rf"histogram_quantile\({quantile}, .*{histogram}_bucket", joined), (histogram, quantile)
    assert "channel:signalements_reports_accepted:rate1m" in used, "throughput per channel"
    assert "stage_channel:signalements_stage_records_in:rate1m" in used, "throughput per stage"
    assert "signalements_dedup_merged:ratio_rate5m" in used, "dedup ratio"
    assert {"signalements_cases_opened_total", "signalements_cases_updated_total"} <= used
    assert re.search(r"by \(group_kind, stage\) \(signalements_consumer_lag_records\)", joined), "lag per group kind"
    assert re.search(r"topk\(10, sum by \(departement\) \(signalements_open_cases\)\)", joined), "top départements"


def recorded_names() -> set[str]:
    """The series the Prometheus rules record (deploy/prometheus/rules/), which dashboards may read."""
    return {
        rule["record"]
        for path in (PROMETHEUS_COMPOSE.parent / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Prometheus' own parser reads every query: each becomes a recording rule that `promtool check rules` checks."""
    expressions = list(dashboard_expressions(json.loads(DASHBOARD.read_text(encoding="utf-8"))))
    result = check_expressions_parse(expressions, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_promql_check_rejects_invalid_queries(tmp_path: Path) -> None:
    result = check_expressions_parse(["sum by (channel (rate(signalements_dead_letters_total[5m]))"], tmp_path)
    assert result.returncode != 0


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    uid = yaml.safe_load(GRAFANA_DATASOURCE.read_text(encoding="utf-8"))["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert all(target["datasource"]["uid"] == uid for target in panel["targets"]), panel["title"]
