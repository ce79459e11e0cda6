"""The benchmark suite's quick mode runs every row against this pulse-trio.

Peers that are not installed, or whose server is not reachable, are
skipped by the suite itself, so this checks pulse-trio's own rows and the
raw-SQLite ceiling, not the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.processes
def test_bench_quick_runs_every_row(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--no-profile",
            "--out",
            str(tmp_path),
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    document = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    rows = {row["key"]: row for row in document["rows"]}
    assert "end_to_end_normal" in rows
    assert "event_loop_block" in rows
    # The floors need no peer package, so each of them must have run.
    for entry in rows["drain_floors"]["entries"]:
        assert entry["summary"], f"drain_floors: {entry['key']} has no figures"
    growth = rows["backlog_drain_all"]["entries"][0]["summary"]["rss_growth_mb"]
    assert growth["runs"] == 1
    for row in rows.values():
        pulse = next(entry for entry in row["entries"] if entry["key"] == "pulse")
        assert pulse["errors"] == [], f"{row['key']}: {pulse['errors']}"
        assert pulse["summary"], f"{row['key']}: pulse-trio has no figures"
    page = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert page.startswith("# pulse-trio benchmark results")
