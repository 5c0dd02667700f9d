"""A real single-node Apache Kafka broker (KRaft) for development, tests and CI.

The jars come from Maven Central through ``broker/pom.xml``; storage is formatted by Kafka's own StorageTool and the
broker runs as ``java kafka.Kafka`` on loopback. Nothing here is used when KAFKA_BOOTSTRAP_SERVERS is set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from signalements.kafka_clients import bootstrap_list
from signalements.settings import PROJECT_ROOT, Settings

POM = PROJECT_ROOT / "broker" / "pom.xml"
LOG4J_CONFIG = PROJECT_ROOT / "broker" / "log4j2.yaml"
SERVER_PROPERTIES_TEMPLATE = PROJECT_ROOT / "broker" / "server.properties"


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
    """One broker+controller node whose data, config and log live under ``home``."""

    home: Path
    runtime_dir: Path
    port: int = 9092
    controller_port: int = 9093

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBroker:
        return cls(
            home=settings.state_dir / "kafka",
            runtime_dir=settings.kafka_runtime_dir,
            port=settings.local_broker_port,
            controller_port=settings.local_controller_port,
        )

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

    def _write_config(self) -> None:
        text = SERVER_PROPERTIES_TEMPLATE.read_text().format(
            port=self.port, controller_port=self.controller_port, data_dir=self._data
        )
        self._config.write_text(text)

    def format_storage(self) -> None:
        """Format KRaft storage with a fresh cluster id, unless it is already formatted."""
        if (self._data / "meta.properties").exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        cluster_id = subprocess.run(
            self._java("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, check=True
        ).stdout.strip().splitlines()[-1]
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(self._config)),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}\n{result.stderr}")

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
        if self.running_pid() is not None:
            self.wait_ready(timeout_s)
            return
        self.format_storage()
        self._write_config()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(self._config), heap="512m"),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        try:
            self.wait_ready(timeout_s, process)
        except BrokerError:
            self.stop()
            raise

    def wait_ready(self, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BrokerError(f"the broker exited with code {process.returncode}; see {self.log_file}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=bootstrap_list(self.bootstrap_servers), request_timeout_ms=3000)
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
        pid = self.running_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collect the broker if this process started it, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
