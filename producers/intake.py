"""The intake: one HTTP route per channel, answering 202 only once Kafka holds the report.

- 202 ``{"report_id": ...}``: the submission is valid and acknowledged by Kafka (acks=all).
- 422: the submission is invalid; ``detail`` lists each field and why (FastAPI's validation format).
- 413: the body is larger than the configured limit.
- 503 with ``Retry-After``: Kafka cannot take the record now; nothing was accepted.
- 200 ``{"report_id": ..., "status": "duplicate"}``: this submission id was already accepted; nothing is written.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

from fastapi import FastAPI, Request, Response, Security
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from producers.accepted_submissions import AcceptedSubmissions, IndexUnavailable, index_path
from producers.intake_clients import API_KEY_HEADER, ClientRates, IntakeClients
from producers.report_publisher import PublishError, ReportPublisher
from schemas.channels import Channel
from schemas.envelope import encode
from schemas.reports import report_id_for
from schemas.submission_channels import SUBMISSION_CHANNELS, SubmissionChannel
from schemas.submissions import BrigadeNumeriqueSubmission, MonCommissariatSubmission
from schemas.topics import Topics
from signalements import __version__
from signalements.kafka_link import KafkaLink
from signalements.kafka_security import Role, check_access
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


class SubmissionIntake:
    """What the intake does with one valid submission: refuse what the stream could not normalize, recognise a
    submission id already accepted, and answer 202 only once Kafka acknowledged the record."""

    def __init__(self, settings: Settings, publisher: ReportPublisher, metrics: PipelineMetrics,
                 index: AcceptedSubmissions) -> None:
        self.topics = Topics(settings.topic_namespace)
        self.publisher = publisher
        self.metrics = metrics
        self.index = index

    def accept(self, spec: SubmissionChannel, submission: MonCommissariatSubmission | BrigadeNumeriqueSubmission,
               ) -> Response:
        channel = spec.channel.value
        self.metrics.records_in.labels(Stage.INTAKE.value, channel).inc()
        started = time.perf_counter()
        try:
            outcome, response = self._accept(spec, submission)
        except (PublishError, IndexUnavailable) as error:
            self.index.require_catch_up()
            outcome, response = "kafka_unavailable", JSONResponse(
                {"detail": f"not accepted, retry later: {error}"}, status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        finally:
            self.metrics.stage_duration.labels(Stage.INTAKE.value).observe(time.perf_counter() - started)
        counter = self.metrics.records_out if outcome in ("accepted", "duplicate") else self.metrics.records_failed
        counter.labels(Stage.INTAKE.value, channel, outcome).inc()
        return response

    def _accept(self, spec: SubmissionChannel, submission: MonCommissariatSubmission | BrigadeNumeriqueSubmission,
                ) -> tuple[str, Response]:
        channel, submission_id = spec.channel, spec.submission_id(submission)
        accepted_at = datetime.now(UTC)
        try:
            # Refuse at the door what the stream could not normalize (bad phone number, coordinates abroad).
            normalize_submission(submission, accepted_at)
        except NormalizationError as error:
            detail = [{"type": "value_error", "loc": ["body", *error.field.split(".")], "msg": error.reason}]
            return "invalid", JSONResponse({"detail": detail}, status_code=422)
        report_id = report_id_for(channel, submission_id)
        self.index.ensure_caught_up()
        with self.index.claim(channel, submission_id) as claim:
            if claim.duplicate:
                return "duplicate", JSONResponse(Duplicate(report_id=report_id).model_dump(), status_code=200)
            message = encode(
                spec.event_type, submission, event_id=report_id, source=SOURCE, key=submission_id, time=accepted_at
            )
            produce_started = time.perf_counter()
            self.publisher.publish(spec.raw_topic(self.topics), message)
            self.metrics.intake_produce_duration.labels(channel.value).observe(time.perf_counter() - produce_started)
            self.index.mark_accepted(channel, submission_id)
        return "accepted", JSONResponse(Accepted(report_id=report_id).model_dump(), status_code=202)

    def readiness(self) -> Response:
        """Ready: Kafka answered the intake's last exchange and its index of accepted ids is caught up."""
        link = self.publisher.link
        if link.connected and self.index.caught_up:
            return JSONResponse({"status": "ready"})
        reason = link.reason if not link.connected else "reading the raw topics for accepted ids"
        return JSONResponse({"detail": f"not ready: {reason}"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})


RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": Problem, "description": "the body is not readable JSON"},
    401: {"model": Problem, "description": f"no {API_KEY_HEADER} header, or a key no client holds: nothing written"},
    403: {"model": Problem, "description": "this client may not post to this channel: nothing written"},
    429: {"model": Problem, "description": "this client is over its rate: nothing written; retry after Retry-After",
          "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}},
    200: {"model": Duplicate, "description": "already accepted under this submission id: nothing written again"},
    202: {"model": Accepted, "description": "accepted: durably written to Kafka"},
    413: {"model": Problem, "description": "body too large"},
    503: {
        "model": Problem,
        "description": "Kafka unavailable; nothing was accepted: retry after the Retry-After delay",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    },
}


def create_intake_app(
    settings: Settings,
    publisher: ReportPublisher,
    metrics: PipelineMetrics,
    accepted: AcceptedSubmissions | None = None,
) -> FastAPI:
    index = accepted or AcceptedSubmissions(
        index_path(settings.state_dir), settings, Role.INTAKE, Topics(settings.topic_namespace),
        settings.intake_produce_timeout_s, publisher.link,
    )
    intake = SubmissionIntake(settings, publisher, metrics, index)
    app = FastAPI(
        title="Signalements de points de deal: intake",
        version=__version__,
        description="Citizen reports of drug-dealing points from the police portal and Ma brigade numérique.",
    )
    limit_body_size(app, settings.intake_max_body_bytes, metrics)
    count_refused_bodies(app, metrics)
    # Added last, so it runs first: an unauthenticated request learns nothing about its body.
    require_client_keys(app, IntakeClients(settings.intake_clients_path), metrics,
                        ClientRates(settings.intake_client_rate_per_s, settings.intake_client_burst))
    authenticated = [Security(API_KEY)]

    @app.post("/v1/reports/moncommissariat", status_code=202, response_model=Accepted, responses=RESPONSES,
              dependencies=authenticated)
    def submit_moncommissariat(submission: MonCommissariatSubmission) -> Response:
        """A report from the police portal (moncommissariat)."""
        return intake.accept(SUBMISSION_CHANNELS[Channel.MONCOMMISSARIAT], submission)

    @app.post("/v1/reports/brigade-numerique", status_code=202, response_model=Accepted, responses=RESPONSES,
              dependencies=authenticated)
    def submit_brigade_numerique(submission: BrigadeNumeriqueSubmission) -> Response:
        """A report from a Ma brigade numérique conversation."""
        return intake.accept(SUBMISSION_CHANNELS[Channel.BRIGADE_NUMERIQUE], submission)

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
        return intake.readiness()

    return app


# Declares the scheme in the OpenAPI document; ``require_client_keys`` enforces it, before the body is read.
API_KEY = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="IntakeClientKey",
                       description="the integrated client's API key (`signalements intake-clients add`)")


def require_client_keys(app: FastAPI, clients: IntakeClients, metrics: PipelineMetrics, rates: ClientRates) -> None:
    """401 without a known key, 403 for a channel the client may not post to, 429 past the client's rate; counted
    by client and reason."""

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method != "POST" or not request.url.path.startswith("/v1/reports/"):
            return await call_next(request)
        channel = _bounded(request.url.path.rsplit("/", 1)[-1])
        key = request.headers.get(API_KEY_HEADER)
        client = clients.identify(key) if key else None
        if client is None:
            reason = "missing_key" if not key else "unknown_key"
            metrics.intake_auth_refused.labels("unknown", channel, reason).inc()
            count_refused(metrics, request, "unauthenticated")
            return JSONResponse(
                {"detail": f"no {API_KEY_HEADER} header" if not key else f"this {API_KEY_HEADER} is not a client's"},
                status_code=401, headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'})
        if channel not in {c.value for c in client.channels}:
            metrics.intake_auth_refused.labels(client.name, channel, "channel_not_allowed").inc()
            count_refused(metrics, request, "forbidden")
            return JSONResponse({"detail": f"client {client.name} may not post to {channel}"}, status_code=403)
        wait_s = rates.take(client.name)
        if wait_s > 0:
            metrics.intake_auth_refused.labels(client.name, channel, "rate_limited").inc()
            count_refused(metrics, request, "rate_limited")
            return JSONResponse({"detail": f"client {client.name} is over its rate: retry later"}, status_code=429,
                                headers={"Retry-After": str(max(1, math.ceil(wait_s)))})
        return await call_next(request)


def limit_body_size(app: FastAPI, max_bytes: int, metrics: PipelineMetrics) -> None:
    """413 for a body over ``max_bytes``, declared or sent, counted as a refused record of its channel."""

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method == "POST":
            declared = request.headers.get("content-length")
            too_big = declared is not None and declared.isdigit() and int(declared) > max_bytes
            if too_big or len(await request.body()) > max_bytes:
                count_refused(metrics, request, "body_too_large")
                return JSONResponse({"detail": f"body larger than {max_bytes} bytes"}, status_code=413)
        return await call_next(request)


def count_refused_bodies(app: FastAPI, metrics: PipelineMetrics) -> None:
    """A body that is not JSON gets 400 (FastAPI would say 422), an invalid submission 422 with each field and
    why; both are counted as refused records of their channel."""

    @app.exception_handler(RequestValidationError)
    async def count_invalid(request: Request, error: RequestValidationError) -> Response:
        unreadable = [e for e in error.errors() if e.get("type") == "json_invalid"]
        if unreadable:
            count_refused(metrics, request, "unreadable")
            where = unreadable[0].get("ctx", {}).get("error", "invalid JSON")
            return JSONResponse({"detail": f"the body is not readable JSON: {where}"}, status_code=400)
        count_refused(metrics, request, "invalid")
        return await request_validation_exception_handler(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def count_unreadable(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 400 and request.method == "POST":
            count_refused(metrics, request, "unreadable")
        return await http_exception_handler(request, error)


def count_refused(metrics: PipelineMetrics, request: Request, reason: str) -> None:
    channel = _bounded(request.url.path.rsplit("/", 1)[-1])
    metrics.records_in.labels(Stage.INTAKE.value, channel).inc()
    metrics.records_failed.labels(Stage.INTAKE.value, channel, reason).inc()


def _bounded(channel: str) -> str:
    return channel if channel in {c.value for c in Channel} else "unknown"


def run_intake(settings: Settings) -> None:
    import uvicorn

    from signalements.topic_admin import ensure_topics, raw_topics

    check_access(settings, Role.INTAKE)  # a refused credential is a configuration error: said at once, never retried
    metrics = PipelineMetrics()
    metrics.set_build_info(__version__)
    stop_refreshing = threading.Event()
    # The intake starts (and answers 503) while Kafka is away; its topics are created once Kafka answers.
    threading.Thread(
        target=until_done, args=(lambda: ensure_topics(settings, Role.INTAKE, raw_topics(settings)),
                                 "creating the raw topics", stop_refreshing),
        name="create-topics", daemon=True,
    ).start()
    link = KafkaLink(metrics.kafka_connected, "intake")
    publisher = ReportPublisher(settings, Role.INTAKE, settings.intake_produce_timeout_s, link)
    accepted = AcceptedSubmissions(
        index_path(settings.state_dir), settings, Role.INTAKE, Topics(settings.topic_namespace),
        settings.intake_produce_timeout_s, link,
    )
    try:
        accepted.ensure_caught_up()
    except IndexUnavailable:  # retried before the first acceptance; meanwhile requests get 503
        pass
    refresher = accepted.keep_refreshing(settings.intake_index_refresh_s, stop_refreshing)
    app = create_intake_app(settings, publisher, metrics, accepted)
    try:
        # TLS when given a certificate; otherwise plain HTTP, for a loopback or a network only the portals reach.
        certificate, key = settings.intake_tls_certfile, settings.intake_tls_keyfile
        uvicorn.run(app, host=settings.intake_host, port=settings.intake_port, log_level="warning",
                    ssl_certfile=str(certificate) if certificate else None, ssl_keyfile=str(key) if key else None)
    finally:
        stop_refreshing.set()
        refresher.join(timeout=settings.intake_produce_timeout_s * 2)
        publisher.close()
        accepted.close()
