"""A real single-node Apache Kafka broker (KRaft) for development, tests and CI.

The jars come from Maven Central through ``broker/pom.xml``; storage is formatted by Kafka's own StorageTool and the
broker runs as ``java kafka.Kafka`` on loopback. Nothing here is used when KAFKA_BOOTSTRAP_SERVERS is set.

Secured by default: a SASL_SSL listener with a certificate from the development CA (devkit/dev_pki.py), the
administrator created as a SCRAM-SHA-512 user when the storage is formatted (``--add-scram``), and the
StandardAuthorizer denying whatever no ACL allows. The other principals and their ACLs are granted afterwards by
ops/access_control.py. ``secured=False`` is the quick local mode: one PLAINTEXT listener, no authorization.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from devkit.dev_pki import DevelopmentCA, new_password
from signalements.kafka_clients import bootstrap_list
from signalements.kafka_security import ADMIN_PRINCIPAL
from signalements.private_files import write_private
from signalements.settings import PROJECT_ROOT, Settings

POM = PROJECT_ROOT / "broker" / "pom.xml"
LOG4J_CONFIG = PROJECT_ROOT / "broker" / "log4j2.yaml"
SERVER_PROPERTIES_TEMPLATE = PROJECT_ROOT / "broker" / "server.properties"
LISTENERS_TEMPLATES = {True: PROJECT_ROOT / "broker" / "listeners-secured.properties",
                       False: PROJECT_ROOT / "broker" / "listeners-plaintext.properties"}
NODE_PRINCIPAL = "signalements-broker"


class BrokerError(RuntimeError):
    pass


def ensure_kafka_runtime(runtime_dir: Path) -> Path:
    """Resolve Kafka and its logging binding from Maven Central into ``runtime_dir/lib`` once per pom version."""
    lib = runtime_dir / "lib"
    stamp = runtime_dir / "pom.sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if lib.is_dir() and stamp.exists() and stamp.read_text() == digest:
        return lib
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch Kafka from Maven Central")
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    command = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={lib}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"resolving Kafka from Maven Central failed:\n{result.stdout}\n{result.stderr}")
    stamp.write_text(digest)
    return lib


@dataclass(frozen=True)
class LocalBroker:
    """One broker+controller node whose data, config and log live under ``home``: alone (its own quorum), or a node
    of a local cluster (``voters``: every node's id and controller port; ``cluster_id``: the one they format with)."""

    home: Path
    runtime_dir: Path
    port: int = 9092
    controller_port: int = 9093
    secured: bool = True
    secrets_dir: Path | None = None      # unset: <home>/secrets
    credentials_dir: Path | None = None  # unset: <secrets_dir>/kafka
    node_id: int = 1
    voters: tuple[tuple[int, int], ...] = ()
    cluster_id_to_format: str | None = None
    heap_mb: int = 512

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBroker:
        return cls(
            home=settings.state_dir / "kafka",
            runtime_dir=settings.kafka_runtime_dir,
            port=settings.local_broker_port,
            controller_port=settings.local_controller_port,
            secured=settings.kafka_security_protocol == "SASL_SSL",
            secrets_dir=settings.secrets_dir,
            credentials_dir=settings.credentials_dir,
            heap_mb=settings.local_broker_heap_mb,
        )

    @property
    def secrets(self) -> Path:
        return self.secrets_dir or self.home / "secrets"

    @property
    def credentials(self) -> Path:
        return self.credentials_dir or self.secrets / "kafka"

    @property
    def ca_file(self) -> Path:
        return self.secrets / "ca.crt"

    @property
    def admin_password_file(self) -> Path:
        return self.credentials / ADMIN_PRINCIPAL

    def client_options(self) -> dict[str, Any]:
        """kafka-python options of an administrator's client of this broker."""
        if not self.secured:
            return {}
        return {
            "security_protocol": "SASL_SSL", "ssl_cafile": str(self.ca_file), "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": ADMIN_PRINCIPAL, "sasl_plain_password": self.admin_password_file.read_text().strip(),
        }

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def _config(self) -> Path:
        return self.home / "server.properties"

    @property
    def _data(self) -> Path:
        return self.home / "data"

    def _java(self, main_class: str, *args: str, heap: str = "256m") -> list[str]:
        lib = ensure_kafka_runtime(self.runtime_dir)
        return [
            "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp", f"{lib}/*", main_class, *args,
        ]

    @property
    def quorum_state_file(self) -> Path:
        """Where KRaft keeps this node's view of the quorum (leader id and epoch, its vote)."""
        return self._data / "__cluster_metadata-0" / "quorum-state"

    @property
    def _mode_stamp(self) -> Path:
        return self._data / "signalements-security-mode"

    def _mode(self) -> str:
        return "secured" if self.secured else "plaintext"

    @property
    def cluster_size(self) -> int:
        return max(1, len(self.voters))

    def _quorum(self) -> str:
        if not self.voters:  # a single-node dynamic quorum (formatted --standalone)
            return f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}"
        # A static quorum of every node: each formatted with the same cluster id, no --standalone.
        return "controller.quorum.voters=" + ",".join(f"{node}@127.0.0.1:{port}" for node, port in self.voters)

    def _cluster_tuning(self) -> str:
        if not self.voters:
            return ""
        # A node lost is fenced, and its partitions led by another, after this session timeout (Kafka's 9 s would
        # outlast the intake's 10 s produce timeout with the metadata refresh on top): the pause a broker crash costs.
        return "broker.heartbeat.interval.ms=1000\nbroker.session.timeout.ms=4000"

    def _write_config(self) -> None:
        replication = min(3, self.cluster_size)
        values: dict[str, object] = {
            "port": self.port, "controller_port": self.controller_port, "data_dir": self._data,
            "node_id": self.node_id, "quorum": self._quorum(), "cluster_tuning": self._cluster_tuning(),
            "replication": replication,
            "min_isr": 2 if replication >= 3 else 1,
        }
        if self.secured:
            ca = DevelopmentCA(self.secrets).ensure()
            node = ca.issue(NODE_PRINCIPAL, server=True, client=True)  # the controller listener is mutual TLS
            values.update(admin_password=self._admin_password(), keystore=node.bundle, truststore=ca.certificate_file,
                          node_principal=NODE_PRINCIPAL)
        text = SERVER_PROPERTIES_TEMPLATE.read_text() + LISTENERS_TEMPLATES[self.secured].read_text()
        write_private(self._config, text.format(**values))  # it holds the administrator's password

    def _admin_password(self) -> str:
        """The administrator's password, made on first use (``<credentials>/admin``, readable by its owner only)."""
        if not self.admin_password_file.exists():
            write_private(self.admin_password_file, new_password() + "\n")
        return self.admin_password_file.read_text().strip()

    def format_storage(self) -> None:
        """Format KRaft storage with a fresh cluster id (and the administrator's SCRAM user), unless already done.

        Storage formatted in the other mode is formatted again: a plaintext broker's metadata has no administrator,
        and no principal could then grant anything. It is a development broker: its data is demo traffic.
        """
        if (self._data / "meta.properties").exists():
            stamp = self._mode_stamp.read_text().strip() if self._mode_stamp.exists() else "plaintext"
            same_cluster = self.cluster_id_to_format in (None, self.cluster_id())
            if stamp == self._mode() and same_cluster:
                return
            print(f"local broker: storage formatted {stamp} for cluster {self.cluster_id()}, wanted {self._mode()}"
                  f" for {self.cluster_id_to_format or 'a new one'}: formatting it again", flush=True)
            shutil.rmtree(self._data)
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        cluster_id = self.cluster_id_to_format or new_cluster_id(self.runtime_dir)
        scram = ["--add-scram", f"SCRAM-SHA-512=[name={ADMIN_PRINCIPAL},password={self._admin_password()}]"]
        quorum = [] if self.voters else ["--standalone"]
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", *quorum, "-t", cluster_id, "-c", str(self._config),
                       *(scram if self.secured else [])),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}\n{result.stderr}")
        self._mode_stamp.write_text(self._mode() + "\n")

    def cluster_id(self) -> str | None:
        """The id the storage was formatted with (a new one each time it is formatted)."""
        meta = self._data / "meta.properties"
        if not meta.exists():
            return None
        for line in meta.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def running_pid(self) -> int | None:
        if not self.pid_file.exists():
            return None
        pid = int(self.pid_file.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the broker in the background and return once it answers metadata requests."""
        process = self.launch()
        try:
            self.wait_ready(timeout_s, process)
        except BrokerError:
            self.stop()
            raise

    def launch(self) -> subprocess.Popen[bytes] | None:
        """Start the node's process unless it runs (None then), without waiting: a node of a cluster answers only
        once a majority of the quorum runs."""
        if self.running_pid() is not None:
            return None
        self.format_storage()
        self._write_config()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(self._config), heap=f"{self.heap_mb}m"),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        return process

    def kill(self) -> None:
        """kill -9: the node lost as a crash loses it (its data stays)."""
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                _reap(pid)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def wait_ready(self, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BrokerError(f"the broker exited with code {process.returncode}; see {self.log_file}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=bootstrap_list(self.bootstrap_servers), request_timeout_ms=3000,
                                         **self.client_options())
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except KafkaError as error:
                last_error = error
                time.sleep(0.5)
        raise BrokerError(f"the broker did not answer within {timeout_s:.0f}s ({last_error}); see {self.log_file}")

    def stop(self, timeout_s: float = 30.0) -> None:
        pid = self.terminate()
        if pid is not None:
            self.wait_stopped(pid, time.monotonic() + timeout_s)

    def terminate(self) -> int | None:
        """Ask the node to shut down (SIGTERM), without waiting: the pid asked, None when it did not run."""
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        return pid

    def wait_stopped(self, pid: int, deadline: float) -> None:
        """Wait for the node asked to stop; kill -9 at ``deadline``."""
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):  # it ended between the last look and now
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def new_cluster_id(runtime_dir: Path) -> str:
    lib = ensure_kafka_runtime(runtime_dir)
    return subprocess.run(
        ["java", "-cp", f"{lib}/*", "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]


def _reap(pid: int) -> None:
    """Collect the broker if this process started it, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@dataclass(frozen=True)
class LocalCluster:
    """N broker+controller nodes on loopback formatted with one cluster id, a static quorum of all of them; one node
    is the single broker of old (``nodes`` of one)."""

    nodes: tuple[LocalBroker, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalCluster:
        if settings.local_broker_nodes == 1:
            return cls((LocalBroker.from_settings(settings),))
        return cls.of(settings.state_dir / "kafka-cluster", settings.kafka_runtime_dir, settings.local_broker_ports,
                      secured=settings.kafka_security_protocol == "SASL_SSL", secrets_dir=settings.secrets_dir,
                      credentials_dir=settings.credentials_dir, heap_mb=settings.local_broker_heap_mb)

    @classmethod
    def of(cls, home: Path, runtime_dir: Path, ports: list[tuple[int, int]], *, secured: bool = True,
           secrets_dir: Path | None = None, credentials_dir: Path | None = None, heap_mb: int = 512) -> LocalCluster:
        """A cluster under ``home`` with a node per (client port, controller port); its id is kept in
        ``home/cluster.id``, so its nodes are formatted alike and stay formatted."""
        id_file = home / "cluster.id"
        if not id_file.exists():
            home.mkdir(parents=True, exist_ok=True)
            id_file.write_text(new_cluster_id(runtime_dir) + "\n")
        cluster_id = id_file.read_text().strip()
        voters = tuple((number, controller) for number, (_, controller) in enumerate(ports, start=1))
        return cls(tuple(
            LocalBroker(home=home / f"node-{number}", runtime_dir=runtime_dir, port=port, controller_port=controller,
                        secured=secured, secrets_dir=secrets_dir or home / "secrets",
                        credentials_dir=credentials_dir, node_id=number, voters=voters,
                        cluster_id_to_format=cluster_id, heap_mb=heap_mb)
            for number, (port, controller) in enumerate(ports, start=1)
        ))

    @property
    def first(self) -> LocalBroker:
        return self.nodes[0]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def start(self, timeout_s: float = 120.0) -> None:
        """Start every node, then return once each answers and every broker is registered with the quorum."""
        if len(self.nodes) == 1:
            self.first.start(timeout_s)
            return
        processes = [node.launch() for node in self.nodes]
        try:
            for node, process in zip(self.nodes, processes, strict=True):
                node.wait_ready(timeout_s, process)
            self.wait_registered(timeout_s)
        except BrokerError:
            self.stop()
            raise

    def wait_registered(self, timeout_s: float, expected: int | None = None) -> None:
        """Until the cluster's metadata lists ``expected`` brokers (all of them) and an active controller."""
        wanted = len(self.nodes) if expected is None else expected
        deadline = time.monotonic() + timeout_s
        seen: list[int] = []
        while time.monotonic() < deadline:
            running = [node for node in self.nodes if node.running_pid() is not None]
            try:
                admin = KafkaAdminClient(bootstrap_servers=bootstrap_list(",".join(n.bootstrap_servers for n in running)),
                                         request_timeout_ms=3000, **self.first.client_options())
                try:
                    described = admin.describe_cluster()
                finally:
                    admin.close()
                # DescribeCluster with fenced brokers included: a broker counts once unfenced (caught up with the
                # metadata and able to lead partitions).
                seen = sorted(int(broker["broker_id"]) for broker in described.get("brokers", [])
                              if not broker.get("is_fenced", False))
                if len(seen) >= wanted and described.get("controller_id", -1) not in (None, -1):
                    return
            except KafkaError:
                pass
            time.sleep(0.5)
        raise BrokerError(f"the cluster lists brokers {seen} after {timeout_s:.0f}s, wanted {wanted}; see "
                          f"{', '.join(str(node.log_file) for node in self.nodes)}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """All nodes asked at once: one by one, the last would wait its whole timeout for a controlled shutdown that
        a quorum without majority can never grant."""
        asked = [(node, node.terminate()) for node in self.nodes]
        deadline = time.monotonic() + timeout_s
        for node, pid in asked:
            if pid is not None:
                node.wait_stopped(pid, deadline)

    def running(self) -> list[int]:
        return [node.node_id for node in self.nodes if node.running_pid() is not None]

    def active_controller(self) -> int | None:
        """The node leading the controller quorum, as the running nodes last learnt it: the leader of the highest
        epoch in their quorum-state files (KRaft writes one on every election). DescribeCluster cannot tell: in
        KRaft it names any broker as the "controller" to clients."""
        known: list[tuple[int, int]] = []
        for node in self.nodes:
            state_file = node.quorum_state_file
            if node.running_pid() is None or not state_file.exists():
                continue
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):  # being rewritten: the next look will read it
                continue
            if int(state.get("leaderId", -1)) >= 0:
                known.append((int(state["leaderEpoch"]), int(state["leaderId"])))
        return max(known)[1] if known else None

    # What callers of the single broker used, for the whole cluster.
    def running_pid(self) -> int | None:
        """A running node's pid (None when none runs)."""
        return next((pid for node in self.nodes if (pid := node.running_pid()) is not None), None)

    def cluster_id(self) -> str | None:
        return self.first.cluster_id()

    @property
    def log_file(self) -> Path:
        return self.first.log_file

    @property
    def ca_file(self) -> Path:
        return self.first.ca_file

    @property
    def credentials(self) -> Path:
        return self.first.credentials
