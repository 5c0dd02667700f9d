"""A Faust app whose consumer never skips input records after a rebalance or a restart, and never commits an
input offset before what the stages wrote for it is acknowledged (see streams/deliveries.py).

Why. After a rebalance or a restart, Faust recovers its tables while its consumer may already have fetched input
records; once recovery is done it seeks every input partition "to its committed offset" so that those records are
fetched again. Two things defeat that in faust-streaming 0.15.3 with aiokafka 0.14 (faust-streaming issues #216 and
#596 describe the same family of races), and both lost reports in this project's crash tests:

- aiokafka's ``seek_to_committed`` only moves partitions whose committed offset is above 0: a partition the group
  never committed (a worker killed before its first commit) keeps the position its fetcher had reached;
- Faust's fetch loop drops every record below the highest offset it has handed out (its "read offset"); a batch
  fetched before the seek and still being handed out after it raises that offset again, so the records fetched anew
  from the committed offset are dropped as already read.

What. (1) After Faust's seek, every input partition without a committed offset is moved to the start of its log, which
is what ``auto_offset_reset=earliest`` means for it. (2) The read offsets are kept for changelog partitions only
(Faust's table recovery relies on them), so an input record fetched again after a seek is always handed to the
stream. The price is that a record may be handed out twice around a rebalance; every stage is idempotent for exactly
that reason (deterministic event ids, the route stage's journal: see streams/case_tables.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, ClassVar

import faust
from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.transports import ConsumerT, TransportT

from streams.deliveries import Deliveries
from streams.stages import InputRecord

log = logging.getLogger(__name__)


class ChangelogReadOffsets(dict[Any, int | None]):
    """Faust's per-partition read offsets, remembered for changelog partitions only; None (nothing read) otherwise."""

    def __init__(self, is_changelog: Callable[[Any], bool]) -> None:
        super().__init__()
        self._is_changelog = is_changelog

    def __missing__(self, tp: Any) -> None:
        return None

    def __getitem__(self, tp: Any) -> int | None:
        return super().__getitem__(tp) if self._is_changelog(tp) else None

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        if self._is_changelog(tp):
            super().__setitem__(tp, offset)

    def update(self, other: Any = (), /, **_: Any) -> None:  # one body for dict's overloads
        items = other.items() if isinstance(other, Mapping) else other
        for tp, offset in items:
            self[tp] = offset


def committed_offset(app: faust.App, tp: TP) -> int | None:
    """The offset the worker last committed for ``tp`` (Faust keeps it with no public accessor)."""
    offset: int | None = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
    return offset


def partition_store(table: faust.types.TableT[Any, Any], partition: int) -> Any:
    """The RocksDB database of one partition of ``table`` (Faust's RocksDB store, no public accessor)."""
    return table.data._db_for_partition(partition)  # type: ignore[attr-defined]


def active_partition_stores(table: faust.types.TableT[Any, Any]) -> Iterable[Any]:
    """The RocksDB databases of the partitions this worker is active for."""
    stores: Iterable[Any] = table.data._dbs_for_actives()  # type: ignore[attr-defined]
    return stores


async def producer_knows_leaders(app: faust.App, topic: str, timeout_s: float) -> bool:
    """True once the worker's own producer (aiokafka) has a leader for every partition of ``topic``: a new queue the
    admin client sees with leaders may not be in the producer's metadata yet (NotLeaderForPartition was seen)."""
    client = app.producer._ensure_producer().client  # type: ignore[attr-defined]
    # The producer's metadata covers only the topics it was asked about: a topic it never sent to stays unknown.
    client.add_topic(topic)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        partitions = client.cluster.partitions_for_topic(topic)
        if partitions and all((client.cluster.leader_for_partition(TopicPartition(topic, p)) or -1) >= 0
                              for p in partitions):
            return True
        await client.force_metadata_update()
        await asyncio.sleep(0.1)
    return False


def input_record(event: faust.EventT) -> InputRecord:
    """The record Faust handed out, as the stages read it (streams/stages.py knows nothing of Faust)."""
    message = event.message
    headers = message.headers
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    return InputRecord(
        topic=message.topic, partition=message.partition, offset=message.offset, timestamp=message.timestamp,
        key=message.key, value=message.value, headers=pairs, tp=message.tp,
    )


class RewindingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await super().seek_to_committed()
        uncommitted = [
            TopicPartition(tp.topic, tp.partition)
            for tp, offset in committed.items()
            if not offset and not self.consumer._is_changelog_tp(tp)
        ]
        if uncommitted:
            await self.call_thread(self._ensure_consumer().seek_to_beginning, *uncommitted)
            log.info("rewound %d input partitions without a committed offset to their start: %s",
                     len(uncommitted), ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(uncommitted)))
        return committed


class RewindingConsumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = ChangelogReadOffsets(self._is_changelog_tp)

    async def _handle_attached(self, commit_offsets: Mapping[TP, int]) -> None:
        """Before an offset is committed, every record the stages wrote for the records below it is acknowledged
        (streams/deliveries.py); Faust's own wait here ignores failed sends."""
        await super()._handle_attached(commit_offsets)
        deliveries: Deliveries | None = getattr(self.app, "deliveries", None)
        if deliveries is not None:
            # Faust passes the very dict it commits next (_commit_tps): settle may lower it in place at stop.
            assert isinstance(commit_offsets, MutableMapping)
            await deliveries.settle(commit_offsets, stopping=lambda: bool(self.should_stop or self.app.should_stop))

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)


class RewindingTransport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = RewindingConsumer


class SignalementsApp(faust.App):
    """A Faust app on the rewinding transport whose commits wait for the stages' deliveries."""

    deliveries: Deliveries | None = None

    def _new_transport(self) -> TransportT:
        transport: Any = RewindingTransport(self.conf.broker_consumer, self)
        return transport
