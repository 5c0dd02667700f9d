"""Deduplication of reports into cases: the pure decision logic and the state records it reads and writes.

Three layers, tried in this order for each enriched report of a deduplication area (streams/dedup_area.py: every
report that may be a duplicate of another is in the same area, whatever units they resolve to):

1. the same submission again (a retry, a replay, the same message twice): its report id was already seen → dropped;
2. the same person sending the same report again (both channels, or twice in a short time): same contact, same
   normalized description, same case, within the resubmission window → dropped as a resubmission;
3. the same dealing point or delivery network reported by someone else: merged into the open case.
   A dealing point with coordinates matches a case whose anchor (its first report's position) is within
   ``distance_m``, looked up in the H3 cells around it rather than scanning; without coordinates on either side,
   the same commune and the same normalized street address (or place description) — never the address alone when
   both have positions farther apart (a long avenue holds several points). A delivery network matches on the same
   E.164 phone number or the same messaging handle, anywhere. A case is open until ``case_window`` after its
   last report; a later report opens a new case.

A case belongs to the unit competent for its first report (its anchor). A report resolved to another unit that
merges into it is in the case's next update on the owner's queue, and that other unit gets a ``case.linked`` on its
own queue: each unit knows the point is one case, and whose. The exception is a commune that changed unit (the
competence reference moved it): a report there resolved to the new unit does not join the former unit's case but
opens one in the new unit, which later reports of the point then join; the former unit keeps its case as it was.

Phone numbers, handles and contact fingerprints never appear in the state or its changelog: they are keyed by
an HMAC-SHA256 with the policy's secret (``identifier_secret``, from a file every worker shares), so whoever reads
a changelog cannot test a phone number against it without the secret.

Everything here is a function of the state and of the record (its content and its Kafka timestamp, never the wall
clock), so reprocessing the same records from the same state makes the same decisions, the same case ids and the
same event ids. ``decide_report`` and ``flush_case`` return ``Effects``: the state writes and the events; the Faust
wiring (``streams.case_tables``) applies them.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import h3
from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.channels import Channel, ReportKind
from schemas.events import CaseLinked, CaseOpened, CaseUpdated, case_id_for
from schemas.reports import EnrichedReport


class DedupOutcome(StrEnum):
    OPENED = "opened"
    MERGED = "merged"
    DUPLICATE = "duplicate"
    RESUBMISSION = "resubmission"


@dataclass(frozen=True)
class DedupPolicy:
    distance_m: float = 150.0
    case_window: timedelta = timedelta(days=30)
    update_throttle: timedelta = timedelta(minutes=15)
    resubmission_window: timedelta = timedelta(hours=24)
    # The HMAC key of phone numbers, handles and contact fingerprints in the state (kept out of reprs and logs).
    identifier_secret: bytes = field(default=b"", repr=False)

    def keyed(self, value: str) -> str:
        """What the state holds instead of a phone number, a handle or a contact."""
        return hmac.new(self.identifier_secret, value.encode(), hashlib.sha256).hexdigest()[:32]

    @property
    def h3_resolution(self) -> int:
        """The finest H3 resolution whose one-ring around a point's cell surely holds every point within distance.

        A point's cell and its six neighbours cover at least one cell width (√3 × edge) around it; the factor 0.7
        leaves room for cells smaller than the average edge length (H3 cells vary in size across the globe).
        """
        for resolution in range(15, -1, -1):
            if h3.average_hexagon_edge_length(resolution, "m") * math.sqrt(3) * 0.7 >= self.distance_m:
                return resolution
        return 0


# ---------------------------------------------------------------------------------------------------------------
# State records (JSON in the Faust table). Keys are namespaced strings, see the *_key functions.
# ---------------------------------------------------------------------------------------------------------------


class StateRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JournaledEvent(StateRecord):
    opened: bool
    linked: bool = False
    payload: str
    copies_to: list[str] | None = None  # None in a journal written before copies were decided
    report_received_at: AwareDatetime | None = None


class JournalEntry(StateRecord):
    """The events one record of ``partition`` at ``offset`` decided for the case, kept in the case record until
    that offset is committed (so they are known acknowledged): a replay of the record sends them again."""

    partition: int
    offset: int
    outcome: DedupOutcome | None = None
    events: list[JournaledEvent] = []


class PendingHint(StateRecord):
    """A throttled case's flush, derived from its record: sent with ``key`` (its area), due at ``due_at``."""

    key: str
    due_at: AwareDatetime


class CaseState(StateRecord):
    case_id: str
    unit_id: str
    unit_name: str = ""
    # The département's CROSS of the owner unit, which gets a copy of every event of the case.
    cross_unit_id: str | None = None
    # The case's deduplication area (the key of its reports): its throttled updates' flush ticks are sent with it.
    area: str = ""
    # The commune of its first report: a later report there resolved to another unit means the commune changed unit.
    commune_code: str = ""
    kind: ReportKind
    anchor: tuple[float, float] | None = None
    opened_at: AwareDatetime
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    report_count: int
    channels: list[Channel]
    version: int
    last_event_at: AwareDatetime
    pending: list[EnrichedReport] = []
    # Its reports' ids, each with the offset (``sequence``) of the record that brought it: the ``seen:`` index.
    reports: dict[str, int] = {}
    # The address and network keys this case claimed, each with the sequence of the record that claimed it: the
    # ``addr:`` and ``net:`` index point at the latest claim, as they did when they were written one by one.
    claims: dict[str, int] = {}
    # Contact fingerprints (who said what about this case) and when, for the resubmission window.
    fingerprints: dict[str, AwareDatetime] = {}
    journal: list[JournalEntry] = []

    def open_at(self, moment: datetime, window: timedelta) -> bool:
        return moment - self.last_seen <= window


class CaseRef(StateRecord):
    """An index entry: a point key, a network identifier or a report id that leads to a case."""

    case_id: str | None = None
    seen_at: AwareDatetime | None = None
    # The sequence of the record whose case claimed the key (None in an entry of an older state).
    sequence: int | None = None


class CellCases(StateRecord):
    case_ids: list[str]


class StateView(Protocol):
    def get(self, key: str) -> bytes | None: ...


def case_key(case_id: str) -> str:
    return f"case:{case_id}"


def seen_key(report_id: str) -> str:
    return f"seen:{report_id}"


# Index keys name no unit: a point or a network is one case whichever units its reports resolve to.
def cell_key(cell: str) -> str:
    return f"cell:{cell}"


def address_key(commune_code: str, address: str) -> str:
    return f"addr:{commune_code}:{address}"


def network_key(identifier: str) -> str:
    return f"net:{identifier}"


def resubmission_key(fingerprint: str) -> str:
    """An older state's resubmission entry (fingerprints are now kept in their case)."""
    return f"resub:{fingerprint}"


def pending_key(case_id: str) -> str:
    return f"pending:{case_id}"


DERIVED_PREFIXES = ("seen:", "addr:", "net:", "cell:", "pending:")


# ---------------------------------------------------------------------------------------------------------------
# Normalization of what identifies a point or a network.
# ---------------------------------------------------------------------------------------------------------------

# French street-type abbreviations as citizens and address forms write them, to their full form.
STREET_TYPES = {
    "r": "rue", "av": "avenue", "ave": "avenue", "bd": "boulevard", "bld": "boulevard", "boul": "boulevard",
    "pl": "place", "ch": "chemin", "chem": "chemin", "imp": "impasse", "all": "allee", "sq": "square",
    "crs": "cours", "rte": "route", "qu": "quai", "pas": "passage", "res": "residence", "cite": "cite",
    "fg": "faubourg", "fbg": "faubourg", "st": "saint", "ste": "sainte", "pte": "porte", "prom": "promenade",
}
FILLER_WORDS = {"de", "du", "des", "la", "le", "les", "l", "d", "a", "au", "aux"}


def normalize_address(text: str) -> str:
    """One writing for one address: no accents, no punctuation, abbreviations expanded, articles dropped."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    # "12bis" and "12 bis" are one house number
    joined = " ".join(words)
    joined = re.sub(r"\b(\d+) (bis|ter|quater)\b", r"\1\2", joined)
    expanded = [STREET_TYPES.get(word, word) for word in joined.split()]
    return " ".join(word for word in expanded if word not in FILLER_WORDS)


def network_identifiers(report: EnrichedReport, policy: DedupPolicy) -> list[str]:
    """The delivery network's phone number and handle, each as its keyed hash."""
    delivery = report.report.delivery
    if delivery is None:
        return []
    identifiers = []
    if delivery.phone_e164:
        identifiers.append(f"phone:{policy.keyed(delivery.phone_e164)}")
    if delivery.handle:
        identifiers.append(f"handle:{policy.keyed(delivery.handle.strip().lstrip('@').lower())}")
    return identifiers


def point_address(report: EnrichedReport) -> str | None:
    place = report.report.place
    text = place.street_address or place.description
    normalized = normalize_address(text) if text else ""
    return normalized or None


def coordinates(report: EnrichedReport) -> tuple[float, float] | None:
    place = report.report.place
    if place.latitude is None or place.longitude is None:
        return None
    return (place.latitude, place.longitude)


def contact_fingerprint(report: EnrichedReport, case_id: str, policy: DedupPolicy) -> str | None:
    """Who said what about which case (a keyed hash): only a report with a contact can be recognised as the same
    person's. The contact itself is sealed; its keyed hash (``contact_hash``) is what the reports share."""
    reporter = report.report.reporter
    if reporter is None:
        return None
    description = normalize_address(report.report.description or "")
    material = "|".join((case_id, reporter.contact_hash, description))
    return policy.keyed(material)


# ---------------------------------------------------------------------------------------------------------------
# Decisions.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseEvent:
    payload: CaseOpened | CaseUpdated | CaseLinked
    triggered_by: EnrichedReport | None = None
    # Other queues that get a copy addressed to themselves: the owner's CROSS; for a link, the report's CROSS.
    copies_to: tuple[str, ...] = ()

    @property
    def case_id(self) -> str:
        return self.payload.case_id


@dataclass
class Effects:
    """What one record does: the case it writes (None: none), the index entries that follow (None deletes), the
    pending-flush hints (as the case's derived ``pending:`` entry says them), the events to send."""

    outcome: DedupOutcome | None = None
    case: CaseState | None = None
    index: dict[str, bytes | None] = field(default_factory=dict)
    pending: dict[str, tuple[str, datetime] | None] = field(default_factory=dict)
    events: list[CaseEvent] = field(default_factory=list)
    throttled: bool = False

    @property
    def writes(self) -> dict[str, bytes | None]:
        """Every state write: the case record and its index entries."""
        writes: dict[str, bytes | None] = {}
        if self.case is not None:
            writes[case_key(self.case.case_id)] = self.case.model_dump_json().encode()
        writes.update(self.index)
        return writes


def load_case(view: StateView, case_id: str) -> CaseState | None:
    raw = view.get(case_key(case_id))
    return CaseState.model_validate_json(raw) if raw else None


def _ref(view: StateView, key: str) -> CaseRef | None:
    raw = view.get(key)
    return CaseRef.model_validate_json(raw) if raw else None


def _open_case(view: StateView, case_id: str | None, moment: datetime, policy: DedupPolicy) -> CaseState | None:
    if case_id is None:
        return None
    case = load_case(view, case_id)
    return case if case is not None and case.open_at(moment, policy.case_window) else None


def _superseded(case: CaseState, report: EnrichedReport) -> bool:
    """The case's commune now resolves to another unit: a commune has one competent unit at a time, so its competence
    changed since the case opened. The point's reports from now on are the new unit's, in a case of its own."""
    where = report.jurisdiction
    return bool(case.commune_code) and case.commune_code == where.commune_code and case.unit_id != where.unit_id


def _candidate(view: StateView, case_id: str | None, report: EnrichedReport, policy: DedupPolicy) -> CaseState | None:
    case = _open_case(view, case_id, report.report.submitted_at, policy)
    return None if case is None or _superseded(case, report) else case


def _nearest_case(
    view: StateView, position: tuple[float, float], report: EnrichedReport, policy: DedupPolicy
) -> CaseState | None:
    cell = h3.latlng_to_cell(position[0], position[1], policy.h3_resolution)
    best: tuple[float, CaseState] | None = None
    for neighbour in h3.grid_disk(cell, 1):
        raw = view.get(cell_key(neighbour))
        if not raw:
            continue
        for case_id in CellCases.model_validate_json(raw).case_ids:
            case = _candidate(view, case_id, report, policy)
            if case is None or case.anchor is None:
                continue
            distance = h3.great_circle_distance(position, case.anchor, "m")
            if distance <= policy.distance_m and (best is None or distance < best[0]):
                best = (distance, case)
    return best[1] if best else None


def find_case(view: StateView, report: EnrichedReport, policy: DedupPolicy) -> CaseState | None:
    """The open case this report belongs to, if any."""
    if report.report.kind is ReportKind.DELIVERY_NETWORK:
        for identifier in network_identifiers(report, policy):
            ref = _ref(view, network_key(identifier))
            case = _candidate(view, ref.case_id if ref else None, report, policy)
            if case is not None:
                return case
        return None
    position = coordinates(report)
    if position is not None:
        case = _nearest_case(view, position, report, policy)
        if case is not None:
            return case
    address = point_address(report)
    if address is not None:
        ref = _ref(view, address_key(report.jurisdiction.commune_code, address))
        case = _candidate(view, ref.case_id if ref else None, report, policy)
        if case is not None and not _far_apart(position, case.anchor, policy):
            return case
    return None


def _far_apart(position: tuple[float, float] | None, anchor: tuple[float, float] | None, policy: DedupPolicy) -> bool:
    """Both located, and not within the merge distance: the same street name then says nothing of the same point."""
    if position is None or anchor is None:
        return False
    return h3.great_circle_distance(position, anchor, "m") > policy.distance_m


def _claims(view: StateView, case: CaseState, report: EnrichedReport, policy: DedupPolicy, sequence: int) -> dict[str, int]:
    """The case's claims once this report is in it: the address or network keys it says, where they lead elsewhere."""
    claims = dict(case.claims)
    if case.kind is ReportKind.DELIVERY_NETWORK:
        keys = [network_key(identifier) for identifier in network_identifiers(report, policy)]
    else:
        address = point_address(report)
        keys = [] if address is None else [address_key(report.jurisdiction.commune_code, address)]
    for key in keys:
        existing = _ref(view, key)
        if existing is None or existing.case_id != case.case_id:
            claims[key] = sequence
    return claims


def index_writes(view: StateView, old: CaseState | None, new: CaseState | None, policy: DedupPolicy) -> dict[str, bytes | None]:
    """The index entries that follow from a case record changing from ``old`` to ``new`` (None: absent, deleted).

    The same function runs when the worker writes the case and when a worker restores the case from the changelog,
    so the index is the same on both and never needs a Kafka record of its own.
    """
    writes: dict[str, bytes | None] = {}
    if new is None:
        if old is not None:
            _unindex(view, writes, old, policy)
        return writes
    ref = CaseRef(case_id=new.case_id).model_dump_json().encode()
    for report_id in new.reports:
        if old is None or report_id not in old.reports:
            writes[seen_key(report_id)] = ref
    for key, sequence in new.claims.items():
        if old is not None and old.claims.get(key) == sequence:
            continue
        existing = _ref(view, key)
        # A later claim wins (the key then leads to the newer case); replaying claims in their order gives the same.
        if existing is None or existing.case_id == new.case_id or existing.sequence is None or existing.sequence <= sequence:
            writes[key] = CaseRef(case_id=new.case_id, sequence=sequence).model_dump_json().encode()
    if new.anchor is not None and (old is None or old.anchor is None):
        key = _anchor_cell(new.anchor, policy)
        raw = view.get(key)
        case_ids = CellCases.model_validate_json(raw).case_ids if raw else []
        if new.case_id not in case_ids:
            writes[key] = CellCases(case_ids=[*case_ids, new.case_id]).model_dump_json().encode()
    if new.pending:
        hint = PendingHint(key=_tick_key(new), due_at=new.last_event_at + policy.update_throttle)
        writes[pending_key(new.case_id)] = hint.model_dump_json().encode()
    elif old is not None and old.pending:
        writes[pending_key(new.case_id)] = None
    return writes


def _unindex(view: StateView, writes: dict[str, bytes | None], case: CaseState, policy: DedupPolicy) -> None:
    for report_id in case.reports:
        writes[seen_key(report_id)] = None
    for key in case.claims:
        existing = _ref(view, key)
        if existing is not None and existing.case_id == case.case_id:
            writes[key] = None
    if case.anchor is not None:
        key = _anchor_cell(case.anchor, policy)
        raw = view.get(key)
        case_ids = [cid for cid in (CellCases.model_validate_json(raw).case_ids if raw else []) if cid != case.case_id]
        writes[key] = CellCases(case_ids=case_ids).model_dump_json().encode() if case_ids else None
    if case.pending:
        writes[pending_key(case.case_id)] = None


def _anchor_cell(anchor: tuple[float, float], policy: DedupPolicy) -> str:
    return cell_key(h3.latlng_to_cell(anchor[0], anchor[1], policy.h3_resolution))


def _record(view: StateView, effects: Effects, old: CaseState | None, new: CaseState, report: EnrichedReport,
            policy: DedupPolicy, sequence: int, fingerprint: str | None) -> None:
    """The case as written: with the report's id and fingerprint in it; and the index entries that follow."""
    submitted = report.report.submitted_at
    fingerprints = {
        key: seen_at for key, seen_at in new.fingerprints.items() if submitted - seen_at <= policy.resubmission_window
    }
    if fingerprint is not None:
        fingerprints[fingerprint] = max(submitted, fingerprints.get(fingerprint, submitted))
    case = new.model_copy(update={
        "reports": {**new.reports, report.report.report_id: sequence}, "fingerprints": fingerprints,
    })
    effects.case = case
    effects.index = index_writes(view, old, case, policy)


def decide_report(view: StateView, report: EnrichedReport, now: datetime, policy: DedupPolicy, area: str = "",
                  sequence: int = 0) -> Effects:
    """The deduplication decision for one enriched report; ``now`` is the record's Kafka timestamp, ``area`` its
    key (streams/dedup_area.py), ``sequence`` its offset (the order of the index claims)."""
    effects = Effects()
    canonical = report.report
    if view.get(seen_key(canonical.report_id)) is not None:
        effects.outcome = DedupOutcome.DUPLICATE
        return effects

    case = find_case(view, report, policy)
    if case is None:
        opened = _open(view, effects, report, now, policy, area, sequence)
        fingerprint = contact_fingerprint(report, opened.case_id, policy)
        _record(view, effects, None, opened, report, policy, sequence, fingerprint)
        return effects
    fingerprint = contact_fingerprint(report, case.case_id, policy)
    if fingerprint is not None and _resubmitted(view, case, fingerprint, canonical.submitted_at, policy):
        effects.outcome = DedupOutcome.RESUBMISSION
        _record(view, effects, case, case, report, policy, sequence, None)
        return effects
    merged = _merge(view, effects, case, report, now, policy, sequence)
    _record(view, effects, case, merged, report, policy, sequence, fingerprint)
    return effects


def _resubmitted(view: StateView, case: CaseState, fingerprint: str, submitted: datetime, policy: DedupPolicy) -> bool:
    seen_at = case.fingerprints.get(fingerprint)
    if seen_at is None:  # an older state kept fingerprints in entries of their own
        previous = _ref(view, resubmission_key(fingerprint))
        seen_at = previous.seen_at if previous else None
    return seen_at is not None and submitted - seen_at <= policy.resubmission_window


def _open(
    view: StateView, effects: Effects, report: EnrichedReport, now: datetime, policy: DedupPolicy, area: str,
    sequence: int,
) -> CaseState:
    canonical, jurisdiction = report.report, report.jurisdiction
    # Stable: the same first report always opens the same case, whoever processes it and however often.
    case_id = case_id_for(jurisdiction.unit_id, f"report:{canonical.report_id}")
    case = CaseState(
        case_id=case_id,
        unit_id=jurisdiction.unit_id,
        unit_name=jurisdiction.unit_name,
        cross_unit_id=jurisdiction.cross_unit_id,
        area=area,
        commune_code=jurisdiction.commune_code,
        kind=canonical.kind,
        anchor=coordinates(report) if canonical.kind is ReportKind.DEALING_POINT else None,
        opened_at=now,
        first_seen=canonical.submitted_at,
        last_seen=canonical.submitted_at,
        report_count=1,
        channels=[canonical.channel],
        version=1,
        last_event_at=now,
    )
    case = case.model_copy(update={"claims": _claims(view, case, report, policy, sequence)})
    effects.outcome = DedupOutcome.OPENED
    effects.events.append(
        CaseEvent(
            CaseOpened(
                case_id=case_id, unit_id=case.unit_id, opened_at=now, first_seen=case.first_seen,
                last_seen=case.last_seen, channels=case.channels, report=report,
            ),
            triggered_by=report,
            copies_to=_crosses(case),
        )
    )
    return case


def _crosses(case: CaseState) -> tuple[str, ...]:
    return (case.cross_unit_id,) if case.cross_unit_id and case.cross_unit_id != case.unit_id else ()


def _link(effects: Effects, case: CaseState, report: EnrichedReport, now: datetime) -> None:
    """A report of another unit's territory joined the case: tell that unit (and its CROSS, if not the case's)."""
    where = report.jurisdiction
    if where.unit_id == case.unit_id:
        return
    copies = (where.cross_unit_id,) if where.cross_unit_id not in (None, case.cross_unit_id, where.unit_id) else ()
    effects.events.append(
        CaseEvent(
            CaseLinked(
                case_id=case.case_id, unit_id=where.unit_id, owner_unit_id=case.unit_id,
                owner_unit_name=case.unit_name or case.unit_id, linked_at=now, report_count=case.report_count,
                report=report,
            ),
            triggered_by=report,
            copies_to=tuple(c for c in copies if c),
        )
    )


def _merge(
    view: StateView, effects: Effects, case: CaseState, report: EnrichedReport, now: datetime, policy: DedupPolicy,
    sequence: int,
) -> CaseState:
    canonical = report.report
    merged = case.model_copy(
        update={
            "report_count": case.report_count + 1,
            "first_seen": min(case.first_seen, canonical.submitted_at),
            "last_seen": max(case.last_seen, canonical.submitted_at),
            "channels": sorted({*case.channels, canonical.channel}),
            "pending": [*case.pending, report],
            "claims": _claims(view, case, report, policy, sequence),
        }
    )
    effects.outcome = DedupOutcome.MERGED
    _link(effects, merged, report, now)
    due_at = merged.last_event_at + policy.update_throttle
    if not case.pending and now >= due_at:
        return _emit_update(effects, merged, now, triggered_by=report)
    # A busy case: this report waits for the case's next update, at most one per throttle interval.
    effects.throttled = True
    effects.pending[case.case_id] = (_tick_key(case), due_at)
    return merged


def _emit_update(effects: Effects, case: CaseState, now: datetime, triggered_by: EnrichedReport | None) -> CaseState:
    version = case.version + 1
    effects.events.append(
        CaseEvent(
            CaseUpdated(
                case_id=case.case_id, unit_id=case.unit_id, case_version=version, updated_at=now,
                report_count=case.report_count, first_seen=case.first_seen, last_seen=case.last_seen,
                channels=case.channels, new_reports=case.pending,
            ),
            triggered_by=triggered_by,
            copies_to=_crosses(case),
        )
    )
    effects.pending[case.case_id] = None
    return case.model_copy(update={"version": version, "last_event_at": now, "pending": []})


def flush_case(view: StateView, case_id: str, now: datetime, policy: DedupPolicy) -> Effects:
    """A throttled case's accumulated reports as one update, once its interval has passed; otherwise nothing."""
    effects = Effects()
    case = load_case(view, case_id)
    if case is None or not case.pending:
        effects.pending[case_id] = None  # a stale hint: nothing waits any more
        if view.get(pending_key(case_id)) is not None:
            effects.index[pending_key(case_id)] = None
        return effects
    due_at = case.last_event_at + policy.update_throttle
    if now < due_at:
        effects.pending[case_id] = (_tick_key(case), due_at)
        return effects
    flushed = _emit_update(effects, case, now, triggered_by=None)
    effects.case = flushed
    effects.index = index_writes(view, case, flushed, policy)
    return effects


def _tick_key(case: CaseState) -> str:
    """The key that sends the case's flush tick to its partition: its area (a case of an older state: its unit)."""
    return case.area or case.unit_id


def expired_keys(entries: Iterable[tuple[str, bytes]], now: datetime, policy: DedupPolicy) -> list[str]:
    """The state entries no report can match any more: closed cases, their index entries, old report ids.

    A case is closed ``case_window`` after its last report; one more window of margin keeps its report ids, so a
    late replay of one of its reports is still recognised as a duplicate rather than reopening the point.
    """
    entries = list(entries)
    horizon = now - policy.case_window
    dead_cases: set[str] = set()
    live_cases: set[str] = set()
    for key, raw in entries:
        if key.startswith("case:"):
            case = CaseState.model_validate_json(raw)
            if case.last_seen < horizon - policy.case_window and not case.pending:
                dead_cases.add(case.case_id)
            else:
                live_cases.add(case.case_id)
    expired = [f"case:{case_id}" for case_id in dead_cases]
    for key, raw in entries:
        if key.startswith(("seen:", "addr:", "net:")):
            ref = CaseRef.model_validate_json(raw)
            if ref.case_id not in live_cases:
                expired.append(key)
        elif key.startswith("resub:"):
            ref = CaseRef.model_validate_json(raw)
            if ref.seen_at is None or now - ref.seen_at > policy.resubmission_window:
                expired.append(key)
        elif key.startswith("cell:"):
            if not any(case_id in live_cases for case_id in CellCases.model_validate_json(raw).case_ids):
                expired.append(key)
        elif key.startswith("pending:") and key.removeprefix("pending:") not in live_cases:
            expired.append(key)
    return expired
