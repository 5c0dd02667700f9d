"""The Faust stream worker's wiring: the app, its topics, one agent per stage (streams/stages.py), each feeding
the stage runner (streams/stage_runner.py) with the records Faust hands out, and the route stage's tables.

Values stay JSON bytes (Faust has no pydantic codec) and are validated with pydantic in each stage.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import faust

from schemas.topics import Topics
from signalements.kafka_clients import bootstrap_list
from signalements.kafka_security import Role, credential_for, tls_context
from signalements.metrics import PipelineMetrics
from signalements.reporter_sealing import ContactSealer
from signalements.service_loop import CannotContinue, keep_running_async
from signalements.settings import Settings
from signalements.topic_admin import pipeline_topics
from streams.case_tables import CaseRouter, identifier_secret, is_route_tick
from streams.deliveries import PRODUCER_METADATA_TIMEOUT_S, Deliveries, UnitQueues
from streams.jurisdiction import JurisdictionReference
from streams.offset_rewind import SignalementsApp, input_record, producer_knows_leaders
from streams.reference_table import ReferenceFollower
from streams.stage_runner import CaseEventWriter, Handoff, StageRunner
from streams.stages import Enrich, Normalize, Route, StageStep
from streams.worker_cipher import DeliverySeal

log = logging.getLogger(__name__)


def faust_credentials(settings: Settings, role: str) -> faust.SASLCredentials | None:
    """The worker's principal for Faust's consumer, producer and admin client (they share one set of credentials)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    credential = credential_for(settings, role)
    return faust.SASLCredentials(
        username=credential.username, password=credential.password, ssl_context=tls_context(settings),
        mechanism=settings.kafka_sasl_mechanism,
    )


def create_app(settings: Settings, metrics: PipelineMetrics, reference: JurisdictionReference) -> faust.App:
    topics = Topics(settings.topic_namespace)
    app = SignalementsApp(
        settings.consumer_group(settings.worker_id),
        broker=[f"kafka://{server}" for server in bootstrap_list(settings.bootstrap_servers)],
        broker_credentials=faust_credentials(settings, Role.WORKER),
        store="rocksdb://",
        datadir=str(settings.state_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        producer_acks=-1,
        broker_commit_interval=settings.worker_commit_interval_s,
        broker_session_timeout=settings.worker_session_timeout_s,
        producer_linger=settings.worker_producer_linger_s,
        broker_max_poll_records=settings.worker_max_poll_records,
        stream_buffer_maxsize=settings.worker_stream_buffer_maxsize,
        consumer_auto_offset_reset="earliest",
        # Each raw topic has its own consumer offsets; nothing in the skeleton needs co-partitioned joins yet.
        topic_disable_leader=True,
        # Each worker keeps a standby copy of another's deduplication state: a takeover then reads no changelog.
        table_standby_replicas=1,
    )
    # What the stages write goes through deliveries (streams/deliveries.py), never through Faust's attached sends.
    # The fixed topics exist before the worker starts; a unit queue is made ready before its first record.
    queues = UnitQueues(settings, ready=set(pipeline_topics(settings)),
                        producer_knows=lambda topic: producer_knows_leaders(app, topic, PRODUCER_METADATA_TIMEOUT_S))
    deliveries = Deliveries(app, queues)
    app.deliveries = deliveries
    runner = StageRunner(topics, metrics, deliveries)

    # The competence table, held by every worker: all of the compacted reference topic, then its live changes.
    follower = ReferenceFollower(
        settings, topics.reference_competence, reference,
        on_outcome=lambda outcome: metrics.reference_updates.labels(outcome).inc(),
    )

    @app.task
    async def follow_reference() -> None:
        # Through a broker outage the follower starts again (reading the compacted topic again is harmless).
        try:
            await keep_running_async(follower.run, "following the reference topic")
        except CannotContinue as error:
            await app.crash(error)
            raise

    def topic(*names: str) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw")

    raw_topic, normalized_topic, enriched_topic = topic(*topics.raw_all), topic(topics.normalized), topic(topics.enriched)
    case_router = CaseRouter(app, settings, metrics, enriched_topic, CaseEventWriter(topics, metrics, deliveries))
    secret = identifier_secret(settings)
    delivery_seal = DeliverySeal(secret)
    normalize = Normalize(topics, ContactSealer.load(settings.reporter_keys_path, secret).protect, delivery_seal)
    enrich = Enrich(topics, reference, follower.caught_up.wait,
                    on_unrouted=lambda reason: metrics.unrouted.labels(reason).inc(),
                    on_position_outside=lambda channel: metrics.positions_outside_commune.labels(channel).inc())
    route = Route(case_router, delivery_seal)

    # A raw submission is normalized and enriched in one agent (the canonical report handed over in process, never
    # through Kafka); reports.normalized still feeds the enrich agent with the unrouted reports sent back by redrive.
    app.agent(raw_topic, name=normalize.stage.value)(stage_agent(normalize, runner, Handoff(topics.normalized, enrich)))
    app.agent(normalized_topic, name=enrich.stage.value)(stage_agent(enrich, runner))
    app.agent(enriched_topic, name=route.stage.value)(stage_agent(route, runner, router=case_router))
    return app


def stage_agent(step: StageStep, runner: StageRunner, handoff: Handoff | None = None,
                router: CaseRouter | None = None) -> Callable[[faust.StreamT], Awaitable[None]]:
    """A Faust agent that hands each record to the stage runner (and what it writes for ``handoff`` to the next
    stage, in process); the route stage's control records (flush and sweep ticks) go to its router instead."""

    async def run_stage(stream: faust.StreamT) -> None:
        async for event in stream.events():
            record = input_record(event)
            if router is not None and is_route_tick(record.headers):
                await router.on_tick(record)
            else:
                await runner.run(step, record, handoff)

    return run_stage
