"""The worker's log level is the one asked for: Faust's terminal spinner would set the root logger to DEBUG at WARN
and above (the worker then runs 2.6 times slower), so the project's worker runs without it."""

from __future__ import annotations

import logging

import faust
import pytest

from streams.worker import faust_worker


@pytest.mark.parametrize("level", ["warning", "error", "info"])
def test_the_worker_logs_at_the_level_asked_for_never_at_debug(level: str) -> None:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        worker = faust_worker(faust.App(f"tests-logging-{level}", broker="kafka://127.0.0.1:9"), level)
        worker._setup_logging()  # noqa: SLF001 (what mode.Worker does first when it starts; it has no public name)
        assert root.level == logging.getLevelName(level.upper())
        assert not [handler for handler in root.handlers if handler.level == logging.DEBUG]
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_faust_alone_would_turn_debug_on_at_warning() -> None:
    """What the test above guards against, seen with Faust's own worker (if Faust changes, this says so)."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        faust.Worker(faust.App("tests-logging-faust", broker="kafka://127.0.0.1:9"), loglevel="warning")._setup_logging()  # noqa: SLF001
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
