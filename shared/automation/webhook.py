"""Find the request in whatever Azure Automation hands a Python runbook.

How webhook data really reaches a Python runbook (docs/platform.md, "Azure Automation: Python
runtime"): NOT as JSON, but as the envelope
``{WebhookName:<name>,RequestBody:<raw body>,RequestHeader:{Connection:Keep-Alive,Content-Type:...,...}}``
with unquoted keys, the body as posted (its quotes sometimes escaped as ``\\"`` and its newlines as
the literal ``\\r\\n``), the whole text split on whitespace across several argv values, and the
webhook's own parameter values (each split on whitespace too) before or after it. Accepted here:

- that envelope, anywhere in ``sys.argv[1:]`` (:func:`find_envelope`): the body is cut between
  ``RequestBody:`` and the LAST ``,RequestHeader:{`` (Microsoft's sample cuts the same way), the
  headers are read from the ``RequestHeader`` block (:func:`parse_envelope_headers`);
- an **armoured** body ``{"b64": "<standard base64 of the UTF-8 JSON of the Teams response>"}``
  (Power Automate / Logic Apps: ``base64(string(body('Post_adaptive_card...')))``): splitting and
  escaping cannot damage it, so a reason with spaces, quotes, braces or ``RequestHeader:`` arrives
  intact. An un-armoured body is read too, but runs of whitespace inside its strings are collapsed
  to one space by the platform's split (best effort);
- ``--request-b64 <base64 json>``: the request body itself, as the Automation "Create job" API
  passes it (base64 survives the whitespace split);
- a WebhookData *JSON* object in any positional value, or ``--webhook-data <json>`` (older
  documentation; kept for operators and tests);
- ``--request <json>``: for a local command line only. From Automation it is unusable: every job
  parameter value is split on whitespace (azureautomation/runbooks#87), so any JSON with a space
  arrives broken. Use ``--request-b64``.

A positional JSON value that is not a WebhookData object but looks like the request body itself
(it has ``data`` or ``responder``) is accepted too. Requests are capped at 512 KB, Automation's
webhook payload limit. Errors name the argument and where the JSON broke.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from shared.automation.args import flatten_argv

MAX_PAYLOAD_BYTES = 512 * 1024

# Flags whose value may itself be JSON: their value is theirs, not a loose webhook object.
JSON_VALUED_FLAGS = ("--settings", "--webhook-data", "--request")
_INLINE_JSON_FLAG = re.compile(r"^\s*(--settings|--webhook-data|--request)(?:=|\s+)(\{.*)$", re.DOTALL)

SOURCE_WEBHOOK = "webhook"  # WebhookData (positional or --webhook-data): the webhook's headers apply
SOURCE_DIRECT = "direct"  # --request / --request-b64: started through the authenticated job API
SOURCE_LOOSE_BODY = "loose body"  # a bare request body in a positional value: origin unknown

# The platform's envelope (docs/platform.md, "Azure Automation: Python runtime"): unquoted keys.
_ENVELOPE_START = re.compile(r"^\s*\{\s*WebhookName\s*:", re.IGNORECASE)
# Greedy up to the LAST ",RequestHeader:{...}}": a body can hold that text, the real block comes after it.
_ENVELOPE = re.compile(
    r"^\s*\{\s*WebhookName\s*:(?P<name>[^,]*),\s*RequestBody\s*:(?P<body>.*),\s*RequestHeader\s*:\s*\{(?P<headers>[^{}]*)\}\s*\}\s*$",
    re.IGNORECASE | re.DOTALL,
)
# One header in the RequestHeader block: "Name:value" separated by commas (values may hold commas).
_HEADER_NAME = re.compile(r"(?:^|,)\s*([A-Za-z0-9][A-Za-z0-9_-]*)\s*:")
ARMOUR_KEY = "b64"  # {"b64": "<base64 of the UTF-8 JSON of the Teams response>"}


class WebhookInputError(ValueError):
    """The runbook's input holds no usable request; the message says what is wrong."""


@dataclass(frozen=True)
class InboundRequest:
    """The request body (parsed) and what is known about how it arrived."""

    body: Any
    source: str
    origin: str  # e.g. "argv[2]" or "--request": for log lines and error messages
    headers: Dict[str, str] = field(default_factory=dict)
    webhook_name: str = ""

    def header(self, name: str) -> Optional[str]:
        """A request header by case-insensitive name, or None."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def split_argv(argv: Sequence[str]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """Separate loose JSON values from ordinary parameters.

    Returns ``([(origin, json_text), ...], rest)``: every value starting with ``{`` that is not
    the value of a flag in :data:`JSON_VALUED_FLAGS`, and everything else as argparse tokens.
    Takes the raw values (``sys.argv[1:]``): a box holding ``--request {"data": ...}`` keeps its
    JSON whole, where :func:`shared.automation.args.flatten_argv` would split it at the spaces.
    """
    argv = [item if isinstance(item, str) else str(item) for item in argv]
    envelope = find_envelope(argv)
    skip = range(0)
    loose: List[Tuple[str, str]] = []
    if envelope is not None:
        first, last, text = envelope
        skip = range(first, last + 1)
        loose.append((f"WebhookData envelope (argv[{first + 1}]..argv[{last + 1}])", text))
    tokens: List[Tuple[str, str]] = []
    for index, item in enumerate(argv):
        if index in skip:
            continue
        text = item if isinstance(item, str) else str(item)
        origin = f"argv[{index + 1}]"
        inline = _INLINE_JSON_FLAG.match(text)
        if inline:
            tokens.extend([(origin, inline.group(1)), (origin, inline.group(2))])
        elif text.lstrip().startswith("{"):
            tokens.append((origin, text))
        else:
            tokens.extend((origin, t) for t in flatten_argv([text]))
    rest: List[str] = []
    previous = ""
    for origin, text in tokens:
        if text.lstrip().startswith("{") and previous not in JSON_VALUED_FLAGS:
            loose.append((origin, text))
        else:
            rest.append(text)
        previous = text.strip()
    return loose, rest


def find_envelope(argv: Sequence[str]) -> Optional[Tuple[int, int, str]]:
    """The platform's WebhookData envelope in ``argv``: ``(first index, last index, text)`` or None.

    The envelope starts at the value beginning ``{WebhookName:`` and ends at the LAST later value
    that closes a ``RequestHeader:{...}}`` block; the values in between are joined with one space
    (undoing the platform's whitespace split, except that a run of whitespace becomes one space).
    """
    starts = [i for i, item in enumerate(argv) if _ENVELOPE_START.match(item)]
    if not starts:
        return None
    first = starts[0]
    ends = [j for j in range(len(argv) - 1, first - 1, -1) if argv[j].rstrip().endswith("}")]
    for last in ends:
        text = " ".join(argv[first : last + 1])
        if _ENVELOPE.match(text):
            return first, last, text
    return None


def parse_envelope(text: str, origin: str) -> InboundRequest:
    """Read the envelope text (see :func:`find_envelope`) into the request it carries."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES + 64 * 1024:
        raise WebhookInputError(f"{origin} is larger than {MAX_PAYLOAD_BYTES // 1024} KB, the Azure Automation webhook payload limit")
    match = _ENVELOPE.match(text)
    if match is None:
        raise WebhookInputError(f"{origin} is not a webhook envelope {{WebhookName:...,RequestBody:...,RequestHeader:{{...}}}}")
    raw = match.group("body").strip()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        # The platform may escape the body's quotes as \" and its newlines as the literal \r\n.
        body = _parse_json(raw.replace("\\r\\n", "\n").replace('\\"', '"'), f"{origin} RequestBody")
    return InboundRequest(unarmour(body, origin), SOURCE_WEBHOOK, origin, parse_envelope_headers(match.group("headers")), match.group("name").strip())


def parse_envelope_headers(block: str) -> Dict[str, str]:
    """``Connection:Keep-Alive,Content-Type:application/json,X-Secret:abc`` → a dict.

    A value runs up to the next ``,Name:``; a value holding a comma followed by ``word:`` would be cut
    there (so the shared secret must not contain commas, colons or whitespace: docs/admin.md).
    """
    marks = list(_HEADER_NAME.finditer(block))
    out: Dict[str, str] = {}
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(block)
        out.setdefault(mark.group(1), block[mark.end() : end].strip())
    return out


def unarmour(body: Any, origin: str) -> Any:
    """The Teams response inside an armoured body ``{"b64": "<base64 of its UTF-8 JSON>"}``; any
    other body is returned as it is."""
    if not (isinstance(body, Mapping) and ARMOUR_KEY in body and "data" not in body and "responder" not in body):
        return body
    value = body[ARMOUR_KEY]
    if not isinstance(value, str):
        raise WebhookInputError(f"{origin}: the armoured body's '{ARMOUR_KEY}' must be base64 text")
    return _parse_json(_b64(value, f"{origin} '{ARMOUR_KEY}'"), f"{origin} (armoured body, decoded)")


def extract_request(
    loose: Sequence[Tuple[str, str]] = (),
    *,
    webhook_data: Optional[str] = None,
    request: Optional[str] = None,
    request_b64: Optional[str] = None,
) -> InboundRequest:
    """Return the one request found, or raise :class:`WebhookInputError`.

    Several sources holding the same request are fine (Automation may pass it twice); different
    requests are refused rather than guessed between.
    """
    found: List[InboundRequest] = []
    if request is not None:
        found.append(InboundRequest(unarmour(_parse_json(request, "--request"), "--request"), SOURCE_DIRECT, "--request"))
    if request_b64 is not None:
        body = unarmour(_parse_json(_b64(request_b64), "--request-b64"), "--request-b64")
        found.append(InboundRequest(body, SOURCE_DIRECT, "--request-b64"))
    if webhook_data is not None:
        given = _from_webhook_data(_parse_json(webhook_data, "--webhook-data"), "--webhook-data", strict=True)
        assert given is not None  # strict: anything but a request was refused
        found.append(given)
    for origin, text in loose:
        if _ENVELOPE_START.match(text):
            found.append(parse_envelope(text, origin))
            continue
        candidate = _from_webhook_data(_parse_json(text, origin), origin, strict=False)
        if candidate is not None:
            found.append(candidate)
        else:
            raise WebhookInputError(f"{origin} is a JSON object but neither webhook data (WebhookName/RequestBody) nor an exemption request (data/responder)")
    if not found:
        raise WebhookInputError("no request found: start this runbook from its webhook, or pass --request-b64 <base64 of the JSON>")
    first = found[0]
    for other in found[1:]:
        if other.body != first.body:
            raise WebhookInputError(f"{first.origin} and {other.origin} carry different requests; send exactly one")
    # Prefer the webhook copy when the same body also came another way: its headers are checked.
    return next((f for f in found if f.source == SOURCE_WEBHOOK), first)


def _from_webhook_data(obj: Any, origin: str, *, strict: bool) -> Optional[InboundRequest]:
    if not isinstance(obj, Mapping):
        raise WebhookInputError(f"{origin} must be a JSON object, not {type(obj).__name__}")
    keys = {k.lower(): k for k in obj if isinstance(k, str)}
    if "requestbody" in keys:
        raw = obj[keys["requestbody"]]
        # A string as documented for PowerShell; an object in case Automation hands it over parsed.
        body = unarmour(raw if isinstance(raw, Mapping) else _parse_json(raw, f"{origin} RequestBody"), origin)
        headers = _headers(obj.get(keys.get("requestheader", "")), origin)
        name = obj.get(keys.get("webhookname", ""))
        return InboundRequest(body, SOURCE_WEBHOOK, origin, headers, name if isinstance(name, str) else "")
    if strict:
        raise WebhookInputError(f"{origin} is not webhook data: it has no RequestBody")
    if "data" in keys or "responder" in keys or ARMOUR_KEY in keys:
        return InboundRequest(unarmour(obj, origin), SOURCE_LOOSE_BODY, origin)
    return None


def _headers(value: Any, origin: str) -> Dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = _parse_json(value, f"{origin} RequestHeader")
    if not isinstance(value, Mapping):
        raise WebhookInputError(f"{origin} RequestHeader must be an object of header names and values")
    # Header values may arrive as lists when a header repeats; keep the first.
    out = {}
    for key, item in value.items():
        if isinstance(item, list):
            item = item[0] if item else ""
        out[str(key)] = item if isinstance(item, str) else str(item)
    return out


def _parse_json(text: Any, origin: str) -> Any:
    if not isinstance(text, str):
        raise WebhookInputError(f"{origin} must be JSON text, not {type(text).__name__}")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
        raise WebhookInputError(f"{origin} is larger than {MAX_PAYLOAD_BYTES // 1024} KB, the Azure Automation webhook payload limit")
    if not text.strip():
        raise WebhookInputError(f"{origin} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WebhookInputError(f"{origin} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise WebhookInputError(f"{origin} is nested too deeply to be a request") from None


def _b64(text: str, origin: str = "--request-b64") -> str:
    if len(text) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
        raise WebhookInputError(f"{origin} is larger than {MAX_PAYLOAD_BYTES // 1024} KB once decoded")
    # Standard base64 (Power Automate's base64()); the URL-safe alphabet and missing padding are forgiven.
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise WebhookInputError(f"{origin} is not valid base64 of UTF-8 JSON") from None


def add_request_arguments(parser: Any) -> None:
    """The parameters that carry a request from Teams, the same in every runbook a webhook starts.

    Loose WebhookData found among the positional values (:func:`split_argv`) needs no flag.
    """
    parser.add_argument("--webhook-data", help="the webhook object {WebhookName, RequestBody, RequestHeader} as JSON")
    parser.add_argument("--request", help="the request body as JSON (local command line only: Automation splits parameter values on whitespace)")
    parser.add_argument("--request-b64", help="the request body as base64 JSON (Automation's Create job API)")
