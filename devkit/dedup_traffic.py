"""Synthetic report traffic with ground truth for deduplication: which reports are the same dealing point or network.

Realistic noise, as citizens and channels write things: the same address written differently (abbreviations,
articles, capitals, accents), positions jittered by a few tens of metres around the true point, phone numbers in
different writings (06 12 34 56 78, +33 6 12 34 56 78, 0033612345678), handles with and without @ and capitals;
and distinct points close together (200 to 400 m apart) so merging too eagerly shows. Some submissions are sent
twice (a retry: same submission id), and some citizens send their report again (same contact, same words, new
submission id, possibly on the other channel). Deterministic for a given seed.

Used by the fault tests (tests/test_dedup_faults.py) and the deduplication benchmark (devkit/bench_dedup.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import h3

from devkit.citizen_writing import PARIS, PLATFORMS, mobile_digits, offset_position, phone_writings
from schemas.channels import Channel
from schemas.envelope import encode, kafka_headers
from schemas.reports import report_id_for
from schemas.submission_channels import SUBMISSION_CHANNELS
from schemas.topics import Topics


@dataclass(frozen=True)
class Commune:
    code: str
    name: str
    postcode: str
    centre: tuple[float, float]
    unit_id: str


# Communes of the demonstration reference, with a plausible centre: a spread of units (and so of partitions).
COMMUNES = (
    Commune("75111", "Paris 11e Arrondissement", "75011", (48.8590, 2.3790), "pn-75-pp"),
    Commune("93066", "Saint-Denis", "93200", (48.9360, 2.3570), "pn-93-pp"),
    Commune("13203", "Marseille 3e Arrondissement", "13003", (43.3110, 5.3800), "pn-13-marseille"),
    Commune("69381", "Lyon 1er Arrondissement", "69001", (45.7670, 4.8340), "pn-69-lyon"),
    Commune("59350", "Lille", "59000", (50.6300, 3.0600), "pn-59-lille"),
    Commune("74056", "Chamonix-Mont-Blanc", "74400", (45.9230, 6.8690), "gn-74-chamonix-mont-blanc"),
    Commune("38545", "Vif", "38450", (45.0550, 5.6700), "gn-38-vif"),
)
STREETS = (
    ("rue de la République", ("rue de la Republique", "r. de la République", "Rue République", "RUE DE LA REPUBLIQUE")),
    ("avenue Jean Jaurès", ("av. Jean Jaures", "Avenue Jean-Jaurès", "av Jean Jaurès", "AVENUE JEAN JAURES")),
    ("boulevard Victor Hugo", ("bd Victor Hugo", "Bd. Victor-Hugo", "boulevard victor hugo", "bld Victor Hugo")),
    ("place de la Gare", ("pl. de la Gare", "Place Gare", "place de la gare", "PL DE LA GARE")),
    ("allée des Tilleuls", ("all. des Tilleuls", "Allee des Tilleuls", "allée Tilleuls", "ALLEE DES TILLEULS")),
    ("impasse du Moulin", ("imp. du Moulin", "Impasse Moulin", "imp du moulin", "IMPASSE DU MOULIN")),
)


@dataclass(frozen=True)
class TruthReport:
    """One submission and the point it is about; ``repeat_of`` marks a retry or a resubmission."""

    point_id: str
    channel: Channel
    submission_id: str
    body: dict[str, object]
    unit_id: str
    repeat_of: str | None = None  # the report id this one repeats (same submission, or same person's same report)

    @property
    def report_id(self) -> str:
        return report_id_for(self.channel, self.submission_id)

    def raw_record(self, topics: Topics) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
        """(topic, key, value, headers) as the intake writes it on ``reports.raw.<channel>``."""
        spec = SUBMISSION_CHANNELS[self.channel]
        message = encode(spec.event_type, spec.model.model_validate(self.body), event_id=self.report_id, source="/signalements/dedup-traffic", key=self.submission_id)
        return topics.raw(self.channel), self.submission_id.encode(), message.value or b"", kafka_headers(message)


@dataclass
class TrafficShape:
    points: int = 200
    max_reports_per_point: int = 6
    retry_rate: float = 0.05  # a submission sent twice
    resubmission_rate: float = 0.05  # the same person sends the same report again
    network_share: float = 0.25
    address_only_share: float = 0.2
    jitter_m: float = 12.0
    # False: like citizens, some give only the network's handle, others only its phone number, and nothing links
    # them (a recall loss no system avoids). True: every report names the phone, so every point is recoverable.
    network_always_phone: bool = False
    communes: tuple[Commune, ...] = COMMUNES
    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=2))




@dataclass
class _Point:
    point_id: str
    commune: Commune
    kind: str  # "located", "address", "network"
    position: tuple[float, float]
    number: int
    street: int
    phones: list[str]
    handle: str
    platform: str


MIN_SPACING_M = 200.0


def _too_close(position: tuple[float, float], placed: dict[str, list[tuple[float, float]]]) -> bool:
    cell = h3.latlng_to_cell(position[0], position[1], 7)
    return any(
        h3.great_circle_distance(position, other, "m") < MIN_SPACING_M
        for neighbour in h3.grid_disk(cell, 1) for other in placed.get(neighbour, [])
    )


def _points(rng: random.Random, shape: TrafficShape) -> list[_Point]:
    points: list[_Point] = []
    used_addresses: set[tuple[str, int, int]] = set()
    placed: dict[str, list[tuple[float, float]]] = {}
    by_commune: dict[str, list[_Point]] = {}
    for index in range(shape.points):
        commune = rng.choice(shape.communes)
        kind = "network" if rng.random() < shape.network_share else "address" if rng.random() < shape.address_only_share else "located"
        while True:
            if kind == "located" and points and rng.random() < 0.4:
                # a distinct point close to another one of the same commune: 200 to 400 m away
                near = rng.choice(by_commune.get(commune.code) or points)
                bearing, distance = rng.uniform(0, 2 * math.pi), rng.uniform(MIN_SPACING_M, 400)
                position = offset_position(near.position, distance * math.cos(bearing), distance * math.sin(bearing))
                commune = near.commune
            else:
                spread = 4000 * max(1.0, math.sqrt(shape.points / 2000))
                position = offset_position(commune.centre, rng.uniform(-spread, spread), rng.uniform(-spread, spread))
            # distinct points are at least 200 m apart: closer than that, citizens describe one point
            if kind != "located" or not _too_close(position, placed):
                break
        if kind == "located":
            placed.setdefault(h3.latlng_to_cell(position[0], position[1], 7), []).append(position)
        while True:
            # house numbers grow with the traffic, so there are always free addresses to draw from
            number, street = rng.randint(1, max(180, shape.points // 4)), rng.randrange(len(STREETS))
            if (commune.code, number, street) not in used_addresses:
                used_addresses.add((commune.code, number, street))
                break
        point = _Point(f"p{index:06d}", commune, kind, position, number, street, phone_writings(mobile_digits(rng)),
                       f"livraison{index}x{rng.randint(10, 99)}", rng.choice(PLATFORMS))
        points.append(point)
        by_commune.setdefault(commune.code, []).append(point)
    return points


def _street_writing(rng: random.Random, point: _Point) -> str:
    canonical, variants = STREETS[point.street]
    return rng.choice((canonical, *variants))


def _portal_body(
    rng: random.Random, point: _Point, submission_id: str, at: datetime, reporter: dict | None, words: str,
    jitter_m: float, always_phone: bool,
) -> dict:
    street = _street_writing(rng, point)
    address: dict[str, object] = {
        "label": f"{point.number} {street} {point.commune.postcode} {point.commune.name}",
        "housenumber": str(point.number), "street": street, "postcode": point.commune.postcode,
        "citycode": point.commune.code, "city": point.commune.name,
    }
    if point.kind == "located":
        # a phone's or a map's position: most within jitter_m of the point, a few up to 2.5 times that
        distance, bearing = min(abs(rng.gauss(0, 1)), 2.5) * jitter_m, rng.uniform(0, 2 * math.pi)
        address["latitude"], address["longitude"] = offset_position(
            point.position, distance * math.cos(bearing), distance * math.sin(bearing)
        )
    if point.kind == "network":
        phone = rng.choice(point.phones) if always_phone or rng.random() < 0.8 else None
        handle = rng.choice((point.handle, f"@{point.handle}", f"@{point.handle.capitalize()}")) if (phone is None or rng.random() < 0.5) else None
        report: dict[str, object] = {
            "kind": "delivery_network",
            "contact": {"phone": phone, "handle": handle, "platform": point.platform},
            "area_served": address, "description": words,
        }
    else:
        report = {"kind": "dealing_point", "place": address, "activity": "street_sales", "description": words}
    body: dict[str, object] = {"submission_id": submission_id, "submitted_at": at.isoformat(), "report": report}
    if reporter:
        body["reporter"] = reporter
    return body


def _conversation_body(
    rng: random.Random, point: _Point, submission_id: str, at: datetime, reporter: dict | None, words: str,
    jitter_m: float, always_phone: bool,
) -> dict:
    local = at.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")
    place: dict[str, object] = {"commune": point.commune.name, "postcode": point.commune.postcode}
    phone = rng.choice(point.phones) if always_phone or rng.random() < 0.8 else None
    handle = rng.choice((point.handle, f"@{point.handle}")) if (phone is None or rng.random() < 0.5) else None
    report = {
        "kind": "delivery_network",
        "contact": {"phone": phone, "handle": handle, "platform": point.platform},
        "area_served": {**place, "description": words},
    }
    body: dict[str, object] = {
        "conversation_id": submission_id, "started_at": local, "reported_at": local, "report": report,
    }
    if reporter:
        body["reporter"] = reporter
    return body


def ground_truth_traffic(shape: TrafficShape, seed: int = 1) -> list[TruthReport]:
    """Reports of ``shape.points`` points, in submission order, with retries and resubmissions mixed in."""
    rng = random.Random(seed)
    originals: list[TruthReport] = []
    repeats: list[TruthReport] = []
    counter = 0
    for point in _points(rng, shape):
        for citizen in range(rng.randint(1, shape.max_reports_per_point)):
            counter += 1
            at = shape.start + timedelta(minutes=rng.randint(0, 24 * 60))
            reporter = (
                {"email": f"citoyen{seed}-{counter}@example.org", "consent_to_recontact": True}
                if rng.random() < 0.5 else None
            )
            words = f"Guetteurs devant le numero {point.number}, citoyen {citizen}"
            channel = Channel.BRIGADE_NUMERIQUE if point.kind == "network" and rng.random() < 0.5 else Channel.MONCOMMISSARIAT
            submission_id = f"{'bn' if channel is Channel.BRIGADE_NUMERIQUE else 'mc'}-{seed}-{counter:08d}"
            build = _conversation_body if channel is Channel.BRIGADE_NUMERIQUE else _portal_body
            body = build(rng, point, submission_id, at, reporter, words, shape.jitter_m, shape.network_always_phone)
            original = TruthReport(point.point_id, channel, submission_id, body, point.commune.unit_id)
            originals.append(original)
            if rng.random() < shape.retry_rate:
                repeats.append(TruthReport(point.point_id, channel, submission_id, original.body, point.commune.unit_id, repeat_of=original.report_id))
            if reporter and point.kind != "network" and rng.random() < shape.resubmission_rate:
                counter += 1
                again_id = f"mc-{seed}-{counter:08d}"
                again = _portal_body(rng, point, again_id, at + timedelta(minutes=rng.randint(1, 90)), reporter, words, shape.jitter_m, shape.network_always_phone)
                repeats.append(TruthReport(point.point_id, Channel.MONCOMMISSARIAT, again_id, again, point.commune.unit_id, repeat_of=original.report_id))
    rng.shuffle(originals)
    # A repeat comes after what it repeats, somewhere later in the stream.
    position = {report.report_id: index for index, report in enumerate(originals)}
    slots: dict[int, list[TruthReport]] = {}
    for repeat in repeats:
        after = position[repeat.repeat_of or ""]
        slots.setdefault(rng.randint(after, len(originals) - 1), []).append(repeat)
    return [item for index, report in enumerate(originals) for item in (report, *slots.get(index, []))]


def distinct_reports(traffic: list[TruthReport]) -> dict[str, set[str]]:
    """Point id → the report ids a unit should see counted (retries and resubmissions excluded)."""
    truth: dict[str, set[str]] = {}
    for report in traffic:
        if report.repeat_of is None:
            truth.setdefault(report.point_id, set()).add(report.report_id)
    return truth


def report_groups(traffic: list[TruthReport]) -> dict[str, dict[str, set[str]]]:
    """Point id → {original report id → it and its resubmissions' ids}: exactly one of each group must count.

    On the broker, a resubmission may reach the route stage before its original (they travel on different raw
    partitions), and then it is the one counted and the original is the resubmission.
    """
    groups: dict[str, dict[str, set[str]]] = {}
    for report in traffic:
        original = report.repeat_of or report.report_id
        groups.setdefault(report.point_id, {}).setdefault(original, set()).add(report.report_id)
    return groups


def iter_raw_records(traffic: list[TruthReport], topics: Topics) -> Iterator[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
    for report in traffic:
        yield report.raw_record(topics)
