"""Run the stream worker: topics, metrics endpoint, then Faust's own worker loop until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import faust
from faust.tables.recovery import Recovery

from signalements import __version__
from signalements.kafka_link import KafkaLink, KafkaProbe, readiness_of
from signalements.kafka_security import Role, check_access
from signalements.metrics import PipelineMetrics
from signalements.service_loop import until_done
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics, wait_until_served
from streams.action_relay import ActionRelay
from streams.app import create_app
from streams.case_tables import changelog_topics
from streams.jurisdiction import JurisdictionReference


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    # Faust creates its data directory but not the parents: a new machine's state directory may not exist yet.
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    check_access(settings, Role.WORKER)  # a refused credential is a configuration error: said at once, never retried
    reference = JurisdictionReference.from_settings(settings)
    metrics = PipelineMetrics()
    metrics.set_build_info(__version__, reference.version)
    link = KafkaLink(metrics.kafka_connected, "worker")
    KafkaProbe(settings, Role.WORKER, link).start()
    metrics.serve(settings.metrics_host, settings.worker_metrics_port, readiness_of(link))
    # A worker started before its broker waits for it (and says so) instead of exiting.
    topics = {**pipeline_topics(settings), **changelog_topics(settings)}
    until_done(lambda: ensure_topics(settings, Role.WORKER, topics), "creating the pipeline's topics")
    until_done(lambda: wait_until_served(settings, Role.WORKER, list(topics)), "waiting for the broker to serve the topics")
    app = create_app(settings, metrics, reference)
    # The units' actions (handled, transferred) reach their queues through the worker: a unit writes no queue.
    ActionRelay(settings, link).start(threading.Event())
    logging.getLogger(__name__).info(
        "worker %s on %s, metrics on %s:%d",
        settings.worker_id, settings.bootstrap_servers, settings.metrics_host, settings.worker_metrics_port,
    )
    # Made here, on the event loop's thread (Faust would make it later on the same thread): made on another thread,
    # it would belong to no loop and the worker would never recover. The reporting thread only reads it.
    recovery: Recovery = app.tables.recovery  # type: ignore[attr-defined]  # Faust's TableManager has it
    threading.Thread(
        target=report_recovery_progress, args=(recovery, metrics), name="recovery-progress", daemon=True
    ).start()
    state_after_unclean_stop(app)
    try:
        faust_worker(app, loglevel).execute_from_commandline()
    except SystemExit as stop:
        if stop.code in (0, None):
            clean_stop_marker(app).touch()
        raise


# Written by a worker that stopped cleanly (its changelog writes flushed and acknowledged), removed at start.
CLEAN_STOP_MARKER = "stopped-cleanly"


def clean_stop_marker(app: faust.App) -> Path:
    return Path(app.conf.datadir) / CLEAN_STOP_MARKER


def state_after_unclean_stop(app: faust.App) -> None:
    """After a crash (kill -9, OOM, a power cut) the local RocksDB may hold writes the changelog never received: on
    start, Faust reads the changelog from the last offset it saw acknowledged and writes that tail over the newer
    local values, so a key holds a value older than the keys around it (the fault test lost a merged report so:
    its report id was marked seen, its case rolled back to the value before it). So after an unclean stop the local
    tables are dropped and rebuilt from the changelog alone, a consistent prefix of the writes
    (streams/route_journal.py then decides again what the prefix lacks). After a clean stop they are kept.
    """
    marker = clean_stop_marker(app)
    tables = Path(app.conf.tabledir)
    if marker.exists():
        marker.unlink()
    elif tables.exists() and any(tables.iterdir()):
        logging.getLogger(__name__).warning(
            "the worker did not stop cleanly last time: its local tables in %s are rebuilt from the changelog", tables,
        )
        shutil.rmtree(tables)


def faust_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """Faust's worker without its terminal spinner: at WARN and above, the spinner sets the root logger to DEBUG so
    that it spins on every record, and the worker then runs 2.6 times slower formatting messages nobody sees."""
    worker = faust.Worker(app, loglevel=loglevel)
    worker.spinner = None
    return worker


def report_recovery_progress(recovery: Recovery, metrics: PipelineMetrics) -> None:
    """Every second, the changelog records still to read. A thread of its own: Faust runs no timer while it reads
    its changelogs at start-up, which is when an operator most wants to see the progress."""
    while True:
        time.sleep(1.0)
        try:
            active, standby = recovery.active_remaining_total(), recovery.standby_remaining_total()
        except RuntimeError:  # a rebalance resized the offset maps while they were read: read again next second
            continue
        metrics.recovery_remaining.labels("active").set(active)
        metrics.recovery_remaining.labels("standby").set(standby)
