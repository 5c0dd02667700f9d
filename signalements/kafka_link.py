"""A service's link to Kafka as it last saw it: connected, or cut off since when and why.

Every service holds one. Its Kafka clients report each success and failure to it; the
``signalements_kafka_connected`` gauge shows it to Prometheus, the service's readiness route answers from it, and the
intake uses it to answer 503 at once while Kafka is known to be away, instead of making every request wait for a
connection timeout. A service never exits because its link went down: it keeps trying, and the link comes back up on
the first success.

Some clients hide an outage (kafka-python's ``poll`` just returns nothing, Faust retries inside aiokafka), so
``KafkaProbe`` asks the cluster for its metadata every few seconds on a thread of its own and reports the answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaAdminClient
from prometheus_client import Gauge

from signalements.kafka_clients import close_quietly, new_admin
from signalements.settings import Settings

log = logging.getLogger(__name__)


class KafkaLink:
    """Connected or cut off, as the service's Kafka clients last found it (thread-safe)."""

    def __init__(self, gauge: Gauge | None, name: str, quiet_period_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._gauge = gauge
        self._name = name
        self._quiet_period_s = quiet_period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._connected = False
        self._seen = False  # nothing reported yet: the service is starting
        self._reason = "not connected yet"
        self._down_since: float | None = None
        self._last_failure: float | None = None
        self._set_gauge(0)

    def up(self) -> None:
        with self._lock:
            if self._connected:
                return
            was_down = self._down_since
            self._connected, self._seen, self._reason = True, True, ""
            self._down_since = self._last_failure = None
        self._set_gauge(1)
        if was_down is not None:
            log.warning("%s: connected to Kafka again after %.1fs cut off", self._name, self._clock() - was_down)

    def down(self, reason: str) -> None:
        now = self._clock()
        with self._lock:
            was_connected = self._connected or not self._seen
            self._connected, self._seen, self._reason = False, True, reason
            self._last_failure = now
            if self._down_since is None:
                self._down_since = now
        self._set_gauge(0)
        if was_connected:
            # Once per outage: the reason of every later failure is in the readiness answer and the metrics.
            log.warning("%s: cut off from Kafka (%s); retrying until it answers", self._name, reason)

    def _set_gauge(self, value: int) -> None:
        if self._gauge is not None:
            self._gauge.set(value)

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def reason(self) -> str:
        with self._lock:
            return self._reason

    def cut_off_for_s(self) -> float:
        with self._lock:
            return 0.0 if self._down_since is None else self._clock() - self._down_since

    def just_failed(self) -> bool:
        """True while the last failure is under the quiet period old: answer 'unavailable' without trying again."""
        with self._lock:
            return (not self._connected and self._last_failure is not None
                    and self._clock() - self._last_failure < self._quiet_period_s)


class KafkaProbe:
    """Every ``interval_s``, ask the cluster for its topics on a client of its own, and report to the link."""

    def __init__(self, settings: Settings, role: str, link: KafkaLink, interval_s: float = 5.0,
                 timeout_s: float = 3.0) -> None:
        self._settings = settings
        self._role = role
        self._link = link
        self._interval_s = interval_s
        self._timeout_ms = int(timeout_s * 1000)
        self._admin: KafkaAdminClient | None = None

    def check(self) -> bool:
        try:
            if self._admin is None:
                self._admin = new_admin(
                    self._settings, self._role, "signalements-probe",
                    request_timeout_ms=self._timeout_ms, bootstrap_timeout_ms=self._timeout_ms,
                )
            self._admin.list_topics()
        except Exception as error:  # noqa: BLE001 (any failure means the same to an operator: Kafka is unreachable)
            self._link.down(f"{type(error).__name__}: {error}"[:200])
            self._close()
            return False
        self._link.up()
        return True

    def start(self, stop: threading.Event | None = None) -> threading.Thread:
        stop = stop or threading.Event()

        def run() -> None:
            while True:
                self.check()
                if stop.wait(self._interval_s):
                    self._close()
                    return

        thread = threading.Thread(target=run, name="kafka-probe", daemon=True)
        thread.start()
        return thread

    def _close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            close_quietly(admin.close, "the probe's admin client")


def readiness_of(link: KafkaLink) -> Callable[[], str | None]:
    """The readiness of a service that is ready exactly while it can reach Kafka (see PipelineMetrics.serve)."""

    def not_ready_because() -> str | None:
        if link.connected:
            return None
        return f"cut off from Kafka for {link.cut_off_for_s():.0f}s: {link.reason}"

    return not_ready_because
