"""Every record a stage writes is acknowledged by Kafka before the offset of the record it came from is committed.

Why not Faust's own ``topic.send()``: inside an agent it attaches the record to the input offset and publishes it
when that offset is committed, and the commit then waits for the attached records without looking at how they
ended (``asyncio.wait``). A failed send therefore let the offset be committed anyway: seen on a unit queue created a
moment before (``NotLeaderForPartitionError``), where the case events were lost for good, the deduplication state
saying the case was opened. And a send to a topic whose metadata aiokafka does not have yet waits in the agent,
holding every other unit's traffic (a 90 s stall was seen).

Here a stage hands its records to ``Deliveries.send``, which returns at once. Each record is delivered on a task of
its own: the unit queue is made ready first if the worker has not written to it yet (``UnitQueues``), then the
record is sent and its acknowledgement awaited; a failure is logged and the same bytes are sent again with backoff
(same event id, so consumers apply it once), until Kafka acknowledges it or the worker stops. The commit of an input
offset waits until every record sent for the records before it is acknowledged (``settle``, called by the worker's
consumer, ``streams/offset_rewind.py``); records for other units keep flowing meanwhile. A worker that stops with
records unacknowledged commits only below the first of them, so the next owner of the partition processes that
record again and, through the route stage's journal, sends the same events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import faust
from faust.types import TP
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from signalements.kafka_clients import close_quietly, new_admin
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import is_served, partitions_for, replicated, unit_topic_config

log = logging.getLogger(__name__)

# Records sent and not yet acknowledged, at most: past this the stage waits (the broker is away, memory is bounded).
MAX_OUTSTANDING = 5_000
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
# A queue whose partitions have no leader this long after its creation is created again (checked again).
QUEUE_READY_TIMEOUT_S = 30.0
ADMIN_TIMEOUT_MS = 5_000
# How long a send waits for Kafka's acknowledgement before it sends the same bytes again.
ACK_TIMEOUT_S = 15.0
# How long a new queue waits for the worker's producer to see a leader on every partition before it sends anyway.
PRODUCER_METADATA_TIMEOUT_S = 10.0
# Once the worker stops, how long its last commit waits for deliveries under way before it commits below them.
STOPPING_GRACE_S = 5.0


@dataclass(frozen=True)
class Outgoing:
    """One record for Kafka, as bytes: sent again unchanged after a failure."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class UnitQueues:
    """Unit queues made ready before their first record: created if missing, then waited for until every partition
    has a leader. Runs the admin client on a thread of its own, so the event loop never waits on it."""

    def __init__(self, settings: Settings, ready: set[str],
                 producer_knows: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self._settings = settings
        # The admin client sees the leaders first; the worker's producer may not have them in its metadata yet, and a
        # first send then fails with NotLeaderForPartition (aiokafka was seen stalling after that retry).
        self._producer_knows = producer_knows
        self._ready = set(ready)
        self._making: dict[str, asyncio.Future[None]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unit-queues")
        self._admin: KafkaAdminClient | None = None

    def is_ready(self, topic: str) -> bool:
        return topic in self._ready

    async def ready(self, topic: str) -> None:
        if topic in self._ready:
            return
        making = self._making.get(topic)
        if making is None:
            making = asyncio.ensure_future(self._make_ready(topic))
            self._making[topic] = making
        await asyncio.shield(making)

    async def _make_ready(self, topic: str) -> None:
        loop = asyncio.get_running_loop()
        wait = RETRY_FIRST_S
        started = loop.time()
        while True:
            try:
                await loop.run_in_executor(self._executor, self._create_and_wait, topic)
                break
            except Exception as error:  # noqa: BLE001 (the broker away, a leader not elected yet: retried forever)
                log.warning("unit queue %s not ready yet (%s: %s); retrying in %.1fs",
                            topic, type(error).__name__, error, wait)
                self._drop_admin()
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_S)
        if self._producer_knows is not None and not await self._producer_knows(topic):
            log.warning("the producer has no leader for every partition of %s yet; sending anyway", topic)
        self._ready.add(topic)
        del self._making[topic]
        log.info("unit queue %s ready after %.2fs", topic, loop.time() - started)

    def _create_and_wait(self, topic: str) -> None:
        """On the admin thread: create the topic if missing, then wait until every partition has a leader."""
        admin = self._admin_client()
        partitions = partitions_for(self._settings, topic)
        try:
            admin.create_topics([NewTopic(topic, partitions, self._settings.topic_replication_factor,
                                          topic_configs=replicated(self._settings, unit_topic_config(self._settings)))])
        except TopicAlreadyExistsError:  # a unit consumer, a transfer or another worker created it: fine
            pass
        until = time.monotonic() + QUEUE_READY_TIMEOUT_S
        while time.monotonic() < until:
            if all(is_served(description) for description in admin.describe_topics([topic])):
                return
            time.sleep(0.1)
        raise TimeoutError(f"no leader for every partition of {topic} after {QUEUE_READY_TIMEOUT_S:.0f}s")

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            # Short timeouts: while the broker is away each attempt fails in seconds, and the queues waiting
            # behind it (one admin thread) are tried again soon after it returns.
            self._admin = new_admin(
                self._settings, Role.WORKER, "signalements-worker-admin",
                request_timeout_ms=ADMIN_TIMEOUT_MS, bootstrap_timeout_ms=ADMIN_TIMEOUT_MS,
            )
        return self._admin

    def _drop_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            self._executor.submit(close_quietly, admin.close, "the unit queues' admin client")


class InputPosition(Protocol):
    """Where an input record is (streams.stages.InputRecord): its commit waits for what is sent for it."""

    @property
    def tp(self) -> TP: ...

    @property
    def offset(self) -> int: ...


class Deliveries:
    """The worker's writes, each retried until acknowledged, and the commit gate that waits for them."""

    def __init__(self, app: faust.App, queues: UnitQueues) -> None:
        self._app = app
        self._queues = queues
        self._pending: dict[TP, dict[int, set[asyncio.Task[None]]]] = defaultdict(dict)
        self._room = asyncio.Semaphore(MAX_OUTSTANDING)
        self._failing_since: float | None = None

    async def send(self, source: InputPosition | None, record: Outgoing,
                   on_delivered: Callable[[], None] | None = None) -> None:
        """Deliver ``record`` for the input record ``source`` (whose offset then waits for it); returns at once
        unless too many records are waiting for Kafka."""
        await self._room.acquire()
        task = asyncio.ensure_future(self._deliver(record, on_delivered))
        if source is not None:
            tp, offset = source.tp, source.offset
            self._pending[tp].setdefault(offset, set()).add(task)
            task.add_done_callback(lambda done: self._forget(tp, offset, done))
        task.add_done_callback(lambda _: self._room.release())

    async def _deliver(self, record: Outgoing, on_delivered: Callable[[], None] | None) -> None:
        await self._queues.ready(record.topic)
        wait = RETRY_FIRST_S
        while True:
            try:
                acknowledged = await self._app.producer.send(
                    record.topic, record.key, record.value, partition=None, timestamp=None, headers=record.headers,
                )
                # Bounded: aiokafka was seen never answering after a NotLeaderForPartition retry on a new queue.
                # The same bytes are sent again (same event id); a late first acknowledgement is harmless.
                await asyncio.wait_for(asyncio.shield(acknowledged), ACK_TIMEOUT_S)
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 (whatever Kafka said, the record is not written: sent again)
                if self._failing_since is None:
                    self._failing_since = asyncio.get_running_loop().time()
                log.warning("delivery to %s failed (%s: %s); sending it again in %.1fs",
                            record.topic, type(error).__name__, error, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_S)
        if self._failing_since is not None:
            log.warning("deliveries acknowledged again after %.1fs of failures",
                        asyncio.get_running_loop().time() - self._failing_since)
            self._failing_since = None
        if on_delivered is not None:
            on_delivered()

    def _forget(self, tp: TP, offset: int, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return  # not delivered (the worker is stopping): its input offset is never committed past it
        tasks = self._pending[tp].get(offset)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._pending[tp][offset]

    def _waiting_before(self, tp: TP, offset: int) -> list[asyncio.Task[None]]:
        return [task for source, tasks in self._pending.get(tp, {}).items() if source < offset
                for task in tasks if not task.done()]

    async def settle(self, commit_offsets: MutableMapping[TP, int], stopping: Callable[[], bool]) -> None:
        """Before Faust commits ``commit_offsets``: wait until every record sent for an input record below its
        commit offset is acknowledged. Once the worker stops, wait a few seconds at most, then lower each offset in
        place to the first input record still waiting, so that it is processed again by whoever gets the partition
        next. (Lowering is for the last commit only: Faust has already forgotten the acknowledgements it commits.)"""
        loop = asyncio.get_running_loop()
        grace_until: float | None = None
        while True:
            waiting = [task for tp, offset in commit_offsets.items() for task in self._waiting_before(tp, offset)]
            if not waiting:
                break
            if stopping():
                grace_until = grace_until or loop.time() + STOPPING_GRACE_S
                if loop.time() >= grace_until:
                    break
            await asyncio.wait(waiting, timeout=0.5)
        for tp in list(commit_offsets):
            held = [source for source in self._pending.get(tp, {}) if source < commit_offsets[tp]]
            if held:
                log.warning("commit of %s lowered from %d to %d: records sent for it are not acknowledged",
                            tp, commit_offsets[tp], min(held))
                commit_offsets[tp] = min(held)



