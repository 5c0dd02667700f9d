"""``signalements bench-dedup``: how well and how fast reports are merged into cases. One JSON line on stdout.

Not a test: it measures.

- quality: ground-truth traffic (devkit/dedup_traffic.py: noisy addresses, jittered positions, phone numbers
  and handles in different writings, distinct points 200-400 m apart, retries, resubmissions) goes through the
  worker's own normalization, jurisdiction and deduplication decisions; precision and recall of point merging over
  pairs of reports (a pair is "merged" when both reports land in one case, "same point" in the ground truth), and
  how many retries and resubmissions were dropped. The state is one per deduplication area, as the worker's
  partitions hold it. At unit boundaries (devkit/boundary_traffic.py: points within 100 m of the limit between two
  units' communes), the same figures keyed by area (the worker) and keyed by unit (each unit alone, as before).
- throughput: the same decisions against a RocksDB state (rocksdict, as Faust's store), reports/s on one core.
- memory: RocksDB size on disk per million points (here) and the worker's resident memory after recovering N points.
- recovery (``--recovery-points N``): N distinct points' state written to a Faust worker's changelog topic on the
  real broker, then a fresh worker is started and timed until its tables are recovered and it is ready.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from rocksdict import Rdict

from devkit.boundary_traffic import WITHIN_BOUNDARY_M, boundary_traffic
from devkit.citizen_writing import offset_position
from devkit.dedup_traffic import TrafficShape, TruthReport, distinct_reports, ground_truth_traffic
from devkit.dev_pki import ensure_development_secrets
from schemas.channels import Channel
from schemas.reports import EnrichedReport
from schemas.submissions import BrigadeNumeriqueSubmission, MonCommissariatSubmission
from signalements.reporter_sealing import ContactSealer
from signalements.settings import Settings
from streams.case_tables import policy_from
from streams.dedup_area import area_of_position, dedup_area
from streams.deduplication import DedupOutcome, DedupPolicy, Effects, decide_report
from streams.jurisdiction import JurisdictionReference, Unrouted
from streams.normalize import ProtectContact, normalize_submission


def _say(message: str) -> None:
    print(f"[bench-dedup] {message}", file=sys.stderr, flush=True)


class DictState(dict[str, bytes]):
    def apply(self, effects: Effects) -> None:
        for key, value in effects.writes.items():
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value


class RocksState:
    """The state in RocksDB, as the Faust store keeps it (one DB per partition; one here)."""

    def __init__(self, path: Path) -> None:
        self.db = Rdict(str(path))

    def get(self, key: str) -> bytes | None:
        return self.db.get(key.encode())

    def apply(self, effects: Effects) -> None:
        for key, value in effects.writes.items():
            if value is None:
                self.db.delete(key.encode())
            else:
                self.db[key.encode()] = value

    def close(self) -> None:
        self.db.close()


def enriched_traffic(traffic: Iterable[TruthReport], reference: JurisdictionReference, protect: ProtectContact,
                     ) -> list[tuple[TruthReport, EnrichedReport]]:
    """The traffic as the route stage receives it: normalized (contacts sealed) and enriched by the worker's code."""
    received_at = datetime.now(UTC)
    enriched: list[tuple[TruthReport, EnrichedReport]] = []
    for truth in traffic:
        submission: MonCommissariatSubmission | BrigadeNumeriqueSubmission = (
            MonCommissariatSubmission.model_validate(truth.body)
            if truth.channel is Channel.MONCOMMISSARIAT else BrigadeNumeriqueSubmission.model_validate(truth.body)
        )
        report = normalize_submission(submission, received_at, protect)
        jurisdiction = reference.resolve_jurisdiction(report.place)
        if isinstance(jurisdiction, Unrouted):
            raise RuntimeError(f"traffic report {truth.submission_id} is unrouted: {jurisdiction.reason}")
        enriched.append((truth, EnrichedReport(report=report, jurisdiction=jurisdiction)))
    return enriched


def _pairs(groups: Iterable[Iterable[str]]) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for group in groups:
        members = sorted(group)
        pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return pairs


Keying = Callable[[EnrichedReport], str]


def area_keying(reference: JurisdictionReference) -> Keying:
    """The worker's: one state per deduplication area (a partition holds whole areas)."""
    return lambda enriched: dedup_area(enriched.report, enriched.jurisdiction, reference.commune_position)


def unit_keying(enriched: EnrichedReport) -> str:
    """Reports keyed by unit, as before the areas: each unit deduplicates alone."""
    return enriched.jurisdiction.unit_id


def measure_quality(traffic: list[TruthReport], reference: JurisdictionReference, policy: DedupPolicy,
                    protect: ProtectContact, keying: Keying | None = None) -> dict[str, object]:
    key_of = keying or area_keying(reference)
    states: dict[str, DictState] = {}
    case_of: dict[str, str] = {}
    unit_of: dict[str, str] = {}
    area_of: dict[str, str] = {}
    outcomes: Counter[str] = Counter()
    dropped_repeats = 0
    for truth, enriched in enriched_traffic(traffic, reference, protect):
        area = key_of(enriched)
        state = states.setdefault(area, DictState())
        unit_of[truth.report_id] = enriched.jurisdiction.unit_id
        area_of[truth.report_id] = area
        effects = decide_report(state, enriched, enriched.report.submitted_at, policy, area)
        state.apply(effects)
        assert effects.outcome is not None
        outcomes[effects.outcome.value] += 1
        if effects.outcome in (DedupOutcome.DUPLICATE, DedupOutcome.RESUBMISSION):
            dropped_repeats += truth.repeat_of is not None
            continue
        case_ids = {event.case_id for event in effects.events} or {
            key.removeprefix("case:") for key in effects.writes if key.startswith("case:")
        }
        case_of[truth.report_id] = case_ids.pop()
    truth_points = distinct_reports(traffic)
    counted = {rid for rids in truth_points.values() for rid in rids}
    by_case: dict[str, set[str]] = {}
    for report_id, case_id in case_of.items():
        if report_id in counted:
            by_case.setdefault(case_id, set()).add(report_id)
    predicted, actual = _pairs(by_case.values()), _pairs(truth_points.values())
    true_positive = len(predicted & actual)
    repeats = sum(truth.repeat_of is not None for truth in traffic)
    across = {pair for pair in actual if unit_of.get(pair[0]) != unit_of.get(pair[1])}
    return {
        "reports": len(traffic),
        "points": len(truth_points),
        "cases": len(by_case),
        "pairs_same_point": len(actual),
        "pairs_merged": len(predicted),
        "precision": round(true_positive / len(predicted), 4) if predicted else 1.0,
        "recall": round(true_positive / len(actual), 4) if actual else 1.0,
        "pairs_across_units": len(across),
        "recall_across_units": round(len(predicted & across) / len(across), 4) if across else None,
        "areas": len(states),
        "pairs_across_areas": sum(1 for a, b in actual if area_of.get(a) != area_of.get(b)),
        "repeats": repeats,
        "repeats_dropped": dropped_repeats,
        "originals_dropped_wrongly": sum(1 for rid in counted if rid not in case_of),
        "outcomes": dict(outcomes),
    }


def measure_throughput(enriched: list[tuple[TruthReport, EnrichedReport]], policy: DedupPolicy, workdir: Path) -> dict[str, object]:
    """Decisions per second against RocksDB, and the state's size per million points."""
    path = workdir / "throughput.db"
    state = RocksState(path)
    started = time.perf_counter()
    for _, report in enriched:
        state.apply(decide_report(state, report, report.report.submitted_at, policy))
    elapsed = time.perf_counter() - started
    cases = sum(1 for key in state.db.keys() if isinstance(key, bytes) and key.startswith(b"case:"))
    state.close()
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {
        "reports": len(enriched),
        "seconds": round(elapsed, 3),
        "reports_per_s": round(len(enriched) / elapsed, 1),
        "cases_in_state": cases,
        "state_disk_bytes": disk,
        "state_disk_mb_per_million_points": round(disk / cases * 1_000_000 / 1e6, 1) if cases else None,
    }


def area_split_share(distance_m: float, pairs: int = 200_000, seed: int = 1) -> dict[str, object]:
    """The share of two positions within ``distance_m`` of each other, anywhere in metropolitan France, that fall in
    two deduplication areas (an edge of the coarse H3 grid between them): the pairs the keying cannot merge."""
    rng = random.Random(seed)
    split = 0
    for _ in range(pairs):
        latitude, longitude = rng.uniform(42.3, 51.1), rng.uniform(-4.8, 8.2)
        distance, bearing = distance_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        other = offset_position((latitude, longitude), distance * math.cos(bearing), distance * math.sin(bearing))
        split += area_of_position(latitude, longitude) != area_of_position(*other)
    return {"pairs": pairs, "within_m": distance_m, "in_two_areas": split, "share": round(split / pairs, 5)}


def run(points: int, seed: int, throughput_points: int, settings: Settings, boundary_points: int = 1000,
        ) -> dict[str, object]:
    reference = JurisdictionReference.from_settings(settings)
    ensure_development_secrets(settings)
    policy = policy_from(settings)
    protect = ContactSealer.load(settings.reporter_keys_path, policy.identifier_secret).protect
    _say(f"quality: {points} points")
    traffic = ground_truth_traffic(TrafficShape(points=points), seed=seed)
    figures: dict[str, object] = {"policy": {
        "distance_m": policy.distance_m, "h3_resolution": policy.h3_resolution,
        "case_window_days": policy.case_window.days, "resubmission_window_s": policy.resubmission_window.total_seconds(),
    }}
    figures["quality"] = measure_quality(traffic, reference, policy, protect)
    _say(f"unit boundaries: {boundary_points} points within {WITHIN_BOUNDARY_M:.0f} m of one")
    at_boundaries = boundary_traffic(reference, boundary_points, seed=seed)
    figures["unit_boundaries"] = {
        "keyed_by_area": measure_quality(at_boundaries, reference, policy, protect),
        "keyed_by_unit": measure_quality(at_boundaries, reference, policy, protect, unit_keying),
        "coarse_grid_split": area_split_share(policy.distance_m, seed=seed),
    }
    _say(f"throughput: {throughput_points} points")
    bulk = ground_truth_traffic(TrafficShape(points=throughput_points, max_reports_per_point=3), seed=seed + 1)
    enriched = enriched_traffic(bulk, reference, protect)
    workdir = Path(tempfile.mkdtemp(prefix="bench-dedup-", dir=settings.state_dir if settings.state_dir.exists() else None))
    try:
        figures["throughput"] = measure_throughput(enriched, policy, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def main(points: int = 2000, seed: int = 1, throughput_points: int = 20_000, recovery_points: int = 0,
         boundary_points: int = 1000) -> None:
    settings = Settings()
    figures = run(points, seed, throughput_points, settings, boundary_points)
    if recovery_points:
        from devkit.bench_recovery import measure_recovery

        figures["recovery"] = measure_recovery(settings, recovery_points)
    print(json.dumps(figures))
