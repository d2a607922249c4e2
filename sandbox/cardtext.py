"""The Teams cards a sandbox demo posted, in a readable text form (and kept for ``./dev cards``).

Each card is shown as a Teams user would read it: whom it went to (the routing query of
docs/admin.md, "Routing contract"), its text with ``{{DATE()}}``/``{{TIME()}}`` resolved in UTC,
label/value rows, inputs with their choices and pre-filled values, and its buttons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Mapping, Sequence

_DATE_TIME = re.compile(r"\{\{(DATE|TIME)\(([^,)]+)(?:, *(\w+))?\)\}\}")


@dataclass(frozen=True)
class PostedCard:
    """One card a demo posted: where it went (the query's routing parameters) and the card."""

    demo: str
    step: str
    query: Mapping[str, str]
    card: Dict[str, Any]

    @property
    def template(self) -> str:
        return guess_template(self.card)


# Every card the demos posted in this process, in order (./dev cards renders them).
POSTED: List[PostedCard] = []


def guess_template(card: Mapping[str, Any]) -> str:
    """Which template made ``card`` (from its fallback text and inputs): for file names and the gallery."""
    text = str(card.get("fallbackText", ""))
    ids = {e.get("id") for e in _walk(card) if isinstance(e, dict)}
    rules = [
        ("CI governance, for admins", "admin_notice"),
        ("Nightly stop", "nightly_summary"),
        ("will be stopped at", "stop_warning"),
        ("Exemption request not granted", "exemption_rejected"),
        ("Exemption recorded", "exemption_approved"),
        ("cancelled.", "exemption_cancelled"),
        ("Request an exemption", "exemption_request"),
        ("Request an Azure ML compute instance", "compute_request"),
    ]
    for needle, name in rules:
        if needle in text:
            return name
    if "Approval needed: keep" in text or "Waiting for approval: keep" in text:
        return "exemption_pending_approval"
    if "Approval needed:" in text and "comments" in ids:
        return "compute_approval"
    return "compute_result"


def routing(query: Mapping[str, str]) -> str:
    """``→ ada@contoso.com (upn), waits for an answer`` and the like."""
    if query.get("audience") == "approvers":
        to = "the approvers" + (f" ({query['recipient']})" if query.get("recipient") else " (their channel)")
    elif query.get("recipient"):
        to = f"{query['recipient']} ({query.get('recipient_type')}: a chat with them)"
    else:
        to = "the configured channel (the admins' place)"
    return f"-> {to}" + (", waits for an answer" if query.get("wait") == "true" else "")


def _when(match: re.Match[str]) -> str:
    try:
        instant = datetime.strptime(match.group(2).strip(), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return match.group(0)
    return instant.strftime("%a %d %b %Y" if match.group(1) == "DATE" else "%H:%M UTC")


def resolve_times(text: str) -> str:
    """``{{DATE(2026-11-24T07:00:00Z, SHORT)}} {{TIME(2026-11-24T07:00:00Z)}}`` → ``Tue 24 Nov 2026 07:00 UTC`` (Teams shows the reader's own time)."""
    return _DATE_TIME.sub(_when, text)


def _walk(node: Any) -> List[Any]:
    out: List[Any] = []
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            out.extend(_walk(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(_walk(item))
    return out


def _inline(element: Mapping[str, Any]) -> str:
    if element.get("type") == "RichTextBlock":
        return "".join(str(i.get("text", "")) for i in element.get("inlines", []) if isinstance(i, dict))
    return resolve_times(str(element.get("text", "")))


def _lines(elements: Sequence[Any], indent: str) -> List[str]:
    out: List[str] = []
    for el in elements:
        if not isinstance(el, dict):
            continue
        kind = el.get("type")
        if kind in ("TextBlock", "RichTextBlock"):
            out.append(indent + _inline(el))
        elif kind == "Container":
            style = el.get("style")
            inner = _lines(el.get("items", []), indent + ("| " if style in ("good", "warning", "attention", "accent", "emphasis") else ""))
            out.extend(inner)
        elif kind == "ColumnSet":
            cells = [" ".join(_inline(i) for i in c.get("items", []) if isinstance(i, dict)) for c in el.get("columns", [])]
            out.append(indent + (f"{cells[0]}: {' '.join(cells[1:])}" if len(cells) > 1 else " ".join(cells)))
        elif kind == "FactSet":
            out.extend(f"{indent}{f.get('title')}: {f.get('value')}" for f in el.get("facts", []))
        elif kind == "ActionSet":
            out.extend(_actions(el.get("actions", []), indent))
        elif str(kind).startswith("Input."):
            label = el.get("label") or el.get("id")
            value = el.get("value")
            if kind == "Input.ChoiceSet":
                titles = [c.get("title") for c in el.get("choices", [])]
                shown = ", ".join(str(t) for t in titles[:6]) + (f", … ({len(titles)} in all)" if len(titles) > 6 else "")
                chosen = next((c.get("title") for c in el.get("choices", []) if c.get("value") == value), None)
                out.append(f"{indent}[{label}: {chosen or '(choose)'} v  {{{shown}}}]")
            else:
                limits = " ".join(f"{k} {el[k]}" for k in ("min", "max") if k in el)
                out.append(f"{indent}[{label}: {value if value not in (None, '') else '____'}{'  (' + limits + ')' if limits else ''}]")
    return out


def _actions(actions: Sequence[Any], indent: str) -> List[str]:
    out: List[str] = []
    buttons = [a for a in actions if isinstance(a, dict)]
    if buttons:
        out.append(indent + "  ".join(f"[ {a.get('title')} ]" for a in buttons))
    for a in buttons:
        if a.get("type") == "Action.ShowCard":
            out.append(f"{indent}  {a.get('title')} opens:")
            out.extend(_lines(a.get("card", {}).get("body", []), indent + "    "))
            out.extend(_actions(a.get("card", {}).get("actions", []), indent + "    "))
        elif a.get("type") == "Action.OpenUrl":
            out.append(f"{indent}  {a.get('title')}: {a.get('url')}")
    return out


def describe(card: Mapping[str, Any], query: Mapping[str, str]) -> str:
    """The card as readable text, with a header saying where it went."""
    lines = [f"+-- Teams card '{guess_template(card)}' {routing(query)}"]
    lines += ["| " + line for line in _lines(card.get("body", []), "")]
    lines += ["| " + line for line in _actions(card.get("actions", []), "")]
    lines.append("+" + "-" * 60)
    return "\n".join(lines)


def show_new(teams: Any, since: int, demo: str, step: str = "", out: Any = None) -> int:
    """Print the cards ``teams`` (a FakeTeamsWorkflow) accepted after the first ``since``, keep them in :data:`POSTED`;
    returns the new count."""
    import sys

    posted = teams.addressed_cards
    for query, card in posted[since:]:
        POSTED.append(PostedCard(demo, step, dict(query), card))
        print(describe(card, query), file=out or sys.stdout)
    return len(posted)
