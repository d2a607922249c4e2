"""The wheel publish.py uploads must work on its own, as it does in Azure Automation: the runbooks
import ``shared`` from it and render cards from the templates it carries."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from deployment.packaging import build_shared_wheel
from tests.conftest import ROOT


def test_wheel_carries_every_card_template_and_renders_them_outside_the_checkout(tmp_path):
    wheel = build_shared_wheel(Path(ROOT))
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.data)
    templates = sorted(p.name for p in Path(ROOT, "adaptive_cards").glob("*.j2"))
    assert templates, "no card templates in the repository"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    assert {f"shared/adaptive_cards/{t}" for t in templates} <= names
    assert "shared/stop/run.py" in names and not any("__pycache__" in n for n in names)
    # Import from the unpacked wheel only (cwd and sys.path exclude the checkout).
    code = (
        "import sys, shared, shared.teams.cards as c;"
        "assert shared.__file__.startswith(sys.argv[1]), shared.__file__;"
        "card = c.render_card('nightly_summary', summary={'started_at': '2026-11-23T19:00:00Z', 'finished_at': '2026-11-23T19:05:00Z',"
        " 'dry_run': False, 'counts': {'stopped': 1}, 'items': [{'workspace': 'w', 'compute_instance': 'c', 'outcome': 'stopped', 'detail': 'd'}],"
        " 'expiring': []});"
        "print(card['type'], card['version'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    site = str(tmp_path / "site")
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {site!r}); " + code, site],
                          capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["AdaptiveCard", "1.5"]
