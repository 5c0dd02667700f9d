"""Replay an export file of submissions (JSON Lines or CSV) into the raw topics.

Each line is validated exactly as the intake validates a request (the channel's model, then normalization), then
written to ``reports.raw.<channel>`` as the intake would write it (same key, same CloudEvents envelope, acks=all).
Nothing is dropped silently: every line ends accepted, duplicate (its submission id is already on the raw topic, or
earlier in the file) or rejected with its line number and reason; duplicates and rejections go to a file beside the
summary.

Export formats:

- JSON Lines: one submission per line, either the submission itself (its channel is told by ``submission_id`` for
  moncommissariat or ``conversation_id`` for Ma brigade numérique) or ``{"channel": ..., "submission": {...}}``
  (what ``signalements generate`` writes).
- CSV: one submission per row; column names are dotted paths (``report.place.postcode``), an optional ``channel``
  column, empty cells are absent fields, and a cell starting with ``[`` or ``{`` is read as JSON (``days_seen``).
"""

from __future__ import annotations

import csv
import json
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from producers.accepted_submissions import AcceptedSubmissions, IndexUnavailable, index_path
from producers.report_publisher import PublishError, ReportPublisher
from schemas.channels import Channel
from schemas.envelope import encode
from schemas.reports import report_id_for
from schemas.submission_channels import SUBMISSION_CHANNELS
from schemas.submissions import BrigadeNumeriqueSubmission, MonCommissariatSubmission
from schemas.topics import Topics
from schemas.validation import describe_validation_error
from signalements.kafka_security import Role
from signalements.settings import Settings
from streams.normalize import NormalizationError, normalize_submission

SOURCE = "/signalements/replay"
# How many records may wait for their acknowledgement at once: enough to keep the broker busy, bounded so a broker
# that stops answering is noticed after a window, not after the whole file.
IN_FLIGHT_WINDOW = 500


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    VALID = "valid"  # dry run: would be accepted
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    FAILED = "failed"  # valid, but Kafka did not acknowledge it: replay the file again


class ExportLine(BaseModel):
    """One line of the export as read, before validation."""

    line: int
    text: str
    body: dict[str, Any] | None = None
    channel: Channel | None = None
    problem: str | None = None


@dataclass
class ReplaySummary:
    source: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=lambda: {outcome.value: 0 for outcome in Outcome})
    rejected_lines: list[int] = field(default_factory=list)
    rejected_file: str | None = None
    elapsed_s: float = 0.0

    def count(self, outcome: Outcome) -> None:
        self.counts[outcome.value] += 1

    @property
    def lines(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "lines": self.lines,
            **self.counts,
            "rejected_lines": self.rejected_lines[:100],
            "rejected_file": self.rejected_file,
            "elapsed_s": round(self.elapsed_s, 3),
        }


# -- reading the export -------------------------------------------------------------------------------------------


def read_export(path: Path) -> Iterator[ExportLine]:
    if path.suffix.lower() == ".csv":
        yield from _read_csv(path)
    else:
        yield from _read_json_lines(path)


def _read_json_lines(path: Path) -> Iterator[ExportLine]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, start=1):
            text = text.rstrip("\n")
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                yield ExportLine(line=number, text=text, problem=f"not JSON: {error.msg} at column {error.colno}")
                continue
            yield _with_channel(ExportLine(line=number, text=text), value)


def _read_csv(path: Path) -> Iterator[ExportLine]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            number = reader.line_num
            text = json.dumps(row, ensure_ascii=False)
            try:
                value = _nest(row)
            except ValueError as error:
                yield ExportLine(line=number, text=text, problem=str(error))
                continue
            yield _with_channel(ExportLine(line=number, text=text), value)


def _nest(row: dict[str | None, str | list[str] | None]) -> dict[str, Any]:
    """Dotted CSV columns to a nested submission; empty cells are absent fields."""
    nested: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None or isinstance(cell, list):
            raise ValueError("the row has more cells than the header has columns")
        if cell is None or cell == "":
            continue
        value: Any = cell
        if cell[:1] in "[{":
            try:
                value = json.loads(cell)
            except json.JSONDecodeError as error:
                raise ValueError(f"{column}: not JSON: {error.msg}") from error
        target = nested
        *parents, leaf = column.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"{column}: conflicts with another column")
        target[leaf] = value
    return nested


def _with_channel(line: ExportLine, value: Any) -> ExportLine:
    if not isinstance(value, dict):
        return line.model_copy(update={"problem": "a line must hold a JSON object"})
    if "submission" in value and "channel" in value:
        channel, body = value["channel"], value["submission"]
    else:
        channel = value.pop("channel", None)
        body = value
    if not isinstance(body, dict):
        return line.model_copy(update={"problem": "submission: must be a JSON object"})
    if channel is None:
        if "submission_id" in body:
            channel = Channel.MONCOMMISSARIAT.value
        elif "conversation_id" in body:
            channel = Channel.BRIGADE_NUMERIQUE.value
    try:
        return line.model_copy(update={"body": body, "channel": Channel(channel)})
    except ValueError:
        known = ", ".join(c.value for c in Channel)
        return line.model_copy(update={"problem": f"channel: unknown or missing (one of {known}, or a submission_id "
                                                  "or conversation_id field)"})


# -- validating a line exactly as the intake does ---------------------------------------------------------------

Submission = MonCommissariatSubmission | BrigadeNumeriqueSubmission


def validate_line(line: ExportLine) -> Submission | str:
    """The submission, or the reason it is refused (fields and why, never the content)."""
    if line.problem is not None or line.body is None or line.channel is None:
        return line.problem or "unreadable line"
    model = MonCommissariatSubmission if line.channel is Channel.MONCOMMISSARIAT else BrigadeNumeriqueSubmission
    try:
        submission: Submission = model.model_validate(line.body)
        normalize_submission(submission, datetime.now(UTC))
    except ValidationError as error:
        return describe_validation_error(error)
    except NormalizationError as error:
        return str(error)
    return submission


def submission_id_of(submission: Submission) -> str:
    return submission.submission_id if isinstance(submission, MonCommissariatSubmission) else submission.conversation_id


# -- the replay -------------------------------------------------------------------------------------------------


class RejectedLinesFile:
    """Duplicates, rejections and failures, one JSON object per line, with the original line for a later fix."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("w", encoding="utf-8")

    def write(self, line: ExportLine, outcome: Outcome, reason: str) -> None:
        entry = {"line": line.line, "outcome": outcome.value, "reason": reason, "content": line.text}
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._handle.close()


@dataclass
class _Pending:
    line: ExportLine
    channel: Channel
    submission_id: str
    future: FutureRecordMetadata


class ReplayRun:
    def __init__(self, settings: Settings, summary: ReplaySummary, rejects: RejectedLinesFile) -> None:
        self.topics = Topics(settings.topic_namespace)
        self.summary = summary
        self.rejects = rejects
        self.dry_run = summary.dry_run
        self.seen: set[tuple[Channel, str]] = set()
        self.pending: deque[_Pending] = deque()
        self.publisher: ReportPublisher | None = None
        self.index: AcceptedSubmissions | None = None
        if not self.dry_run:
            self.publisher = ReportPublisher(settings, Role.ADMIN, settings.intake_produce_timeout_s)
            self.index = AcceptedSubmissions(
                index_path(settings.state_dir), settings, Role.ADMIN, self.topics,
                settings.intake_produce_timeout_s,
            )
            self.index.ensure_caught_up()

    def take(self, line: ExportLine) -> None:
        checked = validate_line(line)
        if isinstance(checked, str):
            self._refuse(line, Outcome.REJECTED, checked)
            return
        assert line.channel is not None
        key = (line.channel, submission_id_of(checked))
        if key in self.seen or (self.index is not None and self.index.is_accepted(*key)):
            self._refuse(line, Outcome.DUPLICATE, f"submission id {key[1]} already accepted on {key[0].value}")
            return
        self.seen.add(key)
        if self.dry_run:
            self.summary.count(Outcome.VALID)
            return
        self._send(line, line.channel, key[1], checked)

    def _send(self, line: ExportLine, channel: Channel, submission_id: str, submission: Submission) -> None:
        assert self.publisher is not None
        message = encode(
            SUBMISSION_CHANNELS[channel].event_type, submission, event_id=report_id_for(channel, submission_id), source=SOURCE,
            key=submission_id, time=datetime.now(UTC),
        )
        try:
            future = self.publisher.publish_pipelined(self.topics.raw(channel), message)
        except PublishError as error:
            self._refuse(line, Outcome.FAILED, str(error))
            return
        self.pending.append(_Pending(line, channel, submission_id, future))
        while len(self.pending) > IN_FLIGHT_WINDOW:
            self._settle(self.pending.popleft())

    def _settle(self, pending: _Pending) -> None:
        assert self.publisher is not None and self.index is not None
        try:
            pending.future.get(timeout=self.publisher.timeout_s + 2)
        except KafkaError as error:
            self._refuse(pending.line, Outcome.FAILED, f"Kafka did not acknowledge the record: {error}")
            return
        self.index.mark_accepted(pending.channel, pending.submission_id)
        self.summary.count(Outcome.ACCEPTED)

    def finish(self) -> None:
        while self.pending:
            self._settle(self.pending.popleft())
        if self.publisher is not None:
            self.publisher.close()
        if self.index is not None:
            self.index.close()

    def _refuse(self, line: ExportLine, outcome: Outcome, reason: str) -> None:
        self.summary.count(outcome)
        if outcome is not Outcome.DUPLICATE:
            self.summary.rejected_lines.append(line.line)
        self.rejects.write(line, outcome, reason)


def replay_export(
    settings: Settings,
    source: Path,
    *,
    rate: float = 0.0,
    dry_run: bool = False,
    rejected_path: Path | None = None,
    show_progress: bool = True,
) -> ReplaySummary:
    """Load ``source`` into the raw topics (or only validate it, ``dry_run``) and say what became of each line."""
    started = time.monotonic()
    summary = ReplaySummary(source=str(source), dry_run=dry_run)
    rejected_path = rejected_path or source.with_name(source.name + ".rejected.jsonl")
    rejects = RejectedLinesFile(rejected_path)
    summary.rejected_file = str(rejected_path)
    try:
        run = ReplayRun(settings, summary, rejects)
    except IndexUnavailable as error:
        rejects.close()
        raise PublishError(str(error)) from error
    total = _count_lines(source)
    with _progress(show_progress) as progress:
        task = progress.add_task("dry run" if dry_run else "replay", total=total)
        for sent, line in enumerate(read_export(source)):
            if rate > 0:
                # Pace against the start, not the previous line, so the average rate holds despite hiccups.
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            run.take(line)
            progress.update(task, completed=summary.lines + len(run.pending))
        run.finish()
        progress.update(task, completed=summary.lines)
    rejects.close()
    summary.elapsed_s = time.monotonic() - started
    return summary


def _count_lines(source: Path) -> int:
    with source.open("rb") as handle:
        lines = sum(1 for raw in handle if raw.strip())
    return max(lines - 1, 0) if source.suffix.lower() == ".csv" else lines


def _progress(enabled: bool) -> Progress:
    # On stderr: stdout carries the JSON summary, for scripts.
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not enabled,
    )
