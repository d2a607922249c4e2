"""Render Adaptive Cards (1.5) from the Jinja2 templates in ``adaptive_cards/`` and wrap them for Teams.

Templates emit every value with ``|tojson``, so user text can never break the JSON; free text is
shown in ``TextRun`` s (which Adaptive Cards never parse as markdown) and cut with ``|clip``.
Identifiers that a card sends back (choice values, ``Action.Submit`` data) are never cut: if
they make the card too big, :func:`render_card` raises :class:`CardError` instead.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List

import jinja2

# Teams rejects a message over 28 KB (msteams-docs add-incoming-webhook.md); measured as the
# UTF-8 bytes of the compact envelope, which is exactly what TeamsWorkflowClient sends.
MAX_MESSAGE_BYTES = 28 * 1024
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# An instant as format_instant writes it: the only text the templates put inside {{DATE()}}/{{TIME()}}.
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the shared package (this file is shared/teams/cards.py)


class CardError(Exception):
    """A card could not be rendered: unknown template, missing context, invalid JSON, or too big for Teams."""


def find_template_dir(package_dir: Path = _PACKAGE_DIR) -> Path:
    """Where the card templates are: ``<package>/adaptive_cards/`` when shipped inside the package, else ``<repo>/adaptive_cards/``."""
    inside = package_dir / "adaptive_cards"
    return inside if inside.is_dir() else package_dir.parent / "adaptive_cards"


def clip(value: Any, limit: int) -> str:
    """``value`` as text, cut to at most ``limit`` characters (the last one an ellipsis when cut)."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "\u2026"


def fit_rows(rows: Iterable[Dict[str, Any]], max_rows: int, budget: int, overhead: int, **limits: int) -> List[Dict[str, Any]]:
    """The first rows (at most ``max_rows``) whose estimated size fits in ``budget`` bytes.

    A row is estimated as ``overhead`` (the template's markup per row) plus each field in
    ``limits``, cut to its limit and JSON-encoded as UTF-8. Lets a card list as many rows as fit,
    whatever the text (4-byte characters, escapes), instead of a fixed count sized for the worst case.
    """
    shown: List[Dict[str, Any]] = []
    used = 0
    for row in rows:
        if len(shown) >= max_rows:
            break
        size = overhead + sum(len(json.dumps(clip(row.get(key), limit), ensure_ascii=False).encode("utf-8")) for key, limit in limits.items())
        if used + size > budget:
            break
        shown.append(row)
        used += size
    return shown


@lru_cache(maxsize=4)
def _environment(directory: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # JSON, not HTML: |tojson does the escaping
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clip"] = clip
    env.filters["fit_rows"] = fit_rows
    env.tests["instant"] = lambda value: isinstance(value, str) and _INSTANT.match(value) is not None
    return env


def teams_message(card: Dict[str, Any]) -> Dict[str, Any]:
    """The message envelope a Teams Workflows webhook expects around an Adaptive Card."""
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}]}


def message_bytes(card: Dict[str, Any]) -> bytes:
    """The exact bytes posted for ``card``: the envelope as compact UTF-8 JSON."""
    return json.dumps(teams_message(card), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def message_size(card: Dict[str, Any]) -> int:
    """Size in bytes of the Teams message that carries ``card`` (compact JSON, UTF-8)."""
    return len(message_bytes(card))


def render_card(name: str, /, **context: Any) -> Dict[str, Any]:
    """Render template ``adaptive_cards/<name>.json.j2`` with ``context`` into an Adaptive Card dict.

    Raises CardError when the template does not exist, context is missing, the output is not
    valid JSON, or the Teams message would exceed :data:`MAX_MESSAGE_BYTES`.
    """
    if not _NAME.match(name):
        raise CardError(f"invalid card name {name!r}: use lower-case letters, digits and underscores")
    directory = find_template_dir()
    try:
        template = _environment(str(directory)).get_template(f"{name}.json.j2")
        text = template.render(**context)
    except jinja2.TemplateNotFound as exc:
        raise CardError(f"no card template {name}.json.j2 in {directory}") from exc
    except jinja2.TemplateError as exc:
        # Missing context (StrictUndefined) or a template bug: the caller decides, nothing crashes mid-run.
        raise CardError(f"could not render card {name!r}: {exc}") from exc
    try:
        card = json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if 0 < exc.lineno <= len(text.splitlines()) else ""
        raise CardError(f"card {name!r} rendered invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {clip(line.strip(), 200)}") from exc
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        raise CardError(f"card {name!r} did not render an AdaptiveCard object")
    size = message_size(card)
    if size > MAX_MESSAGE_BYTES:
        raise CardError(f"card {name!r} is {size} bytes as a Teams message; Teams accepts at most {MAX_MESSAGE_BYTES} bytes")
    return card


