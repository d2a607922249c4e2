"""The tag format: the one place that knows how exemptions and opt-ins are written on a CI.

An exemption is three tags on the compute instance (names configurable by prefix):

- ``<prefix>.exempt-until``: ISO 8601 instant in UTC, written as ``2026-11-24T08:00:00Z``;
- ``<prefix>.exempt-by``: who asked (UPN or e-mail, from the Teams responder, never from card input);
- ``<prefix>.exempt-reason``: the requester's reason, cleaned to fit Azure tag rules.

Azure tag rules (Learn, azure-resource-manager/management/tag-resources): at most 50 tags per
resource, names up to 512 characters without ``< > % & \\ ? /``, values up to 256 characters.
Tag names are case-insensitive, so every lookup here is too.

Where a CI refuses or ignores tag writes (docs/platform.md, "Azure ML compute instances": compute
tags are probably not writable), the exemption is recorded on the CI's **workspace** instead, one
tag per CI: ``<prefix>.exempt.<ci-name>`` (lower case) = ``until=<instant>;by=<upn>;req=<message
id>;ok=<approver>`` (at most 256 characters; ``;`` and ``=`` are removed from the values).
:func:`read_exemption_for` reads both places. Precedence: a **valid** exemption on the CI's own tags
wins; else a valid one on the workspace; else whichever is not "none" (the CI's first), so that an
expired or malformed record is still reported. Recording in one place removes the other place's
record (best effort), so both are valid only when that removal failed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, Mapping, Optional

from shared.errors import TagFormatError
from shared.times import format_instant, parse_instant

MAX_TAG_VALUE = 256
MAX_TAG_NAME = 512
MAX_TAGS_PER_RESOURCE = 50
MAX_CI_NAME = 24  # compute instance names: 3 to 24 characters (docs/platform.md, "Azure ML names and idle shutdown")
FORBIDDEN_NAME_CHARS = set("<>%&\\?/")
DEFAULT_PREFIX = "ci-governance"

VALID = "valid"
EXPIRED = "expired"
MALFORMED = "malformed"
NONE = "none"

PLACE_CI = "compute instance tags"
PLACE_WORKSPACE = "workspace tags"
# Short keys of the workspace-tag value (until, by, request id, approver).
_WS_KEYS = ("until", "by", "req", "ok")




@dataclass(frozen=True)
class TagNames:
    """The names of every tag the product reads or writes, derived from one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_tag_name(self.exempt_until)
        # The longest name we write: the workspace record of a CI with the longest name Azure allows (24).
        longest = f"{self.prefix}.exempt.{'x' * MAX_CI_NAME}"
        if len(longest) > MAX_TAG_NAME:
            raise TagFormatError(
                f"tags.prefix is {len(self.prefix)} characters: with it a workspace exemption tag ({self.prefix}.exempt.<ci-name>) "
                f"could be {len(longest)} characters, and Azure allows {MAX_TAG_NAME}; use a prefix of at most {MAX_TAG_NAME - len(longest) + len(self.prefix)}"
            )

    @property
    def exempt_until(self) -> str:
        return f"{self.prefix}.exempt-until"

    @property
    def exempt_by(self) -> str:
        return f"{self.prefix}.exempt-by"

    @property
    def exempt_reason(self) -> str:
        return f"{self.prefix}.exempt-reason"

    @property
    def exempt_request(self) -> str:
        """Id of the Teams message that asked for the exemption (makes a repeated post harmless)."""
        return f"{self.prefix}.exempt-request"

    @property
    def exempt_approved_by(self) -> str:
        """Who approved an exemption whose estimated cost needed approval (empty: none was needed)."""
        return f"{self.prefix}.exempt-approved-by"

    @property
    def auto_start(self) -> str:
        """Opt-in to the weekday-morning start: ``true`` or a list of days such as ``mon,wed,fri``."""
        return f"{self.prefix}.auto-start"

    @property
    def owner(self) -> str:
        """Who owns the CI (set at creation), for warnings and reports."""
        return f"{self.prefix}.owner"

    @property
    def exemption_keys(self) -> tuple:
        return (self.exempt_until, self.exempt_by, self.exempt_reason, self.exempt_request, self.exempt_approved_by)


@dataclass(frozen=True)
class Exemption:
    """A request to keep a CI running until ``until`` (aware, UTC)."""

    until: datetime
    by: str
    reason: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class ExemptionStatus:
    """What the tags on a CI say about an exemption at a given instant.

    ``state`` is one of ``none``, ``valid``, ``expired``, ``malformed``; ``problem`` explains the
    last two in words an operator can act on.
    """

    state: str
    exemption: Optional[Exemption] = None
    problem: str = ""
    place: str = ""  # PLACE_CI or PLACE_WORKSPACE: where the record was found ("" for none)
    approved_by: str = ""

    @property
    def protects(self) -> bool:
        return self.state == VALID








def validate_tag_name(name: str) -> str:
    """Return ``name`` if Azure accepts it as a tag name, else raise TagFormatError."""
    if not name or len(name) > MAX_TAG_NAME:
        raise TagFormatError(f"tag name must be 1 to {MAX_TAG_NAME} characters: {name!r}")
    bad = sorted(set(name) & FORBIDDEN_NAME_CHARS)
    if bad:
        raise TagFormatError(f"tag name {name!r} contains characters Azure does not allow: {' '.join(bad)}")
    return name


def validate_tag_value(value: str) -> str:
    """Return ``value`` if Azure accepts it as a tag value, else raise TagFormatError."""
    if not isinstance(value, str):
        raise TagFormatError(f"tag values are strings, not {type(value).__name__}")
    if len(value) > MAX_TAG_VALUE:
        raise TagFormatError(f"tag value is {len(value)} characters; Azure allows {MAX_TAG_VALUE}")
    return value


def clean_text(text: str, limit: int = MAX_TAG_VALUE) -> str:
    """Make free text (a reason, a name) safe as a tag value.

    Normalises Unicode (NFC), turns newlines and tabs into spaces, drops other control and
    format characters, collapses runs of white space, and cuts to ``limit`` characters with
    an ellipsis so that the value never exceeds Azure's limit.
    """
    text = unicodedata.normalize("NFC", text or "")
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\r\n\t\v\f" or cat == "Zs":
            out.append(" ")
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        else:
            out.append(ch)
    cleaned = re.sub(r" {2,}", " ", "".join(out)).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned


def _get(tags: Mapping[str, str], name: str) -> Optional[str]:
    lowered = name.lower()
    for key, value in (tags or {}).items():
        if key.lower() == lowered:
            return value
    return None


def read_exemption(tags: Mapping[str, str], now: datetime, names: TagNames = TagNames()) -> ExemptionStatus:
    """Read the exemption tags of a CI and judge them at ``now`` (aware).

    The exemption protects the CI while ``now`` is strictly before ``exempt-until``; at that
    instant it has expired. Who asked is required: an exemption nobody owns is malformed.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    raw_until = _get(tags, names.exempt_until)
    if raw_until is None:
        if _get(tags, names.exempt_by) is not None or _get(tags, names.exempt_reason) is not None:
            return ExemptionStatus(MALFORMED, problem=f"tag {names.exempt_until} is missing (other exemption tags are present)")
        return ExemptionStatus(NONE)
    try:
        until = parse_instant(raw_until)
    except TagFormatError as exc:
        return ExemptionStatus(MALFORMED, problem=f"tag {names.exempt_until}: {exc}")
    by = (_get(tags, names.exempt_by) or "").strip()
    exemption = Exemption(until=until, by=by, reason=_get(tags, names.exempt_reason) or "", request_id=_get(tags, names.exempt_request) or "")
    if not by:
        return ExemptionStatus(MALFORMED, exemption, problem=f"tag {names.exempt_by} is missing or empty: an exemption must say who asked")
    if now >= until:
        return ExemptionStatus(EXPIRED, exemption, problem=f"exemption by {by} expired at {format_instant(until)}")
    return ExemptionStatus(VALID, exemption)


def exemption_tags(exemption: Exemption, names: TagNames = TagNames()) -> Dict[str, str]:
    """The tags that record ``exemption``, every value validated and the reason cleaned."""
    tags = {
        names.exempt_until: format_instant(exemption.until),
        names.exempt_by: validate_tag_value(clean_text(exemption.by)),
        names.exempt_reason: clean_text(exemption.reason),
    }
    if exemption.request_id:
        tags[names.exempt_request] = clean_text(exemption.request_id)
    if not tags[names.exempt_by]:
        raise TagFormatError("an exemption must say who asked")
    return {validate_tag_name(k): validate_tag_value(v) for k, v in tags.items()}


def without_exemption(tags: Mapping[str, str], names: TagNames = TagNames()) -> Dict[str, str]:
    """``tags`` minus our exemption tags (any letter case); every other tag kept as it was."""
    ours = {k.lower() for k in names.exemption_keys}
    return {k: v for k, v in (tags or {}).items() if k.lower() not in ours}


def tag_value(tags: Mapping[str, str], name: str) -> Optional[str]:
    """The value of tag ``name`` (case-insensitive), or None."""
    return _get(tags, name)


def workspace_exemption_tag(ci_name: str, names: TagNames = TagNames()) -> str:
    """The workspace tag that records ``ci_name``'s exemption: ``<prefix>.exempt.<ci-name>`` (lower case)."""
    return validate_tag_name(f"{names.prefix}.exempt.{ci_name.lower()}")


def workspace_exemption_value(exemption: Exemption, approved_by: str = "") -> str:
    """``until=..;by=..;req=..;ok=..`` within 256 characters (the request id, then who, are cut first)."""

    def part(text: str) -> str:
        return clean_text(text or "").replace(";", "").replace("=", "")

    until = format_instant(exemption.until)
    by, req, ok = part(exemption.by), part(exemption.request_id), part(approved_by)
    if not by:
        raise TagFormatError("an exemption must say who asked")

    def render() -> str:
        pairs = [("until", until), ("by", by)] + ([("req", req)] if req else []) + ([("ok", ok)] if ok else [])
        return ";".join(f"{k}={v}" for k, v in pairs)

    value = render()
    # Too long (only with absurd names or ids): cut the request id first, then the longest of the rest.
    fields = {"req": req, "by": by, "ok": ok}
    for _ in range(6):
        if len(value) <= MAX_TAG_VALUE:
            break
        name = "req" if len(fields["req"]) > 9 else max(("by", "ok"), key=lambda k: len(fields[k]))
        current = fields[name]
        fields[name] = current[: max(8, len(current) - (len(value) - MAX_TAG_VALUE) - 1)] + "…"
        req, by, ok = fields["req"], fields["by"], fields["ok"]
        value = render()
    return validate_tag_value(value)


def read_workspace_exemption(workspace_tags: Mapping[str, str], ci_name: str, now: datetime, names: TagNames = TagNames()) -> ExemptionStatus:
    """The exemption recorded for ``ci_name`` on its workspace's tags, judged at ``now`` (aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tag = workspace_exemption_tag(ci_name, names)
    raw = _get(workspace_tags or {}, tag)
    if raw is None:
        return ExemptionStatus(NONE)
    fields: Dict[str, str] = {}
    for piece in raw.split(";"):
        key, sep, value = piece.partition("=")
        if sep and key.strip() in _WS_KEYS:
            fields[key.strip()] = value.strip()
    try:
        until = parse_instant(fields.get("until", ""))
    except TagFormatError as exc:
        return ExemptionStatus(MALFORMED, problem=f"workspace tag {tag}: {exc}", place=PLACE_WORKSPACE)
    exemption = Exemption(until=until, by=fields.get("by", ""), request_id=fields.get("req", ""))
    approved_by = fields.get("ok", "")
    if not exemption.by:
        return ExemptionStatus(MALFORMED, exemption, f"workspace tag {tag} does not say who asked", PLACE_WORKSPACE, approved_by)
    if now >= until:
        return ExemptionStatus(EXPIRED, exemption, f"exemption by {exemption.by} expired at {format_instant(until)}", PLACE_WORKSPACE, approved_by)
    return ExemptionStatus(VALID, exemption, "", PLACE_WORKSPACE, approved_by)


def read_exemption_for(
    ci_tags: Mapping[str, str], workspace_tags: Mapping[str, str], ci_name: str, now: datetime, names: TagNames = TagNames()
) -> ExemptionStatus:
    """The exemption that applies to a CI: its own tags or its workspace's (precedence in the module doc)."""
    on_ci = read_exemption(ci_tags, now, names)
    on_ci = ExemptionStatus(on_ci.state, on_ci.exemption, on_ci.problem, PLACE_CI if on_ci.state != NONE else "", _get(ci_tags, names.exempt_approved_by) or "")
    if on_ci.protects:
        return on_ci
    on_ws = read_workspace_exemption(workspace_tags, ci_name, now, names)
    if on_ws.protects or on_ci.state == NONE:
        return on_ws
    return on_ci
