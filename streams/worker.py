"""Run the stream worker: topics, metrics endpoint, then Faust's own worker loop until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

import faust

from signalements import __version__
from signalements.metrics import PipelineMetrics
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics
from streams.app import create_app
from streams.jurisdiction import JurisdictionReference


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    ensure_topics(settings, pipeline_topics(settings))
    reference = JurisdictionReference.from_settings(settings)
    metrics = PipelineMetrics()
    metrics.set_build_info(__version__, reference.version)
    metrics.serve(settings.metrics_host, settings.worker_metrics_port)
    app = create_app(settings, metrics, reference)
    logging.getLogger(__name__).info(
        "worker %s on %s, metrics on %s:%d",
        settings.worker_id, settings.bootstrap_servers, settings.metrics_host, settings.worker_metrics_port,
    )
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()
