"""Every card template, rendered with realistic and hostile context, against the official 1.5 schema and Teams' 28 KB."""

from __future__ import annotations

import json
import re
import zoneinfo
from pathlib import Path

import pytest

import shared.teams.cards as cards
from shared.teams.cards import MAX_MESSAGE_BYTES, CardError, clip, find_template_dir, fit_rows, message_size, render_card, teams_message
from tests.cardcheck import assert_valid_card, input_ids

SUB = "11111111-1111-4111-8111-111111111111"
WORKSPACES = [{"title": f"ws-{n} (rg-ml-{n})", "value": f"{SUB}/rg-ml-{n}/ws-{n}"} for n in ("dev", "research", "prod")]
ZONES = ["UTC", "Europe/Amsterdam", "Europe/London", "America/New_York", "Asia/Kolkata"]
REQUEST = dict(workspaces=WORKSPACES, time_zones=ZONES, default_time_zone="Europe/Amsterdam", max_hours=72, min_date="2026-11-23")
EXEMPTION = dict(
    workspace=f"{SUB}/rg-ml-dev/ws-dev",
    compute_instance="ci-ann-gpu",
    until_utc="2026-11-25T07:00:00Z",
    until_local="Wed 25 Nov 2026 08:00 (Europe/Amsterdam)",
    requested_by="Ann Example (ann@example.com)",
    reason="Fine-tuning run, finishes Wednesday morning.",
)
CI_REGEX = "^[a-zA-Z][a-zA-Z0-9-]{2,23}$"

# Hostile text: JSON metacharacters, Jinja syntax, HTML, markdown, templating, control and 4-byte characters.
HOSTILE = (
    'Zq9 "quoted" back\\slash\nnew line\ttab \x00\x1f \u2028 😀🚀 {{ 7*7 }} {% raw %} </script><script>alert(1)</script>'
    " **bold** _it_ [x](https://evil.example) ${expr} @{flow}"
)
LONG = "L" * 10_000


def summary(n_items=6, n_expiring=2, dry_run=False, text=None):
    outcomes = ["stopped", "already_stopped", "exempt", "skipped", "failed", "would_stop"]
    items = [
        {
            "workspace": text or f"ws-{i % 7}",
            "compute_instance": text or f"ci-{i:04d}",
            "outcome": outcomes[i % len(outcomes)],
            "detail": text or ("StopCompute is not allowed when ComputeInstance disk is full" if i % 6 == 4 else "stopped after 3 min"),
        }
        for i in range(n_items)
    ]
    counts = {}
    for it in items:
        counts[it["outcome"]] = counts.get(it["outcome"], 0) + 1
    expiring = [
        {"workspace": text or "ws-1", "compute_instance": text or f"ci-x{i}", "until": text or "2026-11-24T07:00:00Z", "by": text or "Bo"}
        for i in range(n_expiring)
    ]
    return {
        "started_at": "2026-11-23T19:00:01Z",
        "finished_at": "2026-11-23T19:06:40Z",
        "dry_run": dry_run,
        "counts": dict(sorted(counts.items())),
        "items": items,
        "expiring": expiring,
        "cost_avoided_text": text or "About EUR 412 of compute avoided tonight (estimate).",
    }


def contexts(text=None):
    """One context per template; with ``text``, every free-text value is ``text``."""
    t = (lambda default: text) if text is not None else (lambda default: default)
    exemption = {k: t(v) for k, v in EXEMPTION.items()}
    return {
        "exemption_request": dict(REQUEST, compute_instance=t("ci-ann-gpu"), workspace=WORKSPACES[0]["value"]),
        "exemption_approved": dict(exemption, cost_text=t("About EUR 14 (2 nights of Standard_NC6s_v3)"), workspace_label=t("ws-dev (rg-ml-dev)")),
        "exemption_pending_approval": dict(exemption, approvers=[t("Bo Boss"), t("Cy Chief")], cost_text=t("About EUR 140")),
        "exemption_rejected": dict(exemption, reasons=[t("72 hours at most"), t("Not a compute instance you may exempt")]),
        "exemption_cancelled": dict(workspace=exemption["workspace"], compute_instance=exemption["compute_instance"], cancelled_by=t("Ann"), until_utc=t("x")),
        "nightly_summary": dict(summary=summary(text=text)),
    }


def template_names():
    return sorted(p.name[: -len(".json.j2")] for p in find_template_dir().glob("*.json.j2"))


def walk(node, path=()):
    """Yield (path, parent, key, value) for every scalar in ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (dict, list)):
                yield from walk(v, path + (k,))
            else:
                yield path + (k,), node, k, v
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, (dict, list)):
                yield from walk(v, path + (i,))
            else:
                yield path + (i,), node, i, v


def texts(card):
    return [v for _, _, _, v in walk(card) if isinstance(v, str)]


def test_the_cards_tested_here_exist():
    # Other features add their own templates (tested with them); these must exist under these names.
    assert set(contexts()) <= set(template_names())


@pytest.mark.parametrize("name", sorted(contexts()))
def test_realistic_cards_are_valid(name):
    card = render_card(name, **contexts()[name])
    assert_valid_card(card)
    assert card["version"] == "1.5"


@pytest.mark.parametrize("name", sorted(contexts()))
def test_hostile_text_round_trips_verbatim_and_only_as_plain_text(name):
    card = render_card(name, **contexts(HOSTILE)[name])
    assert_valid_card(card)
    found = [(path, parent, key) for path, parent, key, v in walk(card) if isinstance(v, str) and "Zq9" in v]
    assert found, "the hostile text does not appear at all"
    for path, parent, key in found:
        value = parent[key]
        # Never as markdown: only in TextRuns (no markdown by spec), submit data, input values, choices or fallbackText.
        plain_text = isinstance(parent, dict) and parent.get("type") == "TextRun" and key == "text"
        data = "data" in path or (isinstance(parent, dict) and str(parent.get("type", "")).startswith("Input.") and key == "value")
        assert plain_text or data or path == ("fallbackText",) or "choices" in path, f"user text in a markdown field at {path}"
        # Each occurrence is the whole text or a prefix of it cut with an ellipsis: nothing else is altered.
        for piece in value.split("Zq9")[1:]:
            whole = HOSTILE[3:]
            assert piece.startswith(whole) or ("\u2026" in piece and whole.startswith(piece[: piece.index("\u2026")])), f"text altered at {path}: {value!r}"
    assert "49" not in json.dumps(card), "Jinja syntax in user text was evaluated"


def test_hostile_text_is_sent_back_exactly_in_the_cancel_action():
    card = render_card("exemption_approved", **contexts(HOSTILE)["exemption_approved"])
    assert card["actions"][0]["data"] == {"action": "cancel_exemption", "workspace": HOSTILE, "compute_instance": HOSTILE}


@pytest.mark.parametrize("name", sorted(contexts()))
def test_10000_char_text_is_cut_in_the_display(name):
    # Decision: displayed text is cut (with an ellipsis); only identifiers sent back are kept whole.
    card = render_card(name, **contexts(LONG)[name])
    assert_valid_card(card)
    shown = [v for path, _, _, v in walk(card) if isinstance(v, str) and v.startswith("LLL") and "data" not in path]
    assert shown and all(len(v) <= 400 and v.endswith("\u2026") for v in shown)


def test_identifiers_are_never_cut_so_the_cancel_action_keeps_a_10000_char_name():
    card = render_card("exemption_approved", **dict(EXEMPTION, workspace=LONG))
    assert_valid_card(card)
    assert card["actions"][0]["data"]["workspace"] == LONG


def test_choice_values_are_never_cut_so_a_form_too_big_for_teams_raises():
    huge = [{"title": "ws", "value": f"{SUB}/rg/{'w' * 10_000}-{i}"} for i in range(3)]
    with pytest.raises(CardError, match="bytes as a Teams message"):
        render_card("exemption_request", **dict(REQUEST, workspaces=huge))


def test_too_many_workspaces_or_all_time_zones_raise_card_error():
    many = [{"title": f"workspace-{i:04d}", "value": f"{SUB}/rg-{i:04d}/workspace-{i:04d}"} for i in range(1000)]
    with pytest.raises(CardError):
        render_card("exemption_request", **dict(REQUEST, workspaces=many))
    # Every IANA zone does not fit either: callers must pass a short list.
    with pytest.raises(CardError):
        render_card("exemption_request", **dict(REQUEST, time_zones=sorted(zoneinfo.available_timezones())))


# -- the request form -----------------------------------------------------------------------------


def test_request_form_inputs_are_exactly_as_specified():
    card = render_card("exemption_request", **REQUEST)
    assert input_ids(card) == ["workspace", "compute_instance", "until_date", "until_time", "time_zone", "reason"]
    inputs = {el["id"]: el for el in card["body"] if "id" in el}
    assert all(el.get("label") and el.get("isRequired") is True for el in inputs.values())
    assert inputs["workspace"]["type"] == "Input.ChoiceSet" and [c["value"] for c in inputs["workspace"]["choices"]] == [w["value"] for w in WORKSPACES]
    ci = inputs["compute_instance"]
    assert (ci["type"], ci["regex"], ci["maxLength"]) == ("Input.Text", CI_REGEX, 24) and ci["errorMessage"]
    assert (inputs["until_date"]["type"], inputs["until_date"]["min"]) == ("Input.Date", "2026-11-23")
    assert (inputs["until_time"]["type"], inputs["until_time"]["value"]) == ("Input.Time", "08:00")
    tz = inputs["time_zone"]
    assert tz["type"] == "Input.ChoiceSet" and tz["value"] == "Europe/Amsterdam" and [c["value"] for c in tz["choices"]] == ZONES
    reason = inputs["reason"]
    assert (reason["type"], reason["isMultiline"], reason["maxLength"]) == ("Input.Text", True, 200)
    assert card["actions"] == [{"type": "Action.Submit", "title": "Request exemption", "style": "positive", "data": {"action": "request_exemption"}}]
    assert any("72 hours" in t for t in texts(card))


@pytest.mark.parametrize(
    "name, ok",
    [
        ("ci-ann", True),
        ("abc", True),
        ("A" + "b" * 23, True),
        ("ab", False),
        ("1ci", False),
        ("-ci", False),
        ("ci_ann", False),
        ("a" * 25, False),
        ("ci ann", False),
    ],
)
def test_compute_instance_regex(name, ok):
    # The pattern has the same meaning in JavaScript (the renderer) and Python.
    regex = render_card("exemption_request", **REQUEST)["body"][3]["regex"]
    assert bool(re.search(regex, name)) is ok


def test_request_form_prefills_and_preselects():
    card = render_card("exemption_request", **dict(REQUEST, compute_instance="ci-ann", workspace=WORKSPACES[1]["value"]))
    inputs = {el["id"]: el for el in card["body"] if "id" in el}
    assert inputs["compute_instance"]["value"] == "ci-ann" and inputs["workspace"]["value"] == WORKSPACES[1]["value"]


def test_request_form_does_not_preselect_unknown_values():
    card = render_card("exemption_request", **dict(REQUEST, workspace=f"{SUB}/rg/other", default_time_zone="Mars/Olympus"))
    inputs = {el["id"]: el for el in card["body"] if "id" in el}
    assert "value" not in inputs["workspace"] and "value" not in inputs["time_zone"]


def test_request_form_without_workspaces_asks_for_text():
    card = render_card("exemption_request", **dict(REQUEST, workspaces=[], time_zones=[], workspace=f"{SUB}/rg/ws-1"))
    assert_valid_card(card)
    inputs = {el["id"]: el for el in card["body"] if "id" in el}
    assert inputs["workspace"]["type"] == "Input.Text" and inputs["workspace"]["value"] == f"{SUB}/rg/ws-1"
    assert re.search(inputs["workspace"]["regex"], f"{SUB}/rg-ml.dev(1)/ws_1") and not re.search(inputs["workspace"]["regex"], "ws-1")
    assert inputs["time_zone"]["type"] == "Input.Text" and inputs["time_zone"]["value"] == "Europe/Amsterdam"
    assert input_ids(card) == ["workspace", "compute_instance", "until_date", "until_time", "time_zone", "reason"]


# -- the other exemption cards -------------------------------------------------------------------


def test_approved_card_shows_the_facts_and_offers_cancel():
    card = render_card("exemption_approved", **contexts()["exemption_approved"])
    shown = texts(card)
    for key, value in EXEMPTION.items():
        if key == "until_utc":  # shown in each reader's own time zone by Teams
            assert "{{DATE(2026-11-25T07:00:00Z, SHORT)}} {{TIME(2026-11-25T07:00:00Z)}}" in shown
        elif key == "workspace":  # the key travels only in the data; people read the name
            assert "ws-dev (rg-ml-dev)" in shown and value in json.dumps(card["actions"])
        else:
            assert value in shown
    assert "About EUR 14 (2 nights of Standard_NC6s_v3)" in shown
    assert card["actions"] == [
        {
            "type": "Action.Submit",
            "title": "Cancel exemption",
            "style": "destructive",
            "data": {"action": "cancel_exemption", "workspace": EXEMPTION["workspace"], "compute_instance": "ci-ann-gpu"},
        }
    ]


def test_cost_text_is_optional():
    for name in ("exemption_approved", "exemption_pending_approval"):
        ctx = dict(contexts()[name])
        del ctx["cost_text"]
        card = render_card(name, **ctx)
        assert_valid_card(card)
        assert "Estimated cost" not in texts(card)
        assert "Estimated cost" in texts(render_card(name, **contexts()[name]))


def test_pending_card_lists_approvers_and_caps_them():
    card = render_card("exemption_pending_approval", **dict(EXEMPTION, approvers=[f"Approver {i}" for i in range(25)]))
    assert_valid_card(card)
    shown = texts(card)
    assert "\u2022 Approver 0" in shown and "\u2022 Approver 9" in shown and "\u2022 Approver 10" not in shown
    assert "\u2026 and 15 more" in shown
    assert "actions" not in card
    assert any("No approver" in t for t in texts(render_card("exemption_pending_approval", **dict(EXEMPTION, approvers=[]))))


def test_rejected_card_says_why_echoes_the_request_and_offers_to_try_again():
    card = render_card("exemption_rejected", **contexts()["exemption_rejected"])
    shown = texts(card)
    assert "\u2022 72 hours at most" in shown and EXEMPTION["reason"] in shown and "ci-ann-gpu" in shown
    assert card["actions"] == [{"type": "Action.Submit", "title": "Try again", "data": {"action": "request_exemption_form"}}]


def test_rejected_card_with_almost_nothing_known():
    card = render_card("exemption_rejected", reasons=["The request could not be read."], compute_instance=None)
    assert_valid_card(card)
    assert "Compute instance" not in texts(card)


def test_cancelled_card():
    card = render_card("exemption_cancelled", workspace="sub/rg/ws", compute_instance="ci-ann")
    assert_valid_card(card)
    assert "ci-ann" in texts(card) and "Cancelled by" not in texts(card)


# -- the nightly summary --------------------------------------------------------------------------


def test_summary_with_2000_items_stays_under_28kb_and_says_how_many_more():
    s = summary(n_items=2000, n_expiring=300)
    card = render_card("nightly_summary", summary=s)
    assert_valid_card(card)
    shown = texts(card)
    rows = [t for t in shown if re.fullmatch(r"\S+ ws-\d / ci-\d{4}", t)]
    assert 0 < len(rows) <= 20
    # "stopped" and "already stopped" are one line each (their names); the other 1,332 get a row each, as many as fit.
    detailed = 2000 - s["counts"]["stopped"] - s["counts"]["already_stopped"]
    assert f"\u2026 and {detailed - len(rows)} more (the totals above count every one; the Automation job output lists them all)." in shown
    assert any(t.startswith("\u2705 stopped (334): ") for t in shown) and any(t.startswith("\u23f9\ufe0f already stopped (334): ") for t in shown)
    facts = {f["title"]: f["value"] for fs in card["body"] if fs["type"] == "FactSet" for f in fs["facts"]}
    assert facts["Total"] == "2000" and facts["failed"] == str(s["counts"]["failed"]) and facts["already stopped"] == "334"
    assert any(re.fullmatch(r"\u2026 and \d+ more", t) for t in shown)  # expiring list capped too


def elements(node, type_):
    """Every object of ``type_`` in ``node``, in document order."""
    if isinstance(node, dict):
        if node.get("type") == type_:
            yield node
        for v in node.values():
            yield from elements(v, type_)
    elif isinstance(node, list):
        for v in node:
            yield from elements(v, type_)


def test_summary_lists_failures_first():
    card = render_card("nightly_summary", summary=summary(n_items=300))
    names = {"failed", "would stop", "stopped", "exempt", "skipped", "already stopped"}
    outcomes = [run["text"] for run in elements(card, "TextRun") if run.get("weight") == "bolder" and run["text"] in names]
    # 300 rows, 50 per outcome, 20 shown: the 20 are failures, nothing less important pushes them out.
    assert outcomes == ["failed"] * 20
    shown = render_card("nightly_summary", summary=summary(n_items=12))
    outcomes = [run["text"] for run in elements(shown, "TextRun") if run.get("weight") == "bolder" and run["text"] in names]
    assert (
        outcomes == ["failed", "failed", "would stop", "would stop", "exempt", "exempt", "skipped", "skipped"]  # routine outcomes: one line each, last
    )
    assert any(t == "ci-0000, ci-0006" for t in texts(shown))


def test_summary_of_worst_case_text_still_fits():
    # 2,000 rows of long 4-byte text: fit_rows shows fewer rows rather than exceeding 28 KB.
    for text in ("\U0001f600" * 500, '"\\' * 500):
        card = render_card("nightly_summary", summary=summary(n_items=2000, n_expiring=2000, text=text))
        assert_valid_card(card)
        assert message_size(card) <= MAX_MESSAGE_BYTES


def test_summary_dry_run_empty_and_unknown_outcomes():
    empty = {"started_at": "2026-11-23T19:00:00Z", "finished_at": None, "dry_run": True, "counts": {}, "items": [], "expiring": []}
    card = render_card("nightly_summary", summary=empty)
    assert_valid_card(card)
    assert "No compute instances were found." in texts(card) and any("DRY RUN" in t for t in texts(card))
    odd = dict(empty, dry_run=False, items=[{"workspace": "ws", "compute_instance": "ci", "outcome": "mystery", "detail": None}], counts={"mystery": 1})
    card = render_card("nightly_summary", summary=odd)
    assert_valid_card(card)
    assert "mystery" in texts(card) and not any("DRY RUN" in t for t in texts(card))


# -- the renderer -----------------------------------------------------------------------------------


def test_renderer_errors_are_card_errors(tmp_path, monkeypatch):
    with pytest.raises(CardError, match="no card template"):
        render_card("no_such_card")
    with pytest.raises(CardError, match="invalid card name"):
        render_card("../etc/passwd")
    with pytest.raises(CardError, match="_macros|invalid card name"):
        render_card("_macros")
    with pytest.raises(CardError, match="could not render"):
        render_card("exemption_cancelled", workspace="ws")  # compute_instance missing (StrictUndefined)
    (tmp_path / "adaptive_cards").mkdir()
    (tmp_path / "adaptive_cards" / "broken.json.j2").write_text('{"type": "AdaptiveCard", "body": [{{ text }}]}')
    (tmp_path / "adaptive_cards" / "notacard.json.j2").write_text("[1, 2]")
    monkeypatch.setattr(cards, "find_template_dir", lambda: tmp_path / "adaptive_cards")
    with pytest.raises(CardError, match="invalid JSON"):
        render_card("broken", text="unquoted")
    with pytest.raises(CardError, match="did not render an AdaptiveCard"):
        render_card("notacard")


def test_template_dir_prefers_templates_shipped_in_the_package(tmp_path):
    package = tmp_path / "shared"
    package.mkdir()
    assert find_template_dir(package) == tmp_path / "adaptive_cards"
    (package / "adaptive_cards").mkdir()
    assert find_template_dir(package) == package / "adaptive_cards"
    assert find_template_dir() == Path(cards.__file__).resolve().parent.parent.parent / "adaptive_cards"


def test_envelope_and_size():
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "\U0001f600"}]}
    message = teams_message(card)
    assert message == {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    assert message_size(card) == len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    assert message_size(card) - message_size({**card, "body": [{"type": "TextBlock", "text": ""}]}) == 4  # UTF-8 bytes, not characters


def test_clip_and_fit_rows():
    assert clip("abc", 3) == "abc" and clip("abcd", 3) == "ab\u2026" and clip(None, 3) == "" and clip(42, 5) == "42"
    rows = [{"t": "x" * 10} for _ in range(10)]
    assert len(fit_rows(rows, 100, 10 * 22, 10, t=20)) == 10  # each row: 10 + len('"xxxxxxxxxx"') = 22
    assert len(fit_rows(rows, 100, 5 * 22 + 21, 10, t=20)) == 5
    assert len(fit_rows(rows, 3, 10**6, 10, t=20)) == 3


def test_cardcheck_catches_what_it_should():
    good = render_card("exemption_cancelled", workspace="w", compute_instance="c")
    for broken in (
        {**good, "body": [{"type": "TextBlok", "text": "typo"}]},
        {**good, "body": [{"type": "TextBlock", "text": "x", "colour": "good"}]},
        {**good, "actions": [{"type": "Action.Http", "title": "x", "url": "https://x"}]},
        {**good, "version": "1.6"},
        {**good, "body": [{"type": "Input.Text", "id": "a"}, {"type": "Input.Text", "id": "a"}]},
        {**good, "body": [{"type": "TextBlock", "text": "x" * MAX_MESSAGE_BYTES}]},
    ):
        with pytest.raises(AssertionError):
            assert_valid_card(broken)
