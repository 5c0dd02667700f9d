"""The canonical report both channels are normalized into, and what the pipeline adds to it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.channels import Channel, Force, ReportKind
from schemas.identifiers import REPORT_ID_NAMESPACE, stable_id
from schemas.submissions import ActivityKind, CodeInsee, MessagingPlatform, Postcode

E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]


def report_id_for(channel: Channel, submission_id: str) -> str:
    # The same submission always gets the same id, whoever sends it and however often.
    return stable_id(REPORT_ID_NAMESPACE, channel.value, submission_id)


class Canonical(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Place(Canonical):
    """Where the dealing happens, or the area a delivery network serves."""

    street_address: str | None = Field(default=None, description="normalized: house number and street, lower case")
    description: str | None = Field(default=None, description="the place in the citizen's words (conversations)")
    postcode: Postcode | None = None
    commune_code: CodeInsee | None = Field(
        default=None,
        description="code INSEE given by the channel, or derived for a Paris, Lyon or Marseille arrondissement",
    )
    commune_name: str | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


def _absent(value: object) -> bool:
    return value is None


class DeliveryNetwork(Canonical):
    """The delivery network's identifiers: in clear on a unit's queue, the one place its officers read them; sealed
    on the worker's internal topics (``sealed`` then holds them, and ``phone_e164`` and ``handle`` are absent)."""

    phone_e164: E164 | None = None
    handle: str | None = Field(default=None, description="lower case, without the leading @")
    platform: MessagingPlatform | None = None
    # Left out of the JSON when absent: case events, which never carry it, keep the shape their readers know.
    sealed: str | None = Field(
        default=None, exclude_if=_absent,
        description="internal topics only: base64 of the phone number and handle, AES-256-GCM under the worker's "
                    "key, bound to the report id; never on a unit queue",
    )


class ReporterContact(Canonical):
    """A consenting reporter's contact in clear: it exists only inside the worker's normalization (sealed at once)
    and inside the unit's consumer or desk that opens it; no topic past the raw ones carries it."""

    email: str | None = None
    phone_e164: E164 | None = None


class SealedContact(Canonical):
    """The contact sealed for one force: a libsodium sealed box (X25519 and XSalsa20-Poly1305) of its JSON, which
    only the holder of that force's private key ``key_id`` can open, and nobody can alter unnoticed."""

    force: Force
    key_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,40}$", description="which of the force's keys (rotation)")
    sealed: str = Field(description="base64 of the sealed box")


class Reporter(Canonical):
    """Kept only when the citizen consented to be recontacted: sealed for each force, never in clear."""

    contact_hash: str = Field(pattern=r"^[0-9a-f]{32}$",
                              description="keyed hash (HMAC) of the contact: the same person's reports match")
    sealed: list[SealedContact] = Field(min_length=1)

    def for_force(self, force: Force) -> SealedContact | None:
        return next((contact for contact in self.sealed if contact.force == force), None)


class CanonicalReport(Canonical):
    report_id: str = Field(description="uuid5 of channel and submission id: stable across retries and replays")
    channel: Channel
    submission_id: str
    submitted_at: AwareDatetime = Field(description="when the citizen submitted, UTC")
    received_at: AwareDatetime = Field(description="when the intake accepted it (the raw event's time), UTC")
    kind: ReportKind
    activity: ActivityKind | None = None
    place: Place
    delivery: DeliveryNetwork | None = None
    when_seen: str | None = None
    description: str = ""
    reporter: Reporter | None = None


class ResolutionMethod(StrEnum):
    """How the commune was found, in the order they are tried."""

    CODE_INSEE = "code_insee"
    POSTCODE_NAME = "postcode_name"
    COORDINATES = "coordinates"
    # In no commune's polygon (a coast, a gap of the source), but near a commune's town hall: see the detail below.
    POSITION = "position"
    # A postcode alone that covers one commune, or a commune name alone that names one commune of France.
    POSTCODE = "postcode"
    COMMUNE_NAME = "commune_name"


class Jurisdiction(Canonical):
    commune_code: CodeInsee
    commune_name: str
    departement: Annotated[str, StringConstraints(pattern=r"^(\d{2}|2[AB]|97\d)$")]
    region: str | None = None
    force: Force
    unit_id: str
    unit_name: str
    cross_unit_id: str | None = Field(default=None, description="the département's drug-intelligence cell")
    method: ResolutionMethod
    reference_version: str
    position_outside_commune_m: int | None = Field(
        default=None,
        description="resolved by its code or name, the report's position is this far outside that commune (more "
        "than a few kilometres: a mistyped address or a misplaced pin, for the unit to check); absent otherwise",
    )


class EnrichedReport(Canonical):
    report: CanonicalReport
    jurisdiction: Jurisdiction
