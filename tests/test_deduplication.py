"""The deduplication decisions, pure: a dict stands for the table state (the Faust wiring is tested on the broker)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sample_submissions import SEALER

from schemas.channels import Channel, Force, ReportKind
from schemas.events import CaseLinked, CaseOpened, CaseUpdated, case_id_for
from schemas.reports import (
    CanonicalReport,
    DeliveryNetwork,
    EnrichedReport,
    Jurisdiction,
    Place,
    ReporterContact,
    ResolutionMethod,
    report_id_for,
)
from streams.deduplication import (
    DedupOutcome,
    DedupPolicy,
    Effects,
    decide_report,
    expired_keys,
    flush_case,
    load_case,
    normalize_address,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = DedupPolicy(update_throttle=timedelta(minutes=15))


class DictState(dict[str, bytes]):
    def apply(self, effects: Effects) -> Effects:
        for key, value in effects.writes.items():
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value
        return effects


def report(
    *,
    at: datetime = T0,
    address: str | None = "12 rue Oberkampf",
    position: tuple[float, float] | None = None,
    phone: str | None = None,
    handle: str | None = None,
    email: str | None = None,
    description: str = "",
    channel: Channel = Channel.MONCOMMISSARIAT,
    unit_id: str = "pn-75-pp",
    departement: str = "75",
    commune: str = "75111",
    submission_id: str | None = None,
) -> EnrichedReport:
    kind = ReportKind.DELIVERY_NETWORK if (phone or handle) else ReportKind.DEALING_POINT
    submission = submission_id or uuid.uuid4().hex
    canonical = CanonicalReport(
        report_id=report_id_for(channel, submission), channel=channel, submission_id=submission,
        submitted_at=at, received_at=at, kind=kind,
        place=Place(
            street_address=address, commune_code=commune,
            latitude=position[0] if position else None, longitude=position[1] if position else None,
        ),
        delivery=DeliveryNetwork(phone_e164=phone, handle=handle) if kind is ReportKind.DELIVERY_NETWORK else None,
        description=description,
        reporter=SEALER.protect(ReporterContact(email=email)) if email else None,
    )
    jurisdiction = Jurisdiction(
        commune_code=commune, commune_name=f"Commune {commune}", departement=departement, force=Force.POLICE, unit_id=unit_id,
        unit_name=f"Unité {unit_id}", cross_unit_id=f"cross-{departement}", method=ResolutionMethod.CODE_INSEE,
        reference_version="test",
    )
    return EnrichedReport(report=canonical, jurisdiction=jurisdiction)


def decide(state: DictState, enriched: EnrichedReport, now: datetime | None = None) -> Effects:
    return state.apply(decide_report(state, enriched, now or enriched.report.submitted_at, POLICY))


def north_of(position: tuple[float, float], metres: float) -> tuple[float, float]:
    return (position[0] + metres / 111_195, position[1])


def test_first_report_opens_a_case_with_a_stable_id() -> None:
    first = report()
    effects = decide(DictState(), first)

    assert effects.outcome is DedupOutcome.OPENED
    [event] = effects.events
    assert isinstance(event.payload, CaseOpened)
    assert event.payload.case_id == case_id_for("pn-75-pp", f"report:{first.report.report_id}")
    assert event.payload.report == first
    # Deciding the same report on the same state again gives the same case and the same event.
    assert decide_report(DictState(), first, T0, POLICY).events[0].payload == event.payload


def test_the_same_submission_again_is_dropped_as_a_duplicate() -> None:
    state = DictState()
    first = report(submission_id="mc-1")
    decide(state, first)
    again = decide(state, report(submission_id="mc-1", at=T0 + timedelta(minutes=1)))

    assert again.outcome is DedupOutcome.DUPLICATE
    assert again.events == [] and again.writes == {}


def test_same_address_written_differently_merges_into_one_case() -> None:
    state = DictState()
    opened = decide(state, report(address="12 Rue Oberkampf"))
    merged = decide(state, report(address="12, r. de l'Oberkampf", at=T0 + timedelta(hours=1)))

    assert merged.outcome is DedupOutcome.MERGED
    [update] = merged.events
    assert isinstance(update.payload, CaseUpdated)
    assert update.payload.case_id == opened.events[0].case_id
    assert (update.payload.report_count, update.payload.case_version) == (2, 2)


def test_another_address_in_the_commune_is_another_point() -> None:
    state = DictState()
    decide(state, report(address="12 rue Oberkampf"))
    assert decide(state, report(address="14 rue Oberkampf")).outcome is DedupOutcome.OPENED


def test_positions_within_the_distance_merge_and_farther_ones_do_not() -> None:
    state = DictState()
    here = (48.8649, 2.3700)
    decide(state, report(address=None, position=here))

    assert decide(state, report(address=None, position=north_of(here, 120))).outcome is DedupOutcome.MERGED
    assert decide(state, report(address=None, position=north_of(here, 220))).outcome is DedupOutcome.OPENED


def test_a_position_matches_a_point_across_an_h3_cell_edge() -> None:
    """The neighbours of the report's cell are searched: a case just across a cell border is found."""
    import h3

    resolution = POLICY.h3_resolution
    here = (48.8649, 2.3700)
    cell = h3.latlng_to_cell(*here, resolution)
    # walk north until the cell changes, then report 10 m on each side of the border
    step = here
    while h3.latlng_to_cell(*step, resolution) == cell:
        step = north_of(step, 5)
    state = DictState()
    decide(state, report(address=None, position=north_of(step, -10)))
    assert decide(state, report(address=None, position=north_of(step, 10))).outcome is DedupOutcome.MERGED


def test_delivery_network_merges_on_phone_or_handle_whatever_the_area() -> None:
    state = DictState()
    opened = decide(state, report(address="centre", phone="+33612345678"))
    by_phone = decide(state, report(address="gare", phone="+33612345678", handle="livreur", at=T0 + timedelta(hours=1)))
    # the handle the second report brought now leads to the same case
    by_handle = decide(state, report(address=None, handle="@Livreur", at=T0 + timedelta(hours=2)))

    assert by_phone.outcome is DedupOutcome.MERGED
    assert by_handle.outcome is DedupOutcome.MERGED
    assert decide(state, report(phone="+33699999999")).outcome is DedupOutcome.OPENED
    case_ids = {e.case_id for e in opened.events + by_phone.events}
    assert len(case_ids) == 1


def test_a_point_on_a_unit_boundary_is_one_case_its_first_units_and_the_other_unit_is_told() -> None:
    state = DictState()
    here = (48.8649, 2.3700)
    opened = decide(state, report(address=None, position=here, unit_id="pn-93-bobigny", departement="93",
                                  commune="93055"))
    across = report(address=None, position=north_of(here, 60), unit_id="gn-77-chelles", departement="77",
                    commune="77108", at=T0 + timedelta(hours=1))
    merged = decide(state, across)

    assert merged.outcome is DedupOutcome.MERGED
    by_type = {type(event.payload).__name__: event for event in merged.events}
    assert set(by_type) == {"CaseUpdated", "CaseLinked"}
    update, link = by_type["CaseUpdated"], by_type["CaseLinked"]
    case_id = opened.events[0].case_id
    assert isinstance(update.payload, CaseUpdated) and isinstance(link.payload, CaseLinked)
    # the owner's queue: its case, with the other unit's report in it; a copy for the owner's CROSS only
    assert (update.payload.case_id, update.payload.unit_id) == (case_id, "pn-93-bobigny")
    assert update.payload.new_reports == [across] and update.copies_to == ("cross-93",)
    # the other unit's queue: a link to that case, whose it is and how many reports it has; its CROSS told too
    assert (link.payload.case_id, link.payload.unit_id, link.payload.owner_unit_id) == (
        case_id, "gn-77-chelles", "pn-93-bobigny")
    assert link.payload.owner_unit_name == "Unité pn-93-bobigny"
    assert link.payload.report == across and link.payload.report_count == 2 and link.copies_to == ("cross-77",)
    # a third report from the owner's own territory links nothing
    again = decide(state, report(address=None, position=north_of(here, -40), unit_id="pn-93-bobigny",
                                 departement="93", commune="93055", at=T0 + timedelta(hours=2)))
    assert again.outcome is DedupOutcome.MERGED
    assert [type(event.payload).__name__ for event in again.events] == ["CaseUpdated"]


def test_after_a_commune_changes_unit_its_points_open_cases_in_the_new_unit() -> None:
    state = DictState()
    here = (45.0547, 5.6770)
    before = decide(state, report(position=here, unit_id="gn-38-vif", departement="38", commune="38545"))
    # The competence reference moved the commune to the police: the same point, by position and by address alone.
    moved = decide(state, report(position=north_of(here, 20), unit_id="pn-38-grenoble", departement="38",
                                 commune="38545", at=T0 + timedelta(hours=1)))
    assert moved.outcome is DedupOutcome.OPENED
    [opened] = moved.events
    assert isinstance(opened.payload, CaseOpened) and opened.payload.unit_id == "pn-38-grenoble"
    assert opened.case_id != before.events[0].case_id
    # Later reports of the point, located or not, join the new unit's case, not the former one's.
    later = [report(position=here, unit_id="pn-38-grenoble", departement="38", commune="38545",
                    at=T0 + timedelta(hours=2)),
             report(unit_id="pn-38-grenoble", departement="38", commune="38545", at=T0 + timedelta(hours=3))]
    assert [decide(state, each).outcome for each in later] == [DedupOutcome.MERGED] * 2
    counts = {case_id: case.report_count for case_id in (before.events[0].case_id, opened.case_id)
              if (case := load_case(state, case_id)) is not None}
    assert counts == {before.events[0].case_id: 1, opened.case_id: 3}


def test_the_same_street_far_along_is_another_point_and_without_a_position_the_address_decides() -> None:
    state = DictState()
    here = (48.8649, 2.3700)
    decide(state, report(address="avenue de la République", position=here))

    far = decide(state, report(address="av. de la Republique", position=north_of(here, 600)))
    assert far.outcome is DedupOutcome.OPENED
    unlocated = decide(state, report(address="Avenue de la République"))
    assert unlocated.outcome is DedupOutcome.MERGED


def test_a_delivery_network_merges_across_units_and_departements() -> None:
    state = DictState()
    opened = decide(state, report(address=None, phone="+33612345678", unit_id="pn-75-pp"))
    elsewhere = decide(state, report(address=None, handle="livreur13", phone="+33612345678",
                                     unit_id="pn-13-marseille", departement="13", commune="13201",
                                     at=T0 + timedelta(hours=1)))

    assert elsewhere.outcome is DedupOutcome.MERGED
    links = [e.payload for e in elsewhere.events if isinstance(e.payload, CaseLinked)]
    assert [(link.case_id, link.unit_id) for link in links] == [(opened.events[0].case_id, "pn-13-marseille")]


def test_a_report_after_the_case_window_opens_a_new_case() -> None:
    state = DictState()
    first = decide(state, report())
    decide(state, report(at=T0 + timedelta(days=20)))
    still_open = decide(state, report(at=T0 + timedelta(days=49)))
    reopened = decide(state, report(at=T0 + timedelta(days=80)))

    assert still_open.outcome is DedupOutcome.MERGED  # 29 days after the case's last report
    assert reopened.outcome is DedupOutcome.OPENED
    assert reopened.events[0].case_id != first.events[0].case_id


def test_the_same_person_sending_the_same_report_again_is_a_resubmission() -> None:
    state = DictState()
    decide(state, report(email="a@example.org", description="Guetteurs devant le hall."))
    on_other_channel = decide(
        state,
        report(email="a@example.org", description="guetteurs devant le hall", channel=Channel.BRIGADE_NUMERIQUE,
               at=T0 + timedelta(minutes=30)),
    )
    someone_else = decide(state, report(email="b@example.org", description="Guetteurs devant le hall.",
                                        at=T0 + timedelta(hours=1)))
    two_days_later = decide(state, report(email="a@example.org", description="Guetteurs devant le hall.",
                                          at=T0 + timedelta(days=2)))

    assert on_other_channel.outcome is DedupOutcome.RESUBMISSION and on_other_channel.events == []
    assert someone_else.outcome is DedupOutcome.MERGED
    assert two_days_later.outcome is DedupOutcome.MERGED


def test_updates_of_a_busy_case_are_throttled_and_flushed_together() -> None:
    state = DictState()
    case_id = decide(state, report()).events[0].case_id
    second = decide(state, report(at=T0 + timedelta(minutes=1)))
    third = decide(state, report(at=T0 + timedelta(minutes=2)))

    assert second.throttled and third.throttled
    assert second.events == third.events == []
    assert third.pending[case_id] == ("pn-75-pp", T0 + timedelta(minutes=15))
    assert state.apply(flush_case(state, case_id, T0 + timedelta(minutes=10), POLICY)).events == []

    flushed = state.apply(flush_case(state, case_id, T0 + timedelta(minutes=15), POLICY))
    [update] = flushed.events
    assert isinstance(update.payload, CaseUpdated)
    assert (update.payload.case_version, update.payload.report_count, len(update.payload.new_reports)) == (2, 3, 2)
    assert update.payload.first_seen == T0 and update.payload.last_seen == T0 + timedelta(minutes=2)
    assert flushed.pending == {case_id: None}
    # nothing left: a second flush sends nothing
    assert flush_case(state, case_id, T0 + timedelta(hours=1), POLICY).events == []
    # a report long after the last update goes out at once, as version 3
    late = decide(state, report(at=T0 + timedelta(hours=2)), now=T0 + timedelta(hours=2))
    assert [e.payload.case_version for e in late.events] == [3]


def test_channels_accumulate_on_the_case() -> None:
    state = DictState()
    decide(state, report(channel=Channel.BRIGADE_NUMERIQUE))
    merged = decide(state, report(at=T0 + timedelta(hours=1)))
    assert merged.events[0].payload.channels == [Channel.BRIGADE_NUMERIQUE, Channel.MONCOMMISSARIAT]


def test_address_normalization_reads_common_writings_as_one() -> None:
    assert normalize_address("12 Bd de la Villette") == normalize_address("12 boulevard Villette")
    assert normalize_address("3bis, Av. Jean-Jaurès") == normalize_address("3 BIS avenue jean jaures")
    assert normalize_address("12 rue Oberkampf") != normalize_address("21 rue Oberkampf")


def test_closed_cases_and_their_index_entries_expire() -> None:
    state = DictState()
    decide(state, report(address=None, position=(48.8649, 2.37), email="a@example.org"))
    decide(state, report(phone="+33612345678", at=T0 + timedelta(days=50)))
    # A case is kept one more window after it closes (30 days after its last report), so late replays of its
    # reports are still recognised.
    now = T0 + timedelta(days=55)
    assert not any(key.startswith("case:") for key in expired_keys(state.items(), now, POLICY))

    later = T0 + timedelta(days=61)
    expired = expired_keys(state.items(), later, POLICY)
    alive = {key for key in state if key not in expired}
    assert sum(key.startswith("case:") for key in expired) == 1
    assert sum(key.startswith("case:") for key in alive) == 1
    assert not any(key.startswith(("cell:", "resub:")) for key in alive)
    assert any(key.startswith("net:") for key in alive)


def test_merging_meets_its_precision_and_recall_on_noisy_ground_truth() -> None:
    """The worker's normalization, jurisdiction and decisions on ground-truth traffic (see bench-dedup)."""
    from devkit.bench_dedup import measure_quality
    from devkit.dedup_traffic import TrafficShape, ground_truth_traffic
    from signalements.settings import Settings
    from streams.jurisdiction import JurisdictionReference

    traffic = ground_truth_traffic(TrafficShape(points=400), seed=5)
    quality = measure_quality(traffic, JurisdictionReference.from_settings(Settings()), POLICY, SEALER.protect)

    assert quality["precision"] >= 0.98 and quality["recall"] >= 0.95, quality
    assert quality["repeats_dropped"] == quality["repeats"] > 0
    assert quality["originals_dropped_wrongly"] == 0
