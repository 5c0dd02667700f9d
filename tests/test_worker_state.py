"""The worker's local tables after an unclean stop: dropped, so Faust rebuilds them from the changelog alone (a
crash leaves local writes the changelog never got, and Faust's restore writes the older changelog tail over them);
after a clean stop: kept."""

from __future__ import annotations

from pathlib import Path

import faust

from streams.worker import clean_stop_marker, state_after_unclean_stop


def app_in(directory: Path) -> faust.App:
    return faust.App("tests-worker-state", datadir=str(directory), web_enabled=False)


def local_table(app: faust.App) -> Path:
    table = Path(app.conf.tabledir) / "dedup-state-0.db"
    table.mkdir(parents=True)
    (table / "000004.log").write_bytes(b"local writes")
    return table


def test_after_a_crash_the_local_tables_are_dropped(tmp_path: Path) -> None:
    app = app_in(tmp_path)
    table = local_table(app)
    state_after_unclean_stop(app)
    assert not table.exists()


def test_after_a_clean_stop_the_local_tables_are_kept_and_the_marker_is_spent(tmp_path: Path) -> None:
    app = app_in(tmp_path)
    table = local_table(app)
    clean_stop_marker(app).touch()
    state_after_unclean_stop(app)
    assert table.exists() and not clean_stop_marker(app).exists()
    state_after_unclean_stop(app)  # a crash now, before the next clean stop: dropped
    assert not table.exists()
