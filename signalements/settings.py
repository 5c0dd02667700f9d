"""The one settings object of every service, read from the environment.

Every variable is prefixed ``SIGNALEMENTS_`` except ``KAFKA_BOOTSTRAP_SERVERS``, which keeps the name every Kafka
tool and deployment already uses: when it is set, the project uses that cluster and starts no broker of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# Its environment names, then its field name (populate_by_name).
BOOTSTRAP_NAMES = ("KAFKA_BOOTSTRAP_SERVERS", "SIGNALEMENTS_KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIGNALEMENTS_", extra="ignore", frozen=True, populate_by_name=True
    )

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(*BOOTSTRAP_NAMES[:2]),
        description="host:port[,host:port]; unset means the project's local broker",
    )
    topic_namespace: str = Field(
        default="",
        pattern=r"^[a-zA-Z0-9._-]*$",
        description="prefix of every topic and consumer group, to run several pipelines on one cluster",
    )

    # Access control (signalements/kafka_security.py, ops/access_control.py, docs/security.md).
    kafka_security_protocol: Literal["SASL_SSL", "PLAINTEXT"] = Field(
        default="SASL_SSL", description="SASL_SSL: TLS and a SCRAM user per role; PLAINTEXT only for a cluster without access control"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="the CA that signed the brokers' certificates; unset: the local broker's development CA, or the system's for an external cluster"
    )
    kafka_credentials_dir: Path | None = Field(
        default=None, description="one file per principal holding its password; unset: <state_dir>/secrets/kafka"
    )
    kafka_username: str | None = Field(default=None, description="connect as this principal instead of the role's (with kafka_password)")
    kafka_password: SecretStr | None = Field(default=None, description="the password of kafka_username")

    # The local development broker (only used when kafka_bootstrap_servers is unset).
    local_broker_port: int = Field(default=9092, description="the local broker's client port (node n: + 2(n-1))")
    local_controller_port: int = Field(default=9093, description="its controller port (node n: + 2(n-1))")
    local_broker_nodes: int = Field(
        default=1, ge=1, le=5, description="nodes of the local KRaft cluster, each broker and controller (`broker start --nodes`)"
    )
    # 512 MB holds the demo units' topics; every unit of France (12,200 topics, each replica on every node of three)
    # filled it and the node spent its time in full GCs (docs/kafka.md#every-unit).
    local_broker_heap_mb: int = Field(default=512, ge=256, description="JVM heap of each local Kafka node")
    state_dir: Path = Field(default=PROJECT_ROOT / "var", description="broker data, logs, unit stores, Faust state")
    kafka_runtime_dir: Path = Field(default=PROJECT_ROOT / ".cache" / "kafka", description="Kafka jars from Maven")

    # Topics.
    topic_partitions: int = Field(default=3, ge=1)
    topic_replication_factor: int = Field(
        default=1, ge=1, description="replication of every topic the pipeline creates; unset with a local cluster: min(3, its nodes)"
    )
    unit_topic_retention_ms: int = Field(default=90 * 24 * 3600 * 1000, description="unit queues keep 90 days")
    # One partition per unit: a unit receives a few reports a day at most, one consumer reads its queue, and its
    # events then keep one order; three would make the national cluster carry 3 × 6,100 partitions for nothing.
    unit_topic_partitions: int = Field(
        default=1, ge=1, description="partitions of each unit's queue and of its actions topic"
    )

    # Intake (producers/).
    intake_host: str = "127.0.0.1"
    intake_port: int = 8080
    intake_max_body_bytes: int = 64 * 1024
    intake_produce_timeout_s: float = 10.0
    intake_clients_file: Path | None = Field(
        default=None, description="the integrated clients, their hashed API keys and channels; unset: <state_dir>/secrets/intake-clients.json"
    )
    intake_client_rate_per_s: float = Field(
        default=100.0, gt=0, description="reports per second one client may post to one intake process, sustained (429 past it)"
    )
    intake_client_burst: int = Field(default=500, ge=1, description="reports one client may post at once above its rate")
    intake_tls_certfile: Path | None = Field(default=None, description="serve the intake over TLS with this certificate (PEM)")
    intake_tls_keyfile: Path | None = Field(default=None, description="the private key of intake_tls_certfile (PEM)")
    intake_index_refresh_s: float = Field(
        default=5.0, gt=0, description="how often the intake reads the raw topics for ids accepted elsewhere"
    )

    # Stream worker (streams/).
    worker_id: str = "signalements-worker"
    worker_metrics_port: int = 9101
    worker_commit_interval_s: float = Field(
        default=2.8, gt=0, description="how often the worker commits its input offsets (Faust's broker_commit_interval)"
    )
    worker_session_timeout_s: float = Field(
        default=60.0, ge=6, description="a worker silent this long leaves the group; its partitions move to the others"
    )
    # Client tuning of the worker (docs/benchmarks.md says how each value was chosen).
    # 0: each delivery's acknowledgement is awaited before the input offset passes it, so a linger sits on the
    # critical path (5 ms halved the throughput, docs/benchmarks.md).
    worker_producer_linger_s: float = Field(
        default=0.0, ge=0, description="how long the worker's producer waits to fill a batch (Faust's producer_linger)"
    )
    worker_max_poll_records: int | None = Field(
        default=None, ge=1, description="records per fetch handed to the streams at most (unset: the client's own)"
    )
    worker_stream_buffer_maxsize: int = Field(
        default=4096, ge=1, description="records each stream may hold fetched and not yet processed"
    )

    # Deduplication of reports into cases (streams/deduplication.py).
    dedup_distance_m: float = Field(default=150.0, gt=0, description="reports of points closer than this are one point")
    dedup_case_window_days: float = Field(default=30.0, gt=0, description="after this long without a report, a case closes")
    dedup_update_throttle_s: float = Field(default=900.0, ge=0, description="at most one case.updated per case per interval")
    dedup_resubmission_window_s: float = Field(
        default=24 * 3600.0, ge=0, description="the same person's same report again within this is a resubmission"
    )
    dedup_identifier_key_file: Path | None = Field(
        default=None, description="HMAC key of phone numbers, handles and contacts in the dedup state (the same for every worker); unset: <state_dir>/secrets/dedup-identifiers.key"
    )
    reporter_keys_dir: Path | None = Field(
        default=None, description="the forces' keys sealing reporters' contacts (<force>.<key id>.public/.private); unset: <state_dir>/secrets/reporter-keys"
    )
    dedup_sweep_interval_s: float = Field(default=3600.0, gt=0, description="how often expired dedup state is deleted")

    # Per-unit consumers (consumers/).
    consumer_metrics_port: int = 9102
    consumer_database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of a shared case store (e.g. postgresql://...); unset: SQLite per unit"
    )

    # National statistics consumer (consumers/national_stats.py).
    stats_database_url: str | None = Field(default=None, description="unset: SQLite in <state_dir>/stats")
    stats_port: int = Field(default=9104, description="the statistics' JSON API and /metrics")

    # The units' desk (consumers/desk.py): each officer logs in with an account of their own
    # (consumers/desk_officers.py); serve it over TLS (a reverse proxy) beyond loopback, with secure cookies.
    desk_host: str = "127.0.0.1"
    desk_port: int = Field(default=9105, description="the units' desk (web pages)")
    desk_officers_file: Path | None = Field(
        default=None, description="the officers' accounts, their units and scrypt-hashed passwords; unset: <state_dir>/secrets/desk-officers.json"
    )
    desk_session_key_file: Path | None = Field(
        default=None, description="the key of the desk's session cookies, shared by every desk; unset: <state_dir>/secrets/desk-session.key"
    )
    desk_session_hours: float = Field(default=12.0, gt=0, description="how long a login lasts (a shift)")
    desk_secure_cookie: bool = Field(default=False, description="mark the session cookie Secure (set it when the desk is served over HTTPS)")

    metrics_host: str = "127.0.0.1"
    # kafka-python logs every connection and metadata refresh at INFO: a service's log would be mostly that.
    kafka_client_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="log level of the Kafka client library in the intake, consumers and tools"
    )

    # Lag exporter (ops/lag_exporter.py): consumer lag from Kafka offsets, for Prometheus.
    lag_exporter_port: int = 9103
    lag_exporter_interval_s: float = Field(default=5.0, gt=0, description="how often the lag is read from Kafka")

    reference_dir: Path = Field(
        default=PROJECT_ROOT / "reference" / "demo",
        description="the competence table (competence-territoriale.csv) and the demo units list (demo-units.txt)",
    )
    commune_reference_dir: Path = Field(
        default=PROJECT_ROOT / "reference" / "france", description="the commune reference built from COG + La Poste"
    )
    boundaries_file: Path | None = Field(
        default=PROJECT_ROOT / "reference" / "france" / "boundaries.npz",
        description="commune boundaries: the shipped file (IGN ADMIN EXPRESS, `reference build`) or a GeoJSON of "
        "ADMIN EXPRESS's shape",
    )

    @model_validator(mode="before")
    @classmethod
    def _replication_follows_the_local_cluster(cls, data: Any) -> Any:
        """A local cluster of three nodes gets replicated topics unless told otherwise (an external cluster says
        its own replication: nothing here knows its size)."""
        if not isinstance(data, dict) or "topic_replication_factor" in data:
            return data
        external = any(data.get(name) for name in BOOTSTRAP_NAMES)
        nodes = data.get("local_broker_nodes")
        if external or nodes is None:
            return data
        return {**data, "topic_replication_factor": min(3, int(nodes))}

    @property
    def topic_min_insync_replicas(self) -> int:
        """Replicas that must have a record before it is acknowledged (acks=all): 2 of 3, so one broker may be
        lost with nothing lost and nothing refused; 1 without replication."""
        return 2 if self.topic_replication_factor >= 3 else 1

    @property
    def local_broker_ports(self) -> list[tuple[int, int]]:
        """(client port, controller port) of each node of the local cluster."""
        return [(self.local_broker_port + 2 * n, self.local_controller_port + 2 * n) for n in range(self.local_broker_nodes)]

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        return ",".join(f"127.0.0.1:{port}" for port, _ in self.local_broker_ports)

    @property
    def uses_local_broker(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def secrets_dir(self) -> Path:
        """Development keys, certificates and passwords made by the project (ignored by git)."""
        return self.state_dir / "secrets"

    @property
    def credentials_dir(self) -> Path:
        return self.kafka_credentials_dir or self.secrets_dir / "kafka"

    @property
    def ca_file(self) -> Path | None:
        if self.kafka_ssl_cafile is not None:
            return self.kafka_ssl_cafile
        return self.secrets_dir / "ca.crt" if self.uses_local_broker else None

    @property
    def intake_clients_path(self) -> Path:
        return self.intake_clients_file or self.secrets_dir / "intake-clients.json"

    @property
    def desk_officers_path(self) -> Path:
        return self.desk_officers_file or self.secrets_dir / "desk-officers.json"

    @property
    def desk_session_key_path(self) -> Path:
        return self.desk_session_key_file or self.secrets_dir / "desk-session.key"

    @property
    def dedup_identifier_key_path(self) -> Path:
        return self.dedup_identifier_key_file or self.secrets_dir / "dedup-identifiers.key"

    @property
    def reporter_keys_path(self) -> Path:
        return self.reporter_keys_dir or self.secrets_dir / "reporter-keys"

    @property
    def unit_store_dir(self) -> Path:
        return self.state_dir / "units"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    def as_environment(self) -> dict[str, str]:
        """These settings as environment variables, to hand them to a child service process."""
        env = {
            f"SIGNALEMENTS_{name.upper()}": str(value)
            for name, value in self.model_dump(exclude={"kafka_bootstrap_servers", "kafka_password"}).items()
            if value is not None  # an unset optional setting stays unset in the child
        }
        if self.kafka_password is not None:
            env["SIGNALEMENTS_KAFKA_PASSWORD"] = self.kafka_password.get_secret_value()
        if self.kafka_bootstrap_servers is not None:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.kafka_bootstrap_servers
        return env

    def pinned_to_cluster(self) -> Settings:
        """These settings with the cluster, its CA, the credentials directory and the shared keys said explicitly,
        so that a copy with another state directory (a benchmark's, a second worker's) still reaches the same
        cluster with the same secrets (two workers with different identifier keys would never merge a network)."""
        return self.model_copy(update={
            "kafka_bootstrap_servers": self.bootstrap_servers, "kafka_ssl_cafile": self.ca_file,
            "kafka_credentials_dir": self.credentials_dir,
            "dedup_identifier_key_file": self.dedup_identifier_key_path, "reporter_keys_dir": self.reporter_keys_path,
            "intake_clients_file": self.intake_clients_path})

    def consumer_group(self, name: str) -> str:
        return f"{self.topic_namespace}{name}"
