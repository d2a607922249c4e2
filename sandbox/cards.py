"""``./dev cards``: a PNG and an HTML preview of every card the product posts, as Teams would show it.

The cards come from the sandbox demos (the real runbooks against the fake Azure: the sweep, the
evening with its warnings, answers, approvals and admin notices, the create requests), plus the two
forms an admin pastes into the request flows. Each is rendered with Microsoft's ``adaptivecards``
renderer in headless Chromium (tests/browser/harness.py) with Microsoft's Teams host configs, light
and dark, at phone (360 px) and desktop (600 px) widths, into a git-ignored folder with an
``index.html`` that shows them all.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from sandbox.cardtext import POSTED, PostedCard, describe, routing

OUT = Path(__file__).resolve().parent.parent / "card-previews"
WIDTHS = (360, 600)
PER_TEMPLATE = 3  # the demos post many alike cards (a warning per owner): a few of each are enough to look at


def collect() -> List[PostedCard]:
    """Run the demos quietly and return every card they posted, plus the request forms."""
    from sandbox import __main__ as demos
    from sandbox import more_demos
    from sandbox.evening import run_evening

    POSTED.clear()
    with contextlib.redirect_stdout(io.StringIO()):
        for run in (lambda: demos.run_sweep([]), lambda: run_evening([]), lambda: more_demos.run_create([])):
            run()
    return list(POSTED) + _forms()


def _forms() -> List[PostedCard]:
    """The request forms as an admin pastes them into the request flows (docs/admin.md)."""
    from sandbox.fleet import SUB_PRODUCT, SUB_RESEARCH
    from shared.create.request import request_card_context
    from shared.models import WorkspaceRef
    from shared.sections import CreateSection
    from shared.teams.cards import render_card

    workspaces = [
        WorkspaceRef(SUB_RESEARCH, "rg-ml-research", "mlw-vision"),
        WorkspaceRef(SUB_RESEARCH, "rg-ml-research", "mlw-nlp"),
        WorkspaceRef(SUB_PRODUCT, "rg-ml-product", "mlw-forecasting"),
    ]
    choices = [{"title": f"{w.name} ({w.resource_group})", "value": w.key} for w in workspaces]
    exemption = render_card(
        "exemption_request",
        workspaces=choices,
        time_zones=["UTC", "Europe/Amsterdam", "Europe/London"],
        default_time_zone="Europe/Amsterdam",
        max_hours=72,
        min_date="2026-11-23",
        max_date="2026-11-26",
    )
    create = render_card("compute_request", **request_card_context(CreateSection(), workspaces, "Standard_DS3_v2"))
    pasted = {"wait": "true"}
    return [PostedCard("forms", "pasted into the request flow", pasted, exemption), PostedCard("forms", "pasted into the create flow", pasted, create)]


def pick(cards: List[PostedCard], per_template: int = PER_TEMPLATE) -> List[PostedCard]:
    """At most ``per_template`` cards of each template, in the order posted."""
    seen: Dict[str, int] = {}
    out = []
    for c in cards:
        if seen.get(c.template, 0) < per_template:
            seen[c.template] = seen.get(c.template, 0) + 1
            out.append(c)
    return out


def render_all(cards: List[PostedCard], out: Path) -> List[Dict[str, Any]]:
    """Write ``<n>-<template>-<theme>-<width>.png/.html`` for every card; returns the gallery rows."""
    from tests.browser.harness import TEAMS_THEMES, CardBrowser, teams_host_config

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with CardBrowser() as browser:
        for n, posted in enumerate(cards, 1):
            row: Dict[str, Any] = {"n": n, "template": posted.template, "demo": posted.demo, "step": posted.step, "to": routing(posted.query), "files": []}
            for theme in TEAMS_THEMES:
                config = teams_host_config(theme)
                for width in WIDTHS:
                    stem = f"{n:02d}-{posted.template}-{theme}-{width}"
                    browser.render(posted.card, config, width)
                    overflow = browser.horizontal_overflow()
                    browser.card_png(str(out / f"{stem}.png"))
                    page = f"<!doctype html><meta charset='utf-8'><title>{html.escape(stem)}</title><body style='margin:16px'>{browser.card_html()}</body>"
                    (out / f"{stem}.html").write_text(page, encoding="utf-8")
                    row["files"].append({"stem": stem, "theme": theme, "width": width, "overflow": overflow})
            (out / f"{n:02d}-{posted.template}.txt").write_text(describe(posted.card, posted.query) + "\n", encoding="utf-8")
            (out / f"{n:02d}-{posted.template}.json").write_text(json.dumps(posted.card, indent=2, ensure_ascii=False), encoding="utf-8")
            rows.append(row)
    return rows


def write_index(rows: List[Dict[str, Any]], out: Path) -> Path:
    parts = ["<!doctype html><meta charset='utf-8'><title>CI governance: Teams cards</title>", "<body style='font-family:sans-serif'>"]
    parts.append("<h1>Every card the product posts</h1><p>Microsoft's adaptivecards renderer with the Teams host configs (light, dark), 360 and 600 px.</p>")
    for r in rows:
        parts.append(
            f"<h2>{r['n']:02d}. {html.escape(r['template'])}</h2><p>{html.escape(r['demo'])}: {html.escape(r['step'])} {html.escape(r['to'])}</p><div>"
        )
        for f in r["files"]:
            warn = f" <b>overflow: {html.escape(json.dumps(f['overflow']))}</b>" if f["overflow"] else ""
            parts.append(
                f"<figure style='display:inline-block;vertical-align:top'><a href='{f['stem']}.html'><img src='{f['stem']}.png'></a>"
                f"<figcaption>{f['theme']} {f['width']} px{warn}</figcaption></figure>"
            )
        parts.append("</div>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev cards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the previews (default: {OUT.name}/, git-ignored)")
    parser.add_argument("--per-template", type=int, default=PER_TEMPLATE, help="at most this many cards of each template (default: %(default)s)")
    args = parser.parse_args(argv)
    from tests.browser.harness import browser_available, teams_host_config

    ok, reason = browser_available()
    if not ok or teams_host_config("light") is None:
        print(f"./dev cards needs Chromium and tests/browser/node_modules: {reason or 'adaptivecards-designer is missing'} (run .ci/install-browser-deps.sh)")
        return 2
    cards = pick(collect(), args.per_template)
    rows = render_all(cards, args.out)
    index = write_index(rows, args.out)
    overflowing = [f["stem"] for r in rows for f in r["files"] if f["overflow"]]
    templates = len({r["template"] for r in rows})
    print(f"Wrote {sum(len(r['files']) for r in rows)} previews of {len(rows)} cards ({templates} templates) to {args.out}/; open {index}")

    if overflowing:
        print("Horizontal overflow in: " + ", ".join(overflowing))
        return 1
    return 0
