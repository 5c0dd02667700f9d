"""The intake: one HTTP route per channel, answering 202 only once Kafka holds the report.

- 202 ``{"report_id": ...}``: the submission is valid and acknowledged by Kafka (acks=all).
- 422: the submission is invalid; ``detail`` lists each field and why (FastAPI's validation format).
- 413: the body is larger than the configured limit.
- 503 with ``Retry-After``: Kafka cannot take the record now; nothing was accepted.
- 200 ``{"report_id": ..., "status": "duplicate"}``: this submission id was already accepted; nothing is written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from producers.accepted_submissions import AcceptedSubmissions, IndexUnavailable, index_path
from producers.report_publisher import PublishError, ReportPublisher
from schemas.channels import Channel
from schemas.envelope import encode
from schemas.reports import report_id_for
from schemas.submission_channels import SUBMISSION_CHANNELS, SubmissionChannel
from schemas.submissions import BrigadeNumeriqueSubmission, MonCommissariatSubmission
from schemas.topics import Topics
from signalements import __version__
from signalements.kafka_link import KafkaLink
from signalements.metrics import PipelineMetrics, Stage
from signalements.service_loop import until_done
from signalements.settings import Settings
from streams.normalize import NormalizationError, normalize_submission

SOURCE = "/signalements/intake"
RETRY_AFTER_S = 5


class Accepted(BaseModel):
    report_id: str = Field(description="stable id of the report: the same submission always gets the same id")
    status: Literal["accepted"] = "accepted"


class Duplicate(BaseModel):
    report_id: str = Field(description="the id given when this submission id was first accepted")
    status: Literal["duplicate"] = "duplicate"


class Problem(BaseModel):
    detail: str


def create_intake_app(  # noqa: C901 (its routes are closures over the app's parts; to split in the redesign)
    settings: Settings,
    publisher: ReportPublisher,
    metrics: PipelineMetrics,
    accepted: AcceptedSubmissions | None = None,
) -> FastAPI:
    topics = Topics(settings.topic_namespace)
    if accepted is None:
        accepted = AcceptedSubmissions(
            index_path(settings.state_dir), settings.bootstrap_servers, topics, settings.intake_produce_timeout_s,
            publisher.link,
        )
    index = accepted
    link = publisher.link
    app = FastAPI(
        title="Signalements de points de deal: intake",
        version=__version__,
        description="Citizen reports of drug-dealing points from the police portal and Ma brigade numérique.",
    )

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method == "POST":
            declared = request.headers.get("content-length")
            too_big = declared is not None and declared.isdigit() and int(declared) > settings.intake_max_body_bytes
            if too_big or len(await request.body()) > settings.intake_max_body_bytes:
                channel = _bounded(request.url.path.rsplit("/", 1)[-1])
                metrics.records_in.labels(Stage.INTAKE.value, channel).inc()
                metrics.records_failed.labels(Stage.INTAKE.value, channel, "body_too_large").inc()
                return JSONResponse(
                    {"detail": f"body larger than {settings.intake_max_body_bytes} bytes"}, status_code=413
                )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def count_invalid(request: Request, error: RequestValidationError) -> Response:
        channel = _bounded(request.url.path.rsplit("/", 1)[-1])
        metrics.records_in.labels(Stage.INTAKE.value, channel).inc()
        unreadable = [e for e in error.errors() if e.get("type") == "json_invalid"]
        if unreadable:
            # Not a submission at all (FastAPI would say 422): the body does not parse as JSON.
            metrics.records_failed.labels(Stage.INTAKE.value, channel, "unreadable").inc()
            where = unreadable[0].get("ctx", {}).get("error", "invalid JSON")
            return JSONResponse({"detail": f"the body is not readable JSON: {where}"}, status_code=400)
        metrics.records_failed.labels(Stage.INTAKE.value, channel, "invalid").inc()
        return await request_validation_exception_handler(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def count_unreadable(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 400 and request.method == "POST":
            channel = _bounded(request.url.path.rsplit("/", 1)[-1])
            metrics.records_in.labels(Stage.INTAKE.value, channel).inc()
            metrics.records_failed.labels(Stage.INTAKE.value, channel, "unreadable").inc()
        return await http_exception_handler(request, error)

    def accept(spec: SubmissionChannel, submission: MonCommissariatSubmission | BrigadeNumeriqueSubmission) -> Response:
        channel, submission_id = spec.channel, spec.submission_id(submission)
        metrics.records_in.labels(Stage.INTAKE.value, channel.value).inc()
        started = time.perf_counter()
        accepted_at = datetime.now(UTC)
        try:
            # Refuse at the door what the stream could not normalize (bad phone number, coordinates abroad).
            normalize_submission(submission, accepted_at)
        except NormalizationError as error:
            metrics.records_failed.labels(Stage.INTAKE.value, channel.value, "invalid").inc()
            detail = [{"type": "value_error", "loc": ["body", *error.field.split(".")], "msg": error.reason}]
            return JSONResponse({"detail": detail}, status_code=422)
        report_id = report_id_for(channel, submission_id)
        try:
            index.ensure_caught_up()
            with index.claim(channel, submission_id) as claim:
                if claim.duplicate:
                    metrics.records_out.labels(Stage.INTAKE.value, channel.value, "duplicate").inc()
                    return JSONResponse(Duplicate(report_id=report_id).model_dump(), status_code=200)
                message = encode(
                    spec.event_type, submission, event_id=report_id, source=SOURCE, key=submission_id, time=accepted_at
                )
                produce_started = time.perf_counter()
                publisher.publish(spec.raw_topic(topics), message)
                metrics.intake_produce_duration.labels(channel.value).observe(time.perf_counter() - produce_started)
                index.mark_accepted(channel, submission_id)
        except (PublishError, IndexUnavailable) as error:
            index.require_catch_up()
            metrics.records_failed.labels(Stage.INTAKE.value, channel.value, "kafka_unavailable").inc()
            return JSONResponse(
                {"detail": f"not accepted, retry later: {error}"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        finally:
            metrics.stage_duration.labels(Stage.INTAKE.value).observe(time.perf_counter() - started)
        metrics.records_out.labels(Stage.INTAKE.value, channel.value, "accepted").inc()
        return JSONResponse(Accepted(report_id=report_id).model_dump(), status_code=202)

    responses: dict[int | str, dict[str, object]] = {
        400: {"model": Problem, "description": "the body is not readable JSON"},
        200: {"model": Duplicate, "description": "already accepted under this submission id: nothing written again"},
        202: {"model": Accepted, "description": "accepted: durably written to Kafka"},
        413: {"model": Problem, "description": "body too large"},
        503: {
            "model": Problem,
            "description": "Kafka unavailable; nothing was accepted: retry after the Retry-After delay",
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
        },
    }

    @app.post("/v1/reports/moncommissariat", status_code=202, response_model=Accepted, responses=responses)
    def submit_moncommissariat(submission: MonCommissariatSubmission) -> Response:
        """A report from the police portal (moncommissariat)."""
        return accept(SUBMISSION_CHANNELS[Channel.MONCOMMISSARIAT], submission)

    @app.post("/v1/reports/brigade-numerique", status_code=202, response_model=Accepted, responses=responses)
    def submit_brigade_numerique(submission: BrigadeNumeriqueSubmission) -> Response:
        """A report from a Ma brigade numérique conversation."""
        return accept(SUBMISSION_CHANNELS[Channel.BRIGADE_NUMERIQUE], submission)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", responses={200: {"description": "the process is alive (say nothing of Kafka)"}})
    def health() -> dict[str, str]:
        """Liveness: the intake answers. It stays alive while Kafka is away (and answers 503 to reports)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Problem, "description": "cut off from Kafka: reports get 503"}})
    def ready() -> Response:
        """Readiness: Kafka answered the intake's last exchange and its index of accepted ids is caught up."""
        if link.connected and index.caught_up:
            return JSONResponse({"status": "ready"})
        reason = link.reason if not link.connected else "reading the raw topics for accepted ids"
        return JSONResponse({"detail": f"not ready: {reason}"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    return app


def _bounded(channel: str) -> str:
    return channel if channel in {c.value for c in Channel} else "unknown"


def run_intake(settings: Settings) -> None:
    import uvicorn

    from signalements.topic_admin import ensure_topics, pipeline_topics

    metrics = PipelineMetrics()
    metrics.set_build_info(__version__)
    stop_refreshing = threading.Event()
    # The intake starts (and answers 503) while Kafka is away; its topics are created once Kafka answers.
    threading.Thread(
        target=until_done, args=(lambda: ensure_topics(settings, pipeline_topics(settings)),
                                 "creating the pipeline's topics", stop_refreshing),
        name="create-topics", daemon=True,
    ).start()
    link = KafkaLink(metrics.kafka_connected, "intake")
    publisher = ReportPublisher(settings.bootstrap_servers, settings.intake_produce_timeout_s, link)
    accepted = AcceptedSubmissions(
        index_path(settings.state_dir), settings.bootstrap_servers, Topics(settings.topic_namespace),
        settings.intake_produce_timeout_s, link,
    )
    try:
        accepted.ensure_caught_up()
    except IndexUnavailable:  # retried before the first acceptance; meanwhile requests get 503
        pass
    refresher = accepted.keep_refreshing(settings.intake_index_refresh_s, stop_refreshing)
    app = create_intake_app(settings, publisher, metrics, accepted)
    try:
        uvicorn.run(app, host=settings.intake_host, port=settings.intake_port, log_level="warning")
    finally:
        stop_refreshing.set()
        refresher.join(timeout=settings.intake_produce_timeout_s * 2)
        publisher.close()
        accepted.close()
