"""Fake Azure Logic Apps (Consumption) and the Teams connector, enough to run the product's own template.

ARM side (registered on a :class:`~fake_azure.server.FakeArmServer`):
- ``PUT/GET .../resourcegroups/{rg}/providers/Microsoft.Resources/deployments/{name}`` (Resources REST
  ``Deployments_CreateOrUpdate``, mode Incremental): evaluates the template's ARM expressions (the subset in
  :data:`ARM_FUNCTIONS`) and creates or replaces each ``Microsoft.Logic/workflows`` and
  ``Microsoft.Web/connections`` resource. Answers 201 (new) / 200 with ``provisioningState: Succeeded``
  (synchronous; the real service is asynchronous with ``Azure-AsyncOperation``: assumption).
- ``GET .../Microsoft.Logic/workflows/{name}`` (api 2019-05-01; SecureString parameter values are not returned,
  as the service does), ``POST .../triggers/{trigger}/listCallbackUrl`` (``{"value": url, "method", "basePath",
  "queries": {api-version, sp, sv, sig}}``, WorkflowTriggers_ListCallbackUrl), ``GET .../Microsoft.Web/connections/{name}``
  (``properties.statuses[0].status`` is ``Error`` until :meth:`FakeLogicApps.authorize` stands in for the admin's
  "Authorize" click in the portal, then ``Connected``).
- the trigger endpoint ``POST https://prod-00.<region>.logic.azure.com/workflows/<id>/triggers/manual/paths/invoke``:
  401 for a wrong ``sig``; otherwise runs the workflow and answers 202 (a Request trigger without a Response action
  answers 202 Accepted: logic-apps-http-endpoint.md). The run happens before the answer here, so tests need no waiting.

Workflow side: :class:`WorkflowRun` interprets a workflow definition (no imitation: it runs whatever definition was
deployed) for the subset the product's template uses: the Request trigger; Compose, If (object or string
expression), Switch, Http (with ``ManagedServiceIdentity`` authentication), ApiConnection and ApiConnectionWebhook
against the Teams managed API, with ``runAfter``. Action and trigger shapes: Learn
``logic-apps/logic-apps-workflow-actions-triggers`` ("Schema reference guide for trigger and action types").
Functions: :data:`WDL_FUNCTIONS`, each citing ``logic-apps/workflow-definition-language-functions-reference``.
Anything else in a definition is an error, never silently skipped.

Teams: :class:`FakeTeamsConnector` serves the two operations the template calls, by the paths Azure Sentinel's
Teams playbooks use (Azure/Azure-Sentinel Solutions/Teams/Playbooks/...): "Post card in a chat or channel"
(``/v1.0/teams/conversation/adaptivecard/poster/Flow bot/location/<Channel|Chat with Flow bot>``) and "Post
adaptive card and wait for a response" (``/v1.0/teams/conversation/gatherinput/poster/Flow bot/location/<...>/$subscriptions``).
A *responder* callback plays the Teams user: given the posted card it returns the response object
``{data, responder, responseTime, messageId, submitActionId}`` (FACTS.md, "Microsoft Teams") or None (nobody
answers: the action stays Waiting and the run ends there).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote, unquote, urlencode

import requests

from fake_azure.expressions import ExpressionError, evaluate, parse
from fake_azure.server import FakeArmServer, FakeRequest, FakeResponse, arm_error

WORKFLOW_API = "2019-05-01"
CONNECTION_API = "2016-06-01"
DEPLOYMENT_APIS = ("2021-04-01", "2022-09-01", "2024-03-01")
_RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
_WF = _RG + r"/providers/Microsoft\.Logic/workflows/(?P<name>[^/]+)"
_CONN = _RG + r"/providers/Microsoft\.Web/connections/(?P<name>[^/]+)"
_DEPLOY = _RG + r"/providers/Microsoft\.Resources/deployments/(?P<name>[^/]+)"
TEAMS_PATH = re.compile(r"^/v1\.0/teams/conversation/(?P<op>adaptivecard|gatherinput)/poster/Flow bot/location/(?P<loc>[^/]+)(?P<subs>/\$subscriptions)?$")
TERMINAL_OK = "Succeeded"


class WorkflowError(Exception):
    """An action failed; the run is Failed with this message."""


# -- ARM template expressions --------------------------------------------------------------------------------


def _arm_functions(params: Dict[str, Any], variables: Dict[str, Any], sub: str, rg: str, location: str) -> Dict[str, Callable[..., Any]]:
    """ARM template functions used by the template (Learn azure-resource-manager/templates/template-functions-*)."""

    def resource_id(*parts: str) -> str:  # template-functions-resource#resourceid: type, then names
        rtype, names = parts[0], parts[1:]
        provider, *types = rtype.split("/")
        segs = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/{segs}"

    return {
        "parameters": lambda name: params[name],  # template-functions-deployment#parameters
        "variables": lambda name: variables[name],  # template-functions-deployment#variables
        "concat": lambda *a: (
            "".join(str(x) for x in a) if not a or isinstance(a[0], str) else sum((list(x) for x in a), [])
        ),  # template-functions-string#concat
        "resourceid": resource_id,
        "subscription": lambda: {"subscriptionId": sub, "id": f"/subscriptions/{sub}"},  # template-functions-scope#subscription
        "resourcegroup": lambda: {
            "name": rg,
            "location": location,
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}",
        },  # template-functions-scope#resourcegroup
        "if": lambda c, a, b: a if c else b,  # template-functions-logical#if
        "empty": lambda v: not v,  # template-functions-array#empty
    }


def arm_value(value: Any, functions: Dict[str, Callable[..., Any]]) -> Any:
    """A template value with every ``"[expr]"`` string evaluated (``"[[..."`` is a literal ``[``)."""
    if isinstance(value, str):
        if value.startswith("[["):
            return value[1:]
        if value.startswith("[") and value.endswith("]"):
            return evaluate(parse(value[1:-1]), functions)
        return value
    if isinstance(value, dict):
        return {k: arm_value(v, functions) for k, v in value.items()}
    if isinstance(value, list):
        return [arm_value(v, functions) for v in value]
    return value


# -- Workflow Definition Language -------------------------------------------------------------------------------

_REF = "workflow-definition-language-functions-reference"


def _string(value: Any) -> str:
    """string(): objects and arrays become JSON, null becomes '' (functions reference, #string)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _contains(collection: Any, value: Any) -> bool:
    """contains(): substring of a string, key of an object, item of an array (#contains)."""
    if isinstance(collection, str):
        return _string(value) in collection
    if isinstance(collection, dict):
        return value in collection
    if isinstance(collection, list):
        return value in collection
    return False


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


# The Workflow Definition Language functions the interpreter implements (WorkflowRun._functions), lower case.
WDL_FUNCTIONS = frozenset(
    [
        "triggerbody", "triggeroutputs", "outputs", "body", "parameters", "base64", "string", "json", "equals", "and", "or", "not",
        "if", "empty", "contains", "coalesce", "tolower", "concat", "encodeuricomponent", "guid", "listcallbackurl", "utcnow",
    ]  # fmt: skip
)
# The ARM template functions the fake deployment evaluates (_arm_functions), lower case.
ARM_FUNCTIONS = frozenset(["parameters", "variables", "concat", "resourceid", "subscription", "resourcegroup", "if", "empty"])


class WorkflowRun:
    """One run of a workflow definition. ``outputs`` keeps each action's outputs, ``status`` each action's status."""

    def __init__(self, app: FakeLogicApps, workflow: FakeWorkflow, request: FakeRequest):
        self.app, self.workflow = app, workflow
        self.run_id = uuid.uuid4().hex[:16].upper()
        try:
            body = request.json()
        except ValueError:
            body = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
        # Request trigger outputs: headers, queries, body (logic-apps-http-endpoint.md, "trigger outputs").
        self.trigger = {"headers": dict(request.headers), "queries": {k: v for k, v in request.query.items() if k not in ("sig",)}, "body": body}
        self.outputs: Dict[str, Any] = {}
        self.status: Dict[str, str] = {}
        self.errors: Dict[str, str] = {}
        self.log: List[str] = []
        self.run_status = "Running"
        self.functions = self._functions()

    # -- expressions ------------------------------------------------------------------------------------------
    def _functions(self) -> Dict[str, Callable[..., Any]]:
        def outputs_of(name: str) -> Any:
            if name not in self.outputs:
                raise ExpressionError(f"The action '{name}' has not run (status {self.status.get(name, 'not started')}).")
            return self.outputs[name]

        def body_of(name: str) -> Any:
            out = outputs_of(name)
            return out.get("body") if isinstance(out, dict) and "body" in out else out

        params = self.workflow.parameter_values()
        return {
            # Each implemented function, as the functions reference defines it (Learn logic-apps/{_REF}).
            "triggerbody": lambda: self.trigger["body"],  # #triggerBody: the trigger's body output
            "triggeroutputs": lambda: self.trigger,  # #triggerOutputs: the trigger's outputs (headers, queries, body)
            "outputs": outputs_of,  # #outputs: an action's outputs
            "body": body_of,  # #body: shorthand for actions('<name>').outputs.body
            "parameters": lambda name: params[name],  # #parameters: a workflow definition parameter's value
            "base64": lambda s: base64.b64encode(_string(s).encode("utf-8")).decode("ascii"),  # #base64: base64 of a string
            "string": _string,  # #string
            "json": lambda s: json.loads(s) if isinstance(s, str) else s,  # #json
            "equals": lambda a, b: a == b,  # #equals
            "and": lambda *a: all(bool(x) for x in a),  # #and
            "or": lambda *a: any(bool(x) for x in a),  # #or
            "not": lambda a: not a,  # #not
            "if": lambda c, a, b: a if c else b,  # #if
            "empty": _empty,  # #empty
            "contains": _contains,  # #contains
            "coalesce": lambda *a: next((x for x in a if x is not None), None),  # #coalesce: first non-null
            "tolower": lambda s: _string(s).lower(),  # #toLower
            "concat": lambda *a: "".join(_string(x) for x in a),  # #concat
            "encodeuricomponent": lambda s: quote(_string(s), safe=""),  # #encodeUriComponent
            "guid": lambda *fmt: str(uuid.uuid4()),  # #guid
            "listcallbackurl": lambda: f"{self.app.callback_host(self.workflow)}/runs/{self.run_id}/callback?sig=fake",  # #listCallbackUrl
            "utcnow": lambda *fmt: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # #utcNow
        }

    def value(self, value: Any) -> Any:
        """A definition value with its expressions evaluated (WDL "Expressions": a string that starts with @ is one
        expression keeping its type; @{...} inside a string is interpolated as text; @@ escapes @)."""
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not isinstance(value, str) or "@" not in value:
            return value
        if value.startswith("@@"):
            return value[1:]
        if value.startswith("@") and not value.startswith("@{"):
            return evaluate(parse(value[1:]), self.functions)
        return _interpolate(value, self.functions)

    def condition(self, expr: Any) -> bool:
        """An If expression: a string expression, or the designer's object form {and|or: [...], not: {...}, equals|contains|...: [a, b]}."""
        if isinstance(expr, str):
            return bool(self.value(expr))
        if not isinstance(expr, dict) or len(expr) != 1:
            raise WorkflowError(f"unsupported condition {expr!r}")
        ((op, args),) = expr.items()
        op = op.lower()
        if op == "and":
            return all(self.condition(a) for a in args)
        if op == "or":
            return any(self.condition(a) for a in args)
        if op == "not":
            return not self.condition(args)
        fn = {"equals": lambda a, b: a == b, "contains": _contains, "greater": lambda a, b: a > b, "less": lambda a, b: a < b}.get(op)
        if fn is None:
            raise WorkflowError(f"unsupported condition operator {op!r}")
        return bool(fn(*[self.value(a) for a in args]))

    # -- running ----------------------------------------------------------------------------------------------
    def run(self) -> str:
        definition = self.workflow.definition
        trigger_name, trigger = next(iter(definition["triggers"].items()))
        if trigger.get("type") != "Request":
            raise WorkflowError(f"only Request triggers are supported, not {trigger.get('type')}")
        self.log.append(f"trigger {trigger_name}: queries {self.trigger['queries']}")
        try:
            self.run_scope(definition.get("actions") or {})
        except (WorkflowError, ExpressionError) as exc:
            self.run_status = "Failed"
            self.log.append(f"run failed: {exc}")
            return self.run_status
        if "Waiting" in self.status.values():
            self.run_status = "Waiting"
        elif "Failed" in self.status.values():
            self.run_status = "Failed"
        else:
            self.run_status = "Succeeded"
        return self.run_status

    def run_scope(self, actions: Dict[str, Any]) -> None:
        """Run a scope's actions in runAfter order; an action whose predecessors ended otherwise is Skipped."""
        pending = dict(actions)
        while pending:
            progressed = False
            for name, action in list(pending.items()):
                after = action.get("runAfter") or {}
                if any(dep not in self.status or self.status[dep] == "Running" for dep in after):
                    if any(dep not in actions for dep in after):
                        raise WorkflowError(f"action {name} runs after an action outside its scope")
                    continue
                del pending[name]
                progressed = True
                if all(self.status[dep] in statuses for dep, statuses in after.items()):
                    self.run_action(name, action)
                else:
                    self.status[name] = "Skipped"
                    self._skip(action)
            if not progressed:
                raise WorkflowError(f"runAfter cycle among {sorted(pending)}")

    def _skip(self, action: Dict[str, Any]) -> None:
        for inner in _nested_actions(action):
            self.status[inner] = "Skipped"

    def run_action(self, name: str, action: Dict[str, Any]) -> None:
        kind = action.get("type")
        self.status[name] = "Running"
        try:
            if kind == "Compose":
                self.outputs[name] = self.value(action.get("inputs"))
                status = TERMINAL_OK
            elif kind == "If":
                branch = "actions" if self.condition(action["expression"]) else "else"
                chosen = action.get("actions") or {} if branch == "actions" else (action.get("else") or {}).get("actions") or {}
                other = (action.get("else") or {}).get("actions") or {} if branch == "actions" else action.get("actions") or {}
                for inner in other:
                    self.status[inner] = "Skipped"
                self.log.append(f"{name}: {'true' if branch == 'actions' else 'false'}")
                self.run_scope(chosen)
                status = _scope_status(self.status, chosen)
            elif kind == "Switch":
                on = self.value(action["expression"])
                cases = action.get("cases") or {}
                chosen_case = next((c for c in cases.values() if c.get("case") == on), None)
                chosen = (chosen_case or action.get("default") or {}).get("actions") or {}
                for case in cases.values():
                    if case is not chosen_case:
                        for inner in case.get("actions") or {}:
                            self.status[inner] = "Skipped"
                self.log.append(f"{name}: case {on!r}")
                self.run_scope(chosen)
                status = _scope_status(self.status, chosen)
            elif kind == "Http":
                status = self._http(name, self.value(action["inputs"]))
            elif kind in ("ApiConnection", "ApiConnectionWebhook"):
                status = self.app.teams.call(self, name, kind, self.value(action["inputs"]), action)
            else:
                raise WorkflowError(f"action type {kind!r} is not supported by the fake (action {name})")
        except (ExpressionError, WorkflowError) as exc:
            self.errors[name] = str(exc)
            self.log.append(f"{name}: Failed: {exc}")
            status = "Failed"
        self.status[name] = status

    def _http(self, name: str, inputs: Dict[str, Any]) -> str:
        """Http action (actions-triggers reference, "HTTP action"): method, uri, headers, body; ``authentication``
        ``ManagedServiceIdentity`` with ``audience`` adds the workflow identity's bearer token
        (logic-apps-securing-a-logic-app.md#managed-identity-authentication)."""
        headers = dict(inputs.get("headers") or {})
        auth = inputs.get("authentication")
        if auth:
            if auth.get("type") != "ManagedServiceIdentity":
                raise WorkflowError(f"authentication type {auth.get('type')} is not supported by the fake")
            headers["Authorization"] = "Bearer " + self.app.identity_token(self.workflow, auth.get("audience") or "")
        body = inputs.get("body")
        data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        response = requests.request(inputs["method"].upper(), inputs["uri"], headers=headers, data=data, timeout=30)
        try:
            out_body: Any = response.json()
        except ValueError:
            out_body = response.text
        self.outputs[name] = {"statusCode": response.status_code, "headers": dict(response.headers), "body": out_body}
        shown = re.sub(r"([?&](sig|token)=)[^&]+", r"\1***", inputs["uri"])
        self.log.append(f"{name}: {inputs['method'].upper()} {shown} -> {response.status_code}")
        # An HTTP action fails on a 4xx/5xx status (after its retry policy; the fake does not retry).
        return TERMINAL_OK if response.status_code < 400 else "Failed"


def _nested_actions(action: Dict[str, Any]) -> List[str]:
    names: List[str] = []
    scopes = [action.get("actions") or {}, (action.get("else") or {}).get("actions") or {}, (action.get("default") or {}).get("actions") or {}]
    scopes += [c.get("actions") or {} for c in (action.get("cases") or {}).values()]
    for scope in scopes:
        for inner, spec in scope.items():
            names.append(inner)
            names += _nested_actions(spec)
    return names


def _scope_status(status: Dict[str, str], actions: Dict[str, Any]) -> str:
    values = [status.get(n) for n in actions]
    if "Failed" in values:
        return "Failed"
    if "Waiting" in values:
        return "Waiting"
    return TERMINAL_OK


_INTERP = re.compile(r"@\{")


def _segments(text: str) -> List[Tuple[str, Optional[str]]]:
    """``text`` cut into (literal, None) and ("", expression) pieces at each @{...} (quotes respected)."""
    out: List[Tuple[str, Optional[str]]] = []
    pos = 0
    while True:
        m = _INTERP.search(text, pos)
        if not m:
            out.append((text[pos:], None))
            return out
        out.append((text[pos : m.start()], None))
        depth, i, quoted = 1, m.end(), False
        while i < len(text) and depth:
            ch = text[i]
            if ch == "'":
                quoted = not quoted
            elif not quoted and ch == "{":
                depth += 1
            elif not quoted and ch == "}":
                depth -= 1
            i += 1
        if depth:
            raise ExpressionError(f"unterminated @{{ in {text!r}")
        out.append(("", text[m.end() : i - 1]))
        pos = i


def _interpolate(text: str, functions: Dict[str, Callable[..., Any]]) -> str:
    """ "text @{expr} text": each @{...} evaluated and inserted as a string (WDL "Expressions", string interpolation)."""
    return "".join(literal if expr is None else _string(evaluate(parse(expr), functions)) for literal, expr in _segments(text))


def wdl_expressions(text: str) -> List[str]:
    """The expressions in one definition string: the whole string after @, or each @{...} (none for @@ or plain text)."""
    if not isinstance(text, str) or "@" not in text or text.startswith("@@"):
        return []
    if text.startswith("@") and not text.startswith("@{"):
        return [text[1:]]
    return [expr for _, expr in _segments(text) if expr is not None]


# -- Teams connector ------------------------------------------------------------------------------------------


@dataclass
class TeamsPost:
    """One card the connector posted: where, to whom, and the answer if it waited for one."""

    operation: str  # "post" or "post_and_wait"
    location: str  # "Channel" or "Chat with Flow bot"
    recipient: Any
    card: Dict[str, Any]
    workflow: str
    response: Optional[Dict[str, Any]] = None


Responder = Callable[[TeamsPost], Optional[Dict[str, Any]]]


class FakeTeamsConnector:
    """The Teams managed API (``managedApis/teams``) as the workflow's ApiConnection actions see it."""

    def __init__(self, app: FakeLogicApps):
        self.app = app
        self.posts: List[TeamsPost] = []
        self.responder: Optional[Responder] = None

    @property
    def cards(self) -> List[Dict[str, Any]]:
        return [p.card for p in self.posts]

    def call(self, run: WorkflowRun, name: str, kind: str, inputs: Dict[str, Any], action: Dict[str, Any]) -> str:
        conn_id = ((inputs.get("host") or {}).get("connection") or {}).get("name")
        conn = self.app.connection_by_id(conn_id or "")
        if conn is None:
            raise WorkflowError(f"{name}: the API connection {conn_id!r} does not exist")
        if conn.api_name.lower() != "teams":
            raise WorkflowError(f"{name}: the connection {conn.name} is for {conn.api_name}, not teams")
        if not conn.authorized:
            # An unauthorized connection fails the action with 401 (the connection's status is Error until authorized).
            raise WorkflowError(f"{name}: 401 Unauthorized: the API connection {conn.name} is not authorized (authorize it in the portal)")
        m = TEAMS_PATH.match(inputs.get("path") or "")
        if not m:
            raise WorkflowError(f"{name}: unknown Teams connector path {inputs.get('path')!r}")
        wait = m.group("op") == "gatherinput"
        if wait != (kind == "ApiConnectionWebhook") or wait != bool(m.group("subs")):
            raise WorkflowError(f"{name}: {kind} does not match the path {inputs.get('path')!r}")
        location = unquote(m.group("loc"))
        if location not in ("Channel", "Chat with Flow bot", "Group chat"):
            raise WorkflowError(f"{name}: unknown post location {location!r}")
        payload = inputs["body"]["body"] if wait else inputs["body"]
        if wait and not str(inputs["body"].get("notificationUrl") or "").startswith("https://"):
            raise WorkflowError(f"{name}: post-and-wait needs notificationUrl (listCallbackUrl())")
        recipient = payload.get("recipient")
        if location == "Channel" and not (isinstance(recipient, dict) and recipient.get("groupId") and recipient.get("channelId")):
            raise WorkflowError(f"{name}: posting in a channel needs recipient {{groupId, channelId}}, got {recipient!r}")
        if location == "Chat with Flow bot" and not (isinstance(recipient, str) and recipient):
            raise WorkflowError(f"{name}: a chat with Flow bot needs the recipient's UPN or id, got {recipient!r}")
        try:
            card = json.loads(payload["messageBody"]) if isinstance(payload.get("messageBody"), str) else payload.get("messageBody")
        except ValueError as exc:
            raise WorkflowError(f"{name}: messageBody is not an Adaptive Card JSON: {exc}") from exc
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            raise WorkflowError(f"{name}: messageBody is not an Adaptive Card")
        post = TeamsPost("post_and_wait" if wait else "post", location, recipient, card, run.workflow.name)
        self.posts.append(post)
        run.log.append(
            f"{name}: posted to {location} {recipient if isinstance(recipient, str) else recipient.get('channelId')}" + (", waiting" if wait else "")
        )
        if not wait:
            run.outputs[name] = {"statusCode": 200, "body": {"messageId": str(len(self.posts))}}
            return TERMINAL_OK
        response = self.responder(post) if self.responder else None
        if response is None:
            run.log.append(f"{name}: nobody answered (the run waits until its timeout {action.get('limit', {}).get('timeout', 'P30D')})")
            return "Waiting"
        post.response = response
        run.outputs[name] = {"statusCode": 200, "body": response}
        run.log.append(f"{name}: {(response.get('responder') or {}).get('userPrincipalName')} pressed {response.get('submitActionId')!r}")
        return TERMINAL_OK


def press(card: Dict[str, Any], title: str, user: Dict[str, str], inputs: Optional[Dict[str, Any]] = None, message_id: str = "") -> Dict[str, Any]:
    """The response object Teams returns when ``user`` presses the Action.Submit titled ``title`` (prefix match) with
    ``inputs`` typed in: the action's data merged with the inputs, the responder from Teams (FACTS.md, "Microsoft Teams")."""
    from shared.teams.routing import iter_elements

    actions = [e for e in iter_elements(card) if e.get("type") == "Action.Submit"] + [a for a in card.get("actions") or [] if a.get("type") == "Action.Submit"]
    action = next((a for a in actions if str(a.get("title", "")).startswith(title)), None)
    if action is None:
        raise KeyError(f"no Action.Submit titled {title!r} on the card: {[a.get('title') for a in actions]}")
    # Action.Submit "data: Initial data that input fields will be combined with" (Adaptive Cards schema,
    # Action.Submit): the card's input values are combined into the action's data, so an input wins.
    return {
        "data": {**(action.get("data") or {}), **(inputs or {})},
        "responder": dict(user),
        "responseTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "messageId": message_id or uuid.uuid4().hex[:13],
        "submitActionId": action.get("title"),
    }


# -- resources -------------------------------------------------------------------------------------------------


@dataclass
class FakeConnection:
    id: str
    name: str
    location: str
    api_id: str
    tags: Dict[str, str] = field(default_factory=dict)
    authorized: bool = False

    @property
    def api_name(self) -> str:
        return self.api_id.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class FakeWorkflow:
    id: str
    name: str
    location: str
    definition: Dict[str, Any]
    parameters: Dict[str, Any]
    tags: Dict[str, str]
    principal_id: str
    tenant_id: str
    state: str = "Enabled"
    sig: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    access_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    version: int = 1

    def parameter_values(self) -> Dict[str, Any]:
        """Definition parameter defaults overridden by the resource's values (WDL "Parameters")."""
        values = {k: copy.deepcopy(v.get("defaultValue")) for k, v in (self.definition.get("parameters") or {}).items()}
        for k, v in self.parameters.items():
            values[k] = v.get("value") if isinstance(v, dict) else v
        return values


class FakeLogicApps:
    """Microsoft.Logic workflows, Microsoft.Web connections and resource-group deployments, plus the Teams connector.

    ``runs`` records every :class:`WorkflowRun`; ``teams.responder`` plays the Teams users."""

    def __init__(self, server: FakeArmServer, *, tenant_id: str = "00000000-0000-0000-0000-0000000000aa"):
        self.server = server
        self.tenant_id = tenant_id
        self.workflows: Dict[str, FakeWorkflow] = {}  # lower-case id -> workflow
        self.connections: Dict[str, FakeConnection] = {}
        self.deployments: Dict[str, Dict[str, Any]] = {}
        self.runs: List[WorkflowRun] = []
        self.teams = FakeTeamsConnector(self)
        self._lock = threading.RLock()
        self._hosts: set = set()
        server.route("PUT", _DEPLOY, self._put_deployment, api_versions=DEPLOYMENT_APIS)
        server.route("GET", _DEPLOY, self._get_deployment, api_versions=DEPLOYMENT_APIS)
        server.route("GET", _WF, self._get_workflow, api_versions=(WORKFLOW_API,))
        server.route("POST", _WF + r"/triggers/(?P<trigger>[^/]+)/listCallbackUrl", self._list_callback_url, api_versions=(WORKFLOW_API,))
        server.route("GET", _CONN, self._get_connection, api_versions=(CONNECTION_API,))

    # -- helpers for tests -------------------------------------------------------------------------------------
    def workflow(self, sub: str, rg: str, name: str) -> FakeWorkflow:
        return self.workflows[f"/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.logic/workflows/{name}".lower()]

    def connection_by_id(self, conn_id: str) -> Optional[FakeConnection]:
        return self.connections.get(conn_id.lower())

    def authorize(self, name: Optional[str] = None) -> None:
        """Stand in for the admin's one manual step: "Authorize" on the Teams API connection in the portal."""
        for conn in self.connections.values():
            if name is None or conn.name.lower() == name.lower():
                conn.authorized = True

    def callback_host(self, wf: FakeWorkflow) -> str:
        return f"https://prod-00.{wf.location}.logic.azure.com"

    def callback_url(self, wf: FakeWorkflow, trigger: str = "manual") -> str:
        query = urlencode({"api-version": "2016-10-01", "sp": f"/triggers/{trigger}/run", "sv": "1.0", "sig": wf.sig})
        return f"{self.callback_host(wf)}/workflows/{wf.access_id}/triggers/{trigger}/paths/invoke?{query}"

    def identity_token(self, wf: FakeWorkflow, audience: str) -> str:
        """A token for the workflow's system-assigned identity (the fake ARM accepts it; no RBAC is modelled)."""
        if not audience.rstrip("/").startswith("https://management.azure.com"):
            raise WorkflowError(f"the fake issues only ARM tokens, not for audience {audience!r}")
        token, _ = self.server.authority.issue(3600)
        return token

    # -- ARM handlers ------------------------------------------------------------------------------------------
    def _put_deployment(self, req: FakeRequest) -> FakeResponse:
        g = req.match.groupdict()
        try:
            body = req.json()
            props = body["properties"]
            template = props["template"]
        except (ValueError, KeyError, TypeError):
            return arm_error(400, "InvalidRequestContent", "The request content must hold properties.template.")
        if props.get("mode", "Incremental") != "Incremental":
            return arm_error(400, "InvalidDeploymentMode", "The fake supports Incremental deployments only.")
        given = {k: (v or {}).get("value") for k, v in (props.get("parameters") or {}).items()}
        declared = template.get("parameters") or {}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            return arm_error(400, "InvalidTemplate", f"The template has no parameters named {unknown}.")
        location = given.get("location") or "westeurope"
        params: Dict[str, Any] = {}
        functions = _arm_functions(params, {}, g["sub"], g["rg"], location)
        for name, spec in declared.items():
            if name in given:
                value = given[name]
            elif "defaultValue" in spec:
                value = arm_value(spec["defaultValue"], functions)
            else:
                return arm_error(400, "InvalidTemplate", f"The value for the template parameter '{name}' is not provided.")
            allowed = spec.get("allowedValues")
            if allowed and value not in allowed:
                return arm_error(400, "InvalidTemplate", f"The provided value for the template parameter '{name}' is not valid.")
            params[name] = value
        variables = {k: arm_value(v, functions) for k, v in (template.get("variables") or {}).items()}
        functions = _arm_functions(params, variables, g["sub"], g["rg"], location)
        try:
            resources = [arm_value(r, functions) for r in template.get("resources") or []]
            for res in resources:
                self._deploy_resource(g["sub"], g["rg"], res)
            outputs = {k: {"type": v.get("type"), "value": arm_value(v.get("value"), functions)} for k, v in (template.get("outputs") or {}).items()}
        except (ExpressionError, KeyError, WorkflowError) as exc:
            return arm_error(400, "InvalidTemplate", f"Deployment template validation failed: {exc}")
        key = f"{g['sub']}/{g['rg']}/{g['name']}".lower()
        existed = key in self.deployments
        self.deployments[key] = {
            "id": f"/subscriptions/{g['sub']}/resourceGroups/{g['rg']}/providers/Microsoft.Resources/deployments/{g['name']}",
            "name": g["name"],
            "properties": {"provisioningState": "Succeeded", "mode": "Incremental", "outputs": outputs, "timestamp": datetime.now(timezone.utc).isoformat()},
        }
        return FakeResponse(200 if existed else 201, self.deployments[key])

    def _deploy_resource(self, sub: str, rg: str, res: Dict[str, Any]) -> None:
        rtype = res.get("type", "")
        rid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{rtype}/{res['name']}"
        with self._lock:
            if rtype.lower() == "microsoft.web/connections":
                old = self.connections.get(rid.lower())
                api_id = ((res.get("properties") or {}).get("api") or {}).get("id") or ""
                # Redeploying keeps the connection's consent (incremental mode changes only what the template names).
                self.connections[rid.lower()] = FakeConnection(
                    rid, res["name"], res.get("location", ""), api_id, dict(res.get("tags") or {}), bool(old and old.authorized)
                )
            elif rtype.lower() == "microsoft.logic/workflows":
                props = res.get("properties") or {}
                definition = props.get("definition")
                if not isinstance(definition, dict) or "triggers" not in definition:
                    raise WorkflowError(f"workflow {res['name']} has no definition with triggers")
                old = self.workflows.get(rid.lower())
                wf = FakeWorkflow(
                    rid,
                    res["name"],
                    res.get("location", ""),
                    definition,
                    dict(props.get("parameters") or {}),
                    dict(res.get("tags") or {}),
                    old.principal_id if old else str(uuid.uuid4()),
                    self.tenant_id,
                    props.get("state", "Enabled"),
                )
                if old:  # the trigger URL (its access endpoint and sig) survives a redeployment
                    wf.sig, wf.access_id, wf.version = old.sig, old.access_id, old.version + 1
                self.workflows[rid.lower()] = wf
                host = self.callback_host(wf)
                if host not in self._hosts:
                    self._hosts.add(host)
                    self.server.route(
                        "POST", r"/workflows/(?P<access>[^/]+)/triggers/(?P<trigger>[^/]+)/paths/invoke", self._invoke, host=host, authenticated=False
                    )
            else:
                raise WorkflowError(f"resource type {rtype} is not supported by the fake")

    def _get_deployment(self, req: FakeRequest) -> FakeResponse:
        g = req.match.groupdict()
        found = self.deployments.get(f"{g['sub']}/{g['rg']}/{g['name']}".lower())
        return FakeResponse(200, found) if found else arm_error(404, "DeploymentNotFound", f"Deployment '{g['name']}' could not be found.")

    def _find_workflow(self, req: FakeRequest) -> Optional[FakeWorkflow]:
        g = req.match.groupdict()
        return self.workflows.get(f"/subscriptions/{g['sub']}/resourceGroups/{g['rg']}/providers/Microsoft.Logic/workflows/{g['name']}".lower())

    def workflow_json(self, wf: FakeWorkflow) -> Dict[str, Any]:
        declared = wf.definition.get("parameters") or {}
        shown = {k: v for k, v in wf.parameters.items() if not str((declared.get(k) or {}).get("type", "")).lower().startswith("secure")}
        return {
            "id": wf.id,
            "name": wf.name,
            "type": "Microsoft.Logic/workflows",
            "location": wf.location,
            "tags": wf.tags,
            "identity": {"type": "SystemAssigned", "principalId": wf.principal_id, "tenantId": wf.tenant_id},
            "properties": {
                "provisioningState": "Succeeded",
                "state": wf.state,
                "version": str(wf.version),
                "accessEndpoint": f"{self.callback_host(wf)}/workflows/{wf.access_id}",
                "definition": wf.definition,
                "parameters": shown,
            },
        }

    def _get_workflow(self, req: FakeRequest) -> FakeResponse:
        wf = self._find_workflow(req)
        if wf is None:
            return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Logic/workflows/{req.match.group('name')}' was not found.")
        return FakeResponse(200, self.workflow_json(wf))

    def _list_callback_url(self, req: FakeRequest) -> FakeResponse:
        wf = self._find_workflow(req)
        if wf is None:
            return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Logic/workflows/{req.match.group('name')}' was not found.")
        trigger = req.match.group("trigger")
        if trigger not in (wf.definition.get("triggers") or {}):
            return arm_error(404, "WorkflowTriggerNotFound", f"The workflow trigger '{trigger}' could not be found.")
        url = self.callback_url(wf, trigger)
        return FakeResponse(
            200,
            {
                "value": url,
                "method": "POST",
                "basePath": url.split("?")[0].rsplit("/paths/invoke", 1)[0] + "/paths/invoke",
                "queries": {"api-version": "2016-10-01", "sp": f"/triggers/{trigger}/run", "sv": "1.0", "sig": wf.sig},
            },
        )

    def _get_connection(self, req: FakeRequest) -> FakeResponse:
        g = req.match.groupdict()
        conn = self.connections.get(f"/subscriptions/{g['sub']}/resourceGroups/{g['rg']}/providers/Microsoft.Web/connections/{g['name']}".lower())
        if conn is None:
            return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Web/connections/{g['name']}' was not found.")
        status = (
            {"status": "Connected"}
            if conn.authorized
            else {"status": "Error", "target": "token", "error": {"code": "Unauthenticated", "message": "This connection is not authenticated."}}
        )
        return FakeResponse(
            200,
            {
                "id": conn.id,
                "name": conn.name,
                "type": "Microsoft.Web/connections",
                "location": conn.location,
                "tags": conn.tags,
                "properties": {
                    "displayName": conn.name,
                    "api": {"id": conn.api_id, "name": conn.api_name},
                    "statuses": [status],
                    "overallStatus": status["status"],
                },
            },
        )

    def _invoke(self, req: FakeRequest) -> FakeResponse:
        access = req.match.group("access")
        wf = next((w for w in self.workflows.values() if w.access_id == access), None)
        if wf is None:
            return arm_error(404, "WorkflowNotFound", "The workflow was not found.")
        if req.query.get("sig") != wf.sig:
            return arm_error(401, "DirectApiInvalidAuthorizationSignature", "The provided authorization signature is not valid.")
        if wf.state != "Enabled":
            return arm_error(409, "WorkflowNotEnabled", "The workflow is disabled.")
        run = WorkflowRun(self, wf, req)
        with self._lock:
            self.runs.append(run)
        run.run()
        return FakeResponse(202, None, {"x-ms-workflow-run-id": run.run_id})
