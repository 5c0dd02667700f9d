"""Why a record was not processed: one vocabulary for dead letters, parked events and the failure metrics.

A dead letter's ``ce_dlqreasoncode``, a parked event's ``reason_code`` and the ``reason`` label of
``signalements_stage_records_failed_total`` / ``signalements_consumer_parked_events_total`` take these values, and
the AsyncAPI document lists them from here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ReasonCode(StrEnum):
    INVALID_ENVELOPE = "invalid_envelope"  # CloudEvents attributes missing or malformed
    UNSUPPORTED_SCHEMA = "unsupported_schema"  # a ce_dataschema version this reader does not know
    UNEXPECTED_EVENT_TYPE = "unexpected_event_type"  # a known event on a topic where it does not belong
    INVALID_PAYLOAD = "invalid_payload"  # the payload does not match its model
    NORMALIZATION = "normalization"  # a valid submission the normalization refuses (a field and why)
    INTERNAL_ERROR = "internal_error"  # a bug: the record is kept for a redrive once it is fixed
    WRONG_UNIT = "wrong_unit"  # a case event addressed to another unit than the queue's


# What the worker writes on reports.dlq (a schema it does not read is an envelope it cannot take).
DEAD_LETTER_REASONS: Final = (ReasonCode.INVALID_ENVELOPE, ReasonCode.INVALID_PAYLOAD, ReasonCode.NORMALIZATION,
                              ReasonCode.UNEXPECTED_EVENT_TYPE, ReasonCode.INTERNAL_ERROR,
                              ReasonCode.WRONG_UNIT)  # an action a unit may not take (streams/action_relay.py)
# What a unit consumer parks (and the national statistics leave uncounted).
PARK_REASONS: Final = (ReasonCode.INVALID_ENVELOPE, ReasonCode.UNSUPPORTED_SCHEMA, ReasonCode.UNEXPECTED_EVENT_TYPE,
                       ReasonCode.INVALID_PAYLOAD, ReasonCode.WRONG_UNIT)
