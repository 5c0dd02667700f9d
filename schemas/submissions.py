"""What each citizen channel sends: the payloads of ``reports.raw.<channel>``.

The two channels have different shapes on purpose: moncommissariat is a structured web form whose place comes from
an address autocomplete; Ma brigade numérique is a conversation summarised by an operator, with local date-times and
free-text places. Both carry either a fixed dealing point or a delivery network.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

SubmissionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
# [0-9], not \d: \d also matches other scripts' digits ("٠١٢٣٤"), which are no French postcode.
Postcode = Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")]
CodeInsee = Annotated[str, StringConstraints(pattern=r"^([0-9]{5}|2[AB][0-9]{3})$")]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
FreeText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]


class Submission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActivityKind(StrEnum):
    """What the citizen saw, as the portal's drop-down lists it."""

    STREET_SALES = "street_sales"
    STASH = "stash"
    NEW_SPOT_AFTER_OPERATION = "new_spot_after_operation"
    HOME_DELIVERY = "home_delivery"
    OTHER = "other"


class MessagingPlatform(StrEnum):
    TELEGRAM = "telegram"
    SNAPCHAT = "snapchat"
    WHATSAPP = "whatsapp"
    SIGNAL = "signal"
    INSTAGRAM = "instagram"
    OTHER = "other"


# ---------------------------------------------------------------------------------------------------------------
# moncommissariat: the police web portal's form
# ---------------------------------------------------------------------------------------------------------------


class PortalAddress(Submission):
    """An address picked from the portal's autocomplete (Base Adresse Nationale fields)."""

    label: ShortText
    housenumber: Annotated[str, StringConstraints(max_length=16)] | None = None
    street: ShortText | None = None
    postcode: Postcode
    citycode: CodeInsee = Field(description="code INSEE of the commune")
    city: ShortText
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _both_coordinates_or_none(self) -> PortalAddress:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together")
        return self


class ReporterContact(Submission):
    """Optional, and only kept downstream when the citizen consents to be recontacted."""

    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)] | None = None
    phone: Annotated[str, StringConstraints(max_length=32)] | None = None
    consent_to_recontact: bool = False


class DeliveryContact(Submission):
    """How a delivery network is reached: a phone number and/or a messaging or social-network handle."""

    phone: Annotated[str, StringConstraints(max_length=32)] | None = None
    handle: Annotated[str, StringConstraints(max_length=64)] | None = None
    platform: MessagingPlatform | None = None

    @model_validator(mode="after")
    def _phone_or_handle(self) -> DeliveryContact:
        if not self.phone and not self.handle:
            raise ValueError("a delivery network needs a phone number or a handle")
        return self


class PortalDealingPoint(Submission):
    kind: Literal["dealing_point"]
    place: PortalAddress
    activity: ActivityKind
    days_seen: list[Annotated[str, StringConstraints(max_length=16)]] = Field(default_factory=list, max_length=7)
    hours_seen: Annotated[str, StringConstraints(max_length=100)] | None = None
    description: FreeText = ""


class PortalDeliveryNetwork(Submission):
    kind: Literal["delivery_network"]
    contact: DeliveryContact
    area_served: PortalAddress
    days_seen: list[Annotated[str, StringConstraints(max_length=16)]] = Field(default_factory=list, max_length=7)
    hours_seen: Annotated[str, StringConstraints(max_length=100)] | None = None
    description: FreeText = ""


class MonCommissariatSubmission(Submission):
    """A report sent by the police portal (moncommissariat)."""

    submission_id: SubmissionId
    submitted_at: AwareDatetime = Field(description="ISO 8601 with offset")
    report: Annotated[PortalDealingPoint | PortalDeliveryNetwork, Field(discriminator="kind")]
    reporter: ReporterContact | None = None


# ---------------------------------------------------------------------------------------------------------------
# Ma brigade numérique: the gendarmerie's conversational channel, summarised by an operator
# ---------------------------------------------------------------------------------------------------------------

LocalDateTime = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}$"),
    Field(description='Europe/Paris local time, "dd/mm/yyyy HH:MM"'),
]
GpsText = Annotated[
    str,
    StringConstraints(pattern=r"^ *-?[0-9]{1,2}(\.[0-9]+)? *, *-?[0-9]{1,3}(\.[0-9]+)? *$"),
    Field(description='"lat,lon" in decimal degrees'),
]


class ConversationPlace(Submission):
    description: FreeText = Field(default="", description="the place as the citizen described it")
    commune: ShortText | None = None
    postcode: Postcode | None = None
    gps: GpsText | None = None

    @model_validator(mode="after")
    def _locatable(self) -> ConversationPlace:
        if not (self.commune or self.postcode or self.gps):
            raise ValueError("a place needs a commune, a postcode or GPS coordinates")
        return self


class ConversationDealingPoint(Submission):
    kind: Literal["dealing_point"]
    place: ConversationPlace
    activity: ActivityKind = ActivityKind.STREET_SALES
    when_seen: Annotated[str, StringConstraints(max_length=200)] | None = None


class ConversationDeliveryNetwork(Submission):
    kind: Literal["delivery_network"]
    contact: DeliveryContact
    area_served: ConversationPlace
    when_seen: Annotated[str, StringConstraints(max_length=200)] | None = None


class BrigadeNumeriqueSubmission(Submission):
    """A report from a Ma brigade numérique conversation."""

    conversation_id: SubmissionId
    started_at: LocalDateTime
    reported_at: LocalDateTime
    report: Annotated[ConversationDealingPoint | ConversationDeliveryNetwork, Field(discriminator="kind")]
    transcript_excerpt: FreeText = ""
    reporter: ReporterContact | None = None

    @model_validator(mode="after")
    def _valid_local_times(self) -> BrigadeNumeriqueSubmission:
        for name in ("started_at", "reported_at"):
            try:
                datetime.strptime(getattr(self, name), "%d/%m/%Y %H:%M")
            except ValueError as error:
                raise ValueError(f"{name}: not a valid date-time: {error}") from error
        return self
