"""A new user's walk (scripts/new_user_walk.py): import -> inspect -> train -> translate ->
augment -> predict new unlabelled scans -> a 2-method grid -> report, on a tiny phantom,
with output to files as in a pipe: every output named exists, no line is wrapped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "new_user_walk.py"


def test_a_new_users_walk(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert res.stdout.rstrip().splitlines()[-1].startswith("walk ok in")
