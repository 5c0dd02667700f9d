"""`signalements bench-dedup` end to end on the real broker, small: a benchmark nobody runs breaks unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_probe import broker_access_environment

from signalements.settings import PROJECT_ROOT

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

RECOVERY_POINTS = 400


def test_bench_dedup_measures_recovery_takeover_and_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {"PATH": "", "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SIGNALEMENTS_STATE_DIR": str(tmp_path),
           **broker_access_environment()}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench-dedup", "--points", "40", "--throughput-points", "200",
         "--boundary-points", "60", "--recovery-points", str(RECOVERY_POINTS)],
        capture_output=True, text=True, env=env, timeout=300, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    quality = figures["quality"]
    assert quality["points"] == 40 and 0.9 <= quality["precision"] <= 1.0 and 0.0 < quality["recall"] <= 1.0
    assert quality["repeats_dropped"] == quality["repeats"] and quality["originals_dropped_wrongly"] == 0
    # At unit boundaries, keyed by area: the pairs across two units merge; keyed by unit, none of them does.
    by_area, by_unit = figures["unit_boundaries"]["keyed_by_area"], figures["unit_boundaries"]["keyed_by_unit"]
    assert by_area["points"] == by_unit["points"] == 60 and by_area["pairs_across_units"] > 0
    assert by_area["recall_across_units"] >= 0.9 and by_unit["recall_across_units"] == 0.0
    assert by_area["precision"] >= 0.98 and by_area["recall"] > by_unit["recall"]
    assert 0 < figures["unit_boundaries"]["coarse_grid_split"]["share"] < 0.01
    assert figures["throughput"]["reports_per_s"] > 0 and figures["throughput"]["state_disk_bytes"] > 0

    recovery = figures["recovery"]
    # Each point is one changelog record, its case (a restore derives its index entries).
    assert recovery["points"] == RECOVERY_POINTS and recovery["state_entries"] == RECOVERY_POINTS
    assert recovery["changelog_read_s"] is not None and recovery["worker_start_to_ready_s"] > 0
    assert recovery["worker_rss_mb_after_recovery"] > 0 and recovery["rocksdb_disk_mb"] > 0
    # A second worker keeps standby copies of the first one's partitions, so its takeover is quick; it may still
    # read some changelog (the first one's last writes, or a partition Faust gave it no standby copy of: seen in CI).
    assert recovery["second_worker_join_to_ready_s"] > 0
    assert 0 < recovery["takeover_by_standby_to_ready_s"] < 60
    # The restart on the kept state directory reads nothing again: RocksDB knows the offsets it holds.
    assert recovery["restart_changelog_read_s"] is None
    assert 0 < recovery["restart_with_kept_state_to_ready_s"] < 60
