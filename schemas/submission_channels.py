"""The one registry of what differs between the two citizen channels: the submission model and its event type, the
field holding the channel's own submission id, and the raw topic the intake writes it to. Every place that handles
a submission by channel reads it here."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from pydantic import BaseModel

from schemas.channels import Channel
from schemas.envelope import BRIGADE_NUMERIQUE_SUBMISSION, MONCOMMISSARIAT_SUBMISSION, EventType
from schemas.topics import Topics


@dataclass(frozen=True)
class SubmissionChannel:
    channel: Channel
    event_type: EventType
    id_field: str  # the channel's own id of a submission, from which the report id is derived

    @property
    def model(self) -> type[BaseModel]:
        return self.event_type.model

    def submission_id(self, submission: BaseModel) -> str:
        return str(getattr(submission, self.id_field))

    def raw_topic(self, topics: Topics) -> str:
        return topics.raw(self.channel)


SUBMISSION_CHANNELS: MappingProxyType[Channel, SubmissionChannel] = MappingProxyType({
    Channel.MONCOMMISSARIAT: SubmissionChannel(Channel.MONCOMMISSARIAT, MONCOMMISSARIAT_SUBMISSION, "submission_id"),
    Channel.BRIGADE_NUMERIQUE: SubmissionChannel(
        Channel.BRIGADE_NUMERIQUE, BRIGADE_NUMERIQUE_SUBMISSION, "conversation_id"),
})


def channel_of_raw_topic(topics: Topics) -> dict[str, SubmissionChannel]:
    """Raw topic name → its channel, for a consumer of every raw topic."""
    return {spec.raw_topic(topics): spec for spec in SUBMISSION_CHANNELS.values()}
