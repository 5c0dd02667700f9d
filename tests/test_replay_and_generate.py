"""Replay of export files into the raw topics, and the synthetic traffic generator with its ground truth."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from pipeline_probe import read_topic
from sample_submissions import conversation_delivery_network, portal_dealing_point

from devkit.traffic_generator import TrafficGenerator, TrafficMix
from producers.replay import Outcome, replay_export
from schemas.channels import Channel
from schemas.envelope import decode
from schemas.topics import Topics
from signalements.kafka_security import Role
from signalements.settings import PROJECT_ROOT, Settings
from signalements.topic_admin import ensure_topics, pipeline_topics
from streams.jurisdiction import JurisdictionReference

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_replay_of_json_lines_accepts_valid_lines_and_names_each_rejected_one(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    portal, conversation = portal_dealing_point(), conversation_delivery_network()
    bad_postcode = portal_dealing_point()
    bad_postcode["report"]["place"]["postcode"] = "ABCDE"
    abroad = conversation_delivery_network()
    abroad["report"]["area_served"]["gps"] = "40.4168,-3.7038"
    source = write_lines(tmp_path / "export.jsonl", [
        json.dumps(portal),                                                        # 1 accepted
        json.dumps({"channel": "brigade-numerique", "submission": conversation}),  # 2 accepted
        "{not json",                                                               # 3 rejected
        json.dumps(bad_postcode),                                                  # 4 rejected: field
        json.dumps(portal),                                                        # 5 duplicate of line 1
        json.dumps(abroad),                                                        # 6 rejected: normalization
        json.dumps({"something": "else"}),                                         # 7 rejected: no channel
    ])

    summary = replay_export(settings, source, show_progress=False)

    assert summary.counts == {"accepted": 2, "valid": 0, "duplicate": 1, "rejected": 4, "failed": 0}
    assert summary.rejected_lines == [3, 4, 6, 7]
    entries = {entry["line"]: entry for entry in map(json.loads, Path(summary.rejected_file).read_text().splitlines())}
    assert set(entries) == {3, 4, 5, 6, 7}
    assert entries[4]["reason"].startswith("report.dealing_point.place.postcode")
    assert "outside France" in entries[6]["reason"]
    assert entries[5]["outcome"] == "duplicate"
    assert json.loads(entries[4]["content"]) == bad_postcode  # the original line, to fix and replay

    topics = Topics(settings.topic_namespace)
    [record] = read_topic(settings, topics.raw(Channel.MONCOMMISSARIAT))
    assert decode(record.headers, record.key, record.value).payload.submission_id == portal["submission_id"]
    assert len(read_topic(settings, topics.raw(Channel.BRIGADE_NUMERIQUE))) == 1

    again = replay_export(settings, source, show_progress=False)  # a second replay writes nothing new
    assert again.counts[Outcome.ACCEPTED.value] == 0
    assert again.counts[Outcome.DUPLICATE.value] == 3
    assert len(read_topic(settings, topics.raw(Channel.MONCOMMISSARIAT))) == 1


def test_replay_reads_csv_with_dotted_columns(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    source = tmp_path / "export.csv"
    columns = ["channel", "submission_id", "submitted_at", "report.kind", "report.place.label", "report.place.postcode",
               "report.place.citycode", "report.place.city", "report.place.latitude", "report.place.longitude",
               "report.activity", "report.days_seen"]
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerow(["moncommissariat", "csv-1", "2026-03-03T10:00:00+01:00", "dealing_point",
                         "3 Rue Oberkampf 75011 Paris", "75011", "75111", "Paris", "48.86", "2.37", "stash",
                         '["lundi", "mardi"]'])
        writer.writerow(["moncommissariat", "csv-2", "yesterday", "dealing_point", "x", "75011", "75111", "Paris",
                         "", "", "stash", ""])

    summary = replay_export(settings, source, show_progress=False)

    assert (summary.counts["accepted"], summary.counts["rejected"]) == (1, 1)
    assert summary.rejected_lines == [3]  # the header is line 1
    [record] = read_topic(settings, Topics(settings.topic_namespace).raw(Channel.MONCOMMISSARIAT))
    payload = decode(record.headers, record.key, record.value).payload
    assert payload.report.days_seen == ["lundi", "mardi"]
    assert payload.report.place.latitude == 48.86


def test_dry_run_validates_without_writing(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    source = write_lines(tmp_path / "export.jsonl", [json.dumps(portal_dealing_point()), "[]"])

    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "replay", str(source), "--dry-run", "--no-progress"],
        capture_output=True, text=True, env={**settings.as_environment(), "PATH": ""}, timeout=120, cwd=PROJECT_ROOT,
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["valid"], summary["rejected"], summary["accepted"]) == (1, 1, 0)
    assert read_topic(settings, Topics(settings.topic_namespace).raw(Channel.MONCOMMISSARIAT)) == []


def generated(count: int, mix: TrafficMix, seed: int = 7) -> list:
    communes = JurisdictionReference.from_settings(Settings()).communes
    return list(TrafficGenerator(communes, mix, seed=seed).reports(count))


def test_generator_is_reproducible_and_uses_the_reference_communes() -> None:
    mix = TrafficMix()
    first, second = generated(300, mix), generated(300, mix)
    assert [r.submission for r in first] == [r.submission for r in second]
    codes = {c.code for c in JurisdictionReference.from_settings(Settings()).communes}
    assert {r.truth["commune_code"] for r in first} <= codes
    assert {r.channel for r in first} == set(Channel)
    assert {r.truth["kind"] for r in first} == {"dealing_point", "delivery_network"}


def test_generated_traffic_matches_its_ground_truth_at_the_door(tmp_path: Path) -> None:
    """Valid per the truth ⇔ the intake's own validation accepts it; exact duplicates repeat an earlier id."""
    from producers.replay import ExportLine, validate_line

    reports = generated(1500, TrafficMix(exact_duplicate_share=0.1, same_point_share=0.4, invalid_share=0.1))
    seen: set[tuple[str, str]] = set()
    for report in reports:
        checked = validate_line(ExportLine(line=1, text="", body=report.submission, channel=report.channel))
        assert isinstance(checked, str) != report.truth["valid"], (report.truth, checked)
        key = (report.truth["channel"], report.truth["submission_id"])
        assert report.truth["exact_duplicate"] == (key in seen)
        seen.add(key)
    shares = {
        "invalid": sum(not r.truth["valid"] for r in reports) / len(reports),
        "duplicate": sum(r.truth["exact_duplicate"] for r in reports) / len(reports),
    }
    assert 0.06 < shares["invalid"] < 0.14 and 0.06 < shares["duplicate"] < 0.14


def test_reports_of_one_point_are_written_differently_but_stay_close() -> None:
    from streams.normalize import normalize_handle, normalize_phone

    reports = generated(2000, TrafficMix(exact_duplicate_share=0, invalid_share=0, same_point_share=0.5))
    by_point: dict[str, list] = defaultdict(list)
    for report in reports:
        by_point[report.truth["point_id"]].append(report)
    shared = [group for group in by_point.values() if len(group) > 1]
    assert len(shared) > 100

    writings, phones_differ = 0, 0
    for group in shared:
        assert len({r.truth["commune_code"] for r in group}) == 1
        positions = [_position(r) for r in group if _position(r) is not None]
        for a in positions:
            for b in positions:
                assert _metres(a, b) < 100  # within a few tens of metres of each other
        contacts = [_contact(r) for r in group if _contact(r)]
        phones = {c["phone"] for c in contacts if "phone" in c}
        if len({normalize_phone(p, "phone") for p in phones}) > 1:
            raise AssertionError(f"one network, several numbers: {phones}")
        phones_differ += len(phones) > 1
        handles = {normalize_handle(c["handle"]) for c in contacts if "handle" in c}
        assert len(handles) <= 1
        writings += len({json.dumps(_place(r), sort_keys=True) for r in group}) > 1
    assert writings > len(shared) / 2
    assert phones_differ > 0


def _place(report) -> dict:  # noqa: ANN001
    body = report.submission["report"]
    return body.get("place") or body["area_served"]


def _contact(report) -> dict | None:  # noqa: ANN001
    return report.submission["report"].get("contact")


def _position(report) -> tuple[float, float] | None:  # noqa: ANN001
    place = _place(report)
    if "gps" in place:
        lat, lon = (float(x) for x in place["gps"].split(","))
        return lat, lon
    if "latitude" in place:
        return place["latitude"], place["longitude"]
    return None


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    import math

    dlat = (a[0] - b[0]) * 111_000
    dlon = (a[1] - b[1]) * 111_000 * math.cos(math.radians(a[0]))
    return math.hypot(dlat, dlon)


def test_generate_command_writes_traffic_and_truth_line_for_line(tmp_path: Path) -> None:
    out, truth = tmp_path / "traffic.jsonl", tmp_path / "truth.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "generate", "--out", str(out), "--truth", str(truth),
         "--count", "200", "--seed", "3"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    traffic_lines = [json.loads(line) for line in out.read_text().splitlines()]
    truth_lines = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(traffic_lines) == len(truth_lines) == 200
    for line, fact in zip(traffic_lines, truth_lines, strict=True):
        submission_id = line["submission"].get("submission_id") or line["submission"].get("conversation_id")
        assert (line["channel"], submission_id) == (fact["channel"], fact["submission_id"])


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_shares_out_of_range_are_refused(share: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        TrafficMix(invalid_share=share)


def test_replay_rate_paces_the_lines(settings: Settings, tmp_path: Path) -> None:
    # Pacing is against the start: line n is not sent before n / rate seconds (a lower bound, whatever the load).
    source = write_lines(tmp_path / "export.jsonl", [json.dumps(portal_dealing_point()) for _ in range(11)])
    summary = replay_export(settings, source, rate=20.0, dry_run=True, show_progress=False)
    assert summary.counts["valid"] == 11
    assert summary.elapsed_s >= 10 / 20.0
