"""Synthetic traffic for demos, tests and benchmarks, with the ground truth beside it.

Reports are drawn on the real communes of the jurisdiction reference (``JurisdictionReference.communes``), in both
channels and both kinds. A configurable share of them:

- are exact duplicates (the same submission sent again: same id, same body),
- report a point already reported by another citizen (another submission, written differently: the same address in
  other case and abbreviations, coordinates within a few tens of metres, the same phone number in another writing,
  the handle with or without "@", the commune name without accents or with "St" for "Saint"),
- are invalid (a missing place, a malformed postcode, coordinates abroad, an impossible phone number or date, an
  unknown kind, an unexpected field), each with the defect named in the truth.

The ground truth (one JSON line per report) says which point each valid report is about, so the deduplication can
measure its precision and recall: two valid reports belong together exactly when they share a ``point_id``.

Deterministic for a seed and a start time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devkit.citizen_writing import (
    PARIS,
    PLATFORMS,
    commune_name_writing,
    mobile_digits,
    offset_position,
    phone_writings,
)
from devkit.commune_places import CommunePlaces
from schemas.channels import Channel, ReportKind
from schemas.reports import report_id_for
from schemas.submissions import ActivityKind
from streams.jurisdiction import CommuneCompetence

STREETS = (
    ("rue", "de la République"), ("avenue", "Jean Jaurès"), ("place", "de la Gare"), ("rue", "Victor Hugo"),
    ("allée", "des Tilleuls"), ("boulevard", "Gambetta"), ("rue", "Pasteur"), ("chemin", "des Écoliers"),
    ("rue", "du Général de Gaulle"), ("impasse", "des Lilas"), ("avenue", "de la Libération"),
    ("rue", "Saint-Martin"),
)
STREET_ABBREVIATIONS = {"avenue": "av.", "boulevard": "bd", "place": "pl.", "allée": "all.", "chemin": "ch."}
DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
HOURS = ("de 16h à 23h", "le soir", "toute la journée", "vers minuit", "de 10h à 14h")
DEFECTS = (
    "missing_place", "bad_postcode", "coordinates_abroad", "bad_phone", "bad_date", "unknown_kind", "unexpected_field",
)
# Overseas départements and Corsica: rough centres, used when the reference gives no commune position.
REGION_CENTRES = {
    "971": (16.2, -61.55), "972": (14.65, -61.0), "973": (4.9, -52.3), "974": (-21.1, 55.5), "976": (-12.8, 45.15),
    "2A": (41.9, 8.8), "2B": (42.5, 9.2),
}


@dataclass(frozen=True)
class TrafficMix:
    """Shares of the generated reports, each between 0 and 1."""

    exact_duplicate_share: float = 0.05
    same_point_share: float = 0.3
    invalid_share: float = 0.05
    delivery_share: float = 0.25
    moncommissariat_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("exact_duplicate_share", "same_point_share", "invalid_share", "delivery_share",
                     "moncommissariat_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.exact_duplicate_share + self.invalid_share > 1:
            raise ValueError("exact duplicates and invalid reports together cannot exceed all reports")


# The demo's traffic: valid reports only, a fifth of them about a point already reported.
DEMO_MIX = TrafficMix(exact_duplicate_share=0.0, same_point_share=0.2, invalid_share=0.0, delivery_share=0.2)


@dataclass
class Point:
    """One real-world thing citizens report: a dealing point or a delivery network."""

    point_id: str
    kind: ReportKind
    commune: CommuneCompetence
    postcode: str
    housenumber: str
    street: tuple[str, str]
    latitude: float
    longitude: float
    activity: str
    phone_digits: str = ""  # national significant number, e.g. 612345678
    handle: str = ""
    platform: str = ""


@dataclass(frozen=True)
class GeneratedReport:
    channel: Channel
    submission: dict[str, Any]
    truth: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/v1/reports/{self.channel.value}"

    def traffic_line(self) -> dict[str, Any]:
        return {"channel": self.channel.value, "submission": self.submission}


@dataclass
class TrafficGenerator:
    communes: list[CommuneCompetence]
    mix: TrafficMix = field(default_factory=TrafficMix)
    seed: int = 1
    start: datetime = field(default_factory=lambda: datetime(2026, 3, 3, 8, 0, tzinfo=PARIS))
    run_tag: str = ""
    # Live: every report is dated now (the demo, the pipeline benchmark), not on a simulated clock from ``start``.
    live: bool = False
    # The communes' real polygons: each point is drawn inside its commune (without them, near a stand-in centre).
    places: CommunePlaces | None = None

    def __post_init__(self) -> None:
        if not self.communes:
            raise ValueError("the jurisdiction reference has no communes")
        self.rng = random.Random(self.seed)
        self.points: list[Point] = []
        self.sent: list[GeneratedReport] = []
        self.clock = self.start
        self.tag = self.run_tag or f"s{self.seed}"

    # -- the stream --------------------------------------------------------------------------------------------

    def reports(self, count: int | None = None) -> Iterator[GeneratedReport]:
        """``count`` reports, or an endless stream without one."""
        number = 0
        while count is None or number < count:
            yield self.next_report(number)
            number += 1

    def next_report(self, number: int) -> GeneratedReport:
        self.clock = datetime.now(PARIS) if self.live else self.clock + timedelta(seconds=self.rng.randint(5, 300))
        draw = self.rng.random()
        valid_sent = [r for r in self.sent[-200:] if r.truth["valid"]]
        if draw < self.mix.exact_duplicate_share and valid_sent:
            report = self._exact_duplicate(self.rng.choice(valid_sent))
        elif draw < self.mix.exact_duplicate_share + self.mix.invalid_share:
            report = self._invalid(number)
        else:
            report = self._valid(number, self._pick_point())
        self.sent.append(report)
        return report

    def _pick_point(self) -> Point:
        if self.points and self.rng.random() < self.mix.same_point_share:
            return self.rng.choice(self.points)
        point = self._new_point()
        self.points.append(point)
        return point

    # -- points ------------------------------------------------------------------------------------------------

    def _new_point(self) -> Point:
        commune = self.rng.choice(self.communes)
        kind = ReportKind.DELIVERY_NETWORK if self.rng.random() < self.mix.delivery_share else ReportKind.DEALING_POINT
        inside = self.places.random_point(commune.code, self.rng) if self.places else None
        latitude, longitude = inside or self._near(commune_centre(commune), metres=1500)
        point = Point(
            point_id=f"{self.tag}-p{len(self.points):06d}",
            kind=kind,
            commune=commune,
            postcode=self.rng.choice(commune.postcodes) if commune.postcodes else "",
            housenumber=str(self.rng.randint(1, 150)),
            street=self.rng.choice(STREETS),
            latitude=latitude,
            longitude=longitude,
            activity=self.rng.choice([ActivityKind.STREET_SALES.value, ActivityKind.STASH.value,
                                      ActivityKind.NEW_SPOT_AFTER_OPERATION.value]),
        )
        if kind is ReportKind.DELIVERY_NETWORK:
            point.phone_digits = mobile_digits(self.rng)
            point.handle = f"{self.rng.choice(('livraison', 'plug', 'snap', 'delivery'))}{self.rng.randint(1, 9999)}"
            point.platform = self.rng.choice(PLATFORMS)
            point.activity = ActivityKind.HOME_DELIVERY.value
        return point

    def _near(self, centre: tuple[float, float], metres: float) -> tuple[float, float]:
        return offset_position(centre, self.rng.uniform(-metres, metres), self.rng.uniform(-metres, metres))

    # -- one citizen's writing of a point ----------------------------------------------------------------------

    def _valid(self, number: int, point: Point) -> GeneratedReport:
        # The portal's autocomplete always gives a postcode; a commune without one is reported by conversation.
        if point.postcode and self.rng.random() < self.mix.moncommissariat_share:
            channel, submission = Channel.MONCOMMISSARIAT, self._portal_submission(number, point)
            submission_id = submission["submission_id"]
        else:
            channel, submission = Channel.BRIGADE_NUMERIQUE, self._conversation_submission(number, point)
            submission_id = submission["conversation_id"]
        truth = {
            "channel": channel.value, "submission_id": submission_id,
            "report_id": report_id_for(channel, submission_id), "valid": True, "defect": None,
            "exact_duplicate": False, "point_id": point.point_id, "kind": point.kind.value,
            "commune_code": point.commune.code, "unit_id": point.commune.unit_id,
        }
        return GeneratedReport(channel, submission, truth)

    def _portal_submission(self, number: int, point: Point) -> dict[str, Any]:
        place = self._portal_address(point)
        common = {"days_seen": self.rng.sample(DAYS, self.rng.randint(0, 3)), "hours_seen": self.rng.choice(HOURS)}
        if point.kind is ReportKind.DELIVERY_NETWORK:
            report: dict[str, Any] = {
                "kind": "delivery_network", "contact": self._delivery_contact(point), "area_served": place, **common,
                "description": "Livraisons annoncées sur les réseaux sociaux.",
            }
        else:
            report = {
                "kind": "dealing_point", "place": place, "activity": point.activity, **common,
                "description": self.rng.choice(("Guetteurs en bas de l'immeuble.", "Va-et-vient toute la soirée.",
                                                "Des jeunes vendent devant le hall.")),
            }
        submission: dict[str, Any] = {
            "submission_id": f"gen-{self.tag}-mc-{number:08d}",
            "submitted_at": self.clock.isoformat(),
            "report": report,
        }
        if self.rng.random() < 0.2:
            submission["reporter"] = {"email": f"citoyen{self.rng.randint(1, 99999)}@example.org",
                                      "consent_to_recontact": self.rng.random() < 0.5}
        return submission

    def _portal_address(self, point: Point) -> dict[str, Any]:
        street_type, street_name = point.street
        street = f"{street_type.capitalize()} {street_name}"
        address: dict[str, Any] = {
            "label": f"{point.housenumber} {street} {point.postcode} {point.commune.name}",
            "housenumber": point.housenumber,
            "street": street,
            "postcode": point.postcode,
            "citycode": point.commune.code,
            "city": point.commune.name,
        }
        if self.rng.random() < 0.7:
            address["latitude"], address["longitude"] = self._near((point.latitude, point.longitude), metres=30)
        return address

    def _conversation_submission(self, number: int, point: Point) -> dict[str, Any]:
        place = self._conversation_place(point)
        if point.kind is ReportKind.DELIVERY_NETWORK:
            report: dict[str, Any] = {"kind": "delivery_network", "contact": self._delivery_contact(point),
                                      "area_served": place}
        else:
            report = {"kind": "dealing_point", "place": place, "activity": point.activity,
                      "when_seen": f"{self.rng.choice(DAYS)} {self.rng.choice(HOURS)}"}
        started = self.clock - timedelta(minutes=self.rng.randint(1, 20))
        return {
            "conversation_id": f"gen-{self.tag}-bn-{number:08d}",
            "started_at": started.astimezone(PARIS).strftime("%d/%m/%Y %H:%M"),
            "reported_at": self.clock.astimezone(PARIS).strftime("%d/%m/%Y %H:%M"),
            "report": report,
            "transcript_excerpt": "L'usager signale une activité de revente.",
        }

    def _conversation_place(self, point: Point) -> dict[str, Any]:
        street_type, street_name = point.street
        street = f"{STREET_ABBREVIATIONS.get(street_type, street_type)} {street_name}"
        place: dict[str, Any] = {
            "description": f"{self.rng.choice(('devant le', 'au', 'près du'))} {point.housenumber} {street}",
            "commune": commune_name_writing(self.rng, point.commune.name),
        }
        if point.postcode:
            place["postcode"] = point.postcode
        if self.rng.random() < 0.5:
            latitude, longitude = self._near((point.latitude, point.longitude), metres=30)
            place["gps"] = f"{latitude},{longitude}" if self.rng.random() < 0.5 else f"{latitude}, {longitude}"
        return place

    def _delivery_contact(self, point: Point) -> dict[str, Any]:
        with_phone = self.rng.random() < 0.8
        contact: dict[str, Any] = {"platform": point.platform}
        if with_phone:
            contact["phone"] = self.rng.choice(phone_writings(point.phone_digits))
        if not with_phone or self.rng.random() < 0.6:
            handle = point.handle if self.rng.random() < 0.5 else point.handle.capitalize()
            contact["handle"] = f"@{handle}" if self.rng.random() < 0.5 else handle
        return contact

    # -- duplicates and invalid input --------------------------------------------------------------------------

    def _exact_duplicate(self, original: GeneratedReport) -> GeneratedReport:
        return GeneratedReport(original.channel, original.submission, {**original.truth, "exact_duplicate": True})

    def _invalid(self, number: int) -> GeneratedReport:
        point = self._new_point()  # not kept: an invalid report names no point a later report could share
        report = self._valid(number, point)
        submission = copy.deepcopy(report.submission)
        defect = self.rng.choice(DEFECTS)
        apply_defect(submission, report.channel, defect)
        truth = {**report.truth, "valid": False, "defect": defect, "point_id": None, "report_id": None}
        return GeneratedReport(report.channel, submission, truth)


def apply_defect(submission: dict[str, Any], channel: Channel, defect: str) -> None:
    """Spoil a valid submission in one named way the intake must refuse."""
    report = submission["report"]
    place_key = "place" if "place" in report else "area_served"
    if defect == "missing_place":
        del report[place_key]
    elif defect == "bad_postcode":
        report[place_key]["postcode"] = "7501"
    elif defect == "coordinates_abroad":  # Madrid
        if channel is Channel.MONCOMMISSARIAT:
            report[place_key].update(latitude=40.4168, longitude=-3.7038)
        else:
            report[place_key]["gps"] = "40.4168,-3.7038"
    elif defect == "bad_phone":
        if "contact" in report:
            report["contact"]["phone"] = "06 12"
        else:  # a dealing point has no delivery phone: the reporter's own, given with consent, is normalized too
            submission["reporter"] = {"phone": "06 12", "consent_to_recontact": True}
    elif defect == "bad_date":
        if channel is Channel.MONCOMMISSARIAT:
            submission["submitted_at"] = "2026-02-31T10:00:00+01:00"
        else:
            submission["reported_at"] = "31/02/2026 10:00"
    elif defect == "unknown_kind":
        report["kind"] = "rumour"
    elif defect == "unexpected_field":
        submission["reporter_name"] = "not part of the contract"


def commune_centre(commune: CommuneCompetence) -> tuple[float, float]:
    """The commune's position when the reference has one; otherwise a stable stand-in in its region of France.

    The reference interface does not promise positions, so without them coordinates are plausible for France (and
    accepted by normalization) but not the commune's own: resolution goes by code INSEE or postcode and name first.
    """
    latitude, longitude = getattr(commune, "latitude", None), getattr(commune, "longitude", None)
    if isinstance(latitude, float) and isinstance(longitude, float):
        return latitude, longitude
    digest = hashlib.sha256(commune.code.encode()).digest()
    fraction_a, fraction_b = digest[0] / 255, digest[1] / 255
    centre = REGION_CENTRES.get(commune.departement)
    if centre is not None:
        return centre[0] + (fraction_a - 0.5) * 0.1, centre[1] + (fraction_b - 0.5) * 0.1
    return 43.6 + fraction_a * 5.6, -0.6 + fraction_b * 7.0


def write_traffic(reports: Iterator[GeneratedReport], out: Path, truth: Path | None) -> int:
    """Write the traffic (what ``signalements replay`` reads) and, line for line, its ground truth."""
    written = 0
    with out.open("w", encoding="utf-8") as traffic, ExitStack() as stack:
        facts = stack.enter_context(truth.open("w", encoding="utf-8")) if truth else None
        for report in reports:
            traffic.write(json.dumps(report.traffic_line(), ensure_ascii=False) + "\n")
            if facts is not None:
                facts.write(json.dumps(report.truth, ensure_ascii=False) + "\n")
            written += 1
    return written


def send_traffic(reports: Iterator[GeneratedReport], intake_url: str, rate: float,
                 headers: dict[str, str]) -> dict[str, int]:
    """Post each report to a running intake (paced at ``rate`` per second, 0 = no pacing) with the client's
    credential in ``headers``; count the answers."""
    statuses: dict[str, int] = {}
    started = time.monotonic()
    with httpx.Client(base_url=intake_url, timeout=30, headers=headers) as client:
        for sent, report in enumerate(reports):
            if rate > 0:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            try:
                status = str(client.post(report.path, json=report.submission).status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            statuses[status] = statuses.get(status, 0) + 1
    return statuses
