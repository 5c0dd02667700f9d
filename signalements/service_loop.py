"""Keep a service's Kafka-facing loop running through broker outages, until the service is asked to stop.

A session (a consumer and its poll loop, a reader of the reference topic) that fails is logged and, after a short
wait, started again from scratch with new clients; the wait grows to at most a few seconds, so a service is back
within seconds of its broker. Nothing but ``CannotContinue`` ends the loop early: the service then exits non-zero
with that message (a supervisor restarts it; an operator reads why).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_not_exception_type,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

MAX_WAIT_S = 5.0
T = TypeVar("T")


class CannotContinue(Exception):
    """A failure that retrying cannot mend (a configuration error, a store that refuses its schema)."""


def keep_running(session: Callable[[], None], stop: threading.Event, what: str,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
    """Run ``session`` (which returns once ``stop`` is set) again after each failure, until ``stop`` is set."""
    _retrying(stop, what, on_failure)(session)


def until_done(step: Callable[[], T], what: str, stop: threading.Event | None = None) -> T | None:
    """Run ``step`` until it succeeds once (e.g. create the topics once Kafka answers); None if stopped first."""
    result: T | None = _retrying(stop or threading.Event(), what, None)(step)
    return result


def _retrying(stop: threading.Event, what: str, on_failure: Callable[[BaseException], None] | None) -> Retrying:
    return Retrying(
        retry=retry_if_not_exception_type(CannotContinue),
        stop=lambda _: stop.is_set(),
        wait=wait_exponential_jitter(initial=0.5, max=MAX_WAIT_S),
        sleep=lambda seconds: None if stop.wait(seconds) else None,  # woken early by stop
        before_sleep=_report(what, on_failure),
        retry_error_callback=lambda _: None,  # stopped while waiting to retry: a normal end
        reraise=True,
    )


async def keep_running_async(session: Callable[[], Awaitable[None]], what: str,
                             on_failure: Callable[[BaseException], None] | None = None) -> None:
    """The same on an event loop: retried until cancelled (the service stopping) or ``CannotContinue``."""
    retrying = AsyncRetrying(
        retry=retry_if_not_exception_type((CannotContinue, asyncio.CancelledError)),
        wait=wait_exponential_jitter(initial=0.5, max=MAX_WAIT_S),
        before_sleep=_report(what, on_failure),
        reraise=True,
    )
    await retrying(session)


def _report(what: str, on_failure: Callable[[BaseException], None] | None) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if error is None:
            return
        if on_failure is not None:
            on_failure(error)
        wait = state.next_action.sleep if state.next_action else 0.0
        # The traceback once, on the first failure in a row; then one line per retry, so an outage stays readable.
        log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(error).__name__, error, wait,
                    exc_info=error if state.attempt_number == 1 else None)

    return before_sleep
