"""Find the exemption request in whatever Azure Automation hands the runbook.

How a *Python* runbook receives webhook data is unconfirmed (docs/platform.md, "Unconfirmed";
"Azure Automation: Python runtime"): PowerShell gets a ``$WebhookData`` object ``{WebhookName, RequestBody (a string),
RequestHeader}``. So every way is accepted:

- a WebhookData JSON object in ANY positional value (``sys.argv[1:]`` is scanned);
- ``--webhook-data <json>``: the same object, named;
- ``--request <json>`` / ``--request-b64 <base64 json>``: the request body itself, as the
  Automation "Create job" API (e.g. Power Automate's Azure Automation connector) passes it.

A positional JSON value that is not a WebhookData object but looks like the request body itself
(it has ``data`` or ``responder``) is accepted too. Requests are capped at 512 KB, Automation's
webhook payload limit. Errors name the argument and where the JSON broke.
"""

from __future__ import annotations

import base64
import binascii
import hmac
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
    tokens: List[Tuple[str, str]] = []
    for index, item in enumerate(argv):
        text = item if isinstance(item, str) else str(item)
        origin = f"argv[{index + 1}]"
        inline = _INLINE_JSON_FLAG.match(text)
        if inline:
            tokens.extend([(origin, inline.group(1)), (origin, inline.group(2))])
        elif text.lstrip().startswith("{"):
            tokens.append((origin, text))
        else:
            tokens.extend((origin, t) for t in flatten_argv([text]))
    loose: List[Tuple[str, str]] = []
    rest: List[str] = []
    previous = ""
    for origin, text in tokens:
        if text.lstrip().startswith("{") and previous not in JSON_VALUED_FLAGS:
            loose.append((origin, text))
        else:
            rest.append(text)
        previous = text.strip()
    return loose, rest


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
        found.append(InboundRequest(_parse_json(request, "--request"), SOURCE_DIRECT, "--request"))
    if request_b64 is not None:
        found.append(InboundRequest(_parse_json(_b64(request_b64), "--request-b64"), SOURCE_DIRECT, "--request-b64"))
    if webhook_data is not None:
        given = _from_webhook_data(_parse_json(webhook_data, "--webhook-data"), "--webhook-data", strict=True)
        assert given is not None  # strict: anything but a request was refused
        found.append(given)
    for origin, text in loose:
        candidate = _from_webhook_data(_parse_json(text, origin), origin, strict=False)
        if candidate is not None:
            found.append(candidate)
        else:
            raise WebhookInputError(f"{origin} is a JSON object but neither webhook data (WebhookName/RequestBody) nor an exemption request (data/responder)")
    if not found:
        raise WebhookInputError("no request found: start this runbook from its webhook, or pass --request '<json>' (or --request-b64)")
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
        body = raw if isinstance(raw, Mapping) else _parse_json(raw, f"{origin} RequestBody")
        headers = _headers(obj.get(keys.get("requestheader", "")), origin)
        name = obj.get(keys.get("webhookname", ""))
        return InboundRequest(body, SOURCE_WEBHOOK, origin, headers, name if isinstance(name, str) else "")
    if strict:
        raise WebhookInputError(f"{origin} is not webhook data: it has no RequestBody")
    if "data" in keys or "responder" in keys:
        return InboundRequest(obj, SOURCE_LOOSE_BODY, origin)
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


def _b64(text: str) -> str:
    if len(text) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
        raise WebhookInputError(f"--request-b64 is larger than {MAX_PAYLOAD_BYTES // 1024} KB once decoded")
    try:
        return base64.b64decode(text.strip().encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise WebhookInputError("--request-b64 is not valid base64 of UTF-8 JSON") from None


def add_request_arguments(parser: Any) -> None:
    """The parameters that carry a request from Teams, the same in every runbook a webhook starts.

    Loose WebhookData found among the positional values (:func:`split_argv`) needs no flag.
    """
    parser.add_argument("--webhook-data", help="the webhook object {WebhookName, RequestBody, RequestHeader} as JSON")
    parser.add_argument("--request", help="the request body as JSON (Automation's Create job API)")
    parser.add_argument("--request-b64", help="the request body as base64 JSON")


def check_shared_secret(headers: Mapping[str, str], header_name: Optional[str], expected: Optional[str]) -> Optional[str]:
    """None if the request may proceed, else the reason to refuse it.

    With ``header_name`` unset there is nothing to check. The comparison is constant-time
    (``hmac.compare_digest``) so the secret cannot be guessed from response timing.
    """
    if not header_name:
        return None
    if not expected:
        # Settings validation refuses this combination; stay closed if it slips through.
        return "The shared secret is not configured (teams.shared_secret), so no request can be trusted."
    supplied = next((v for k, v in (headers or {}).items() if k.lower() == header_name.lower()), None)
    if supplied is None:
        return f"The request did not carry the {header_name} header."
    if not isinstance(supplied, str) or not hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8")):
        return f"The {header_name} header does not match the configured shared secret."
    return None
