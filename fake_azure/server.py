"""HTTP plumbing of the fake control plane: routing, auth, latency, fault injection, throttling.

Resource-provider modules (``fake_azure.ml``, ``fake_azure.automation``, ...) register routes on a
:class:`FakeArmServer`; :meth:`FakeArmServer.install` wires every route into a
``responses.RequestsMock`` so that anything using ``requests`` (azure-core's default transport
included) talks to the fake instead of the network.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import responses
from azure.core.credentials import AccessToken, AccessTokenInfo

ARM_HOST = "https://management.azure.com"
METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")


@dataclass
class FakeRequest:
    """What a route handler sees of one HTTP request."""

    method: str
    url: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    body: bytes
    match: re.Match[str]

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError on malformed JSON."""
        if not self.body:
            return None
        text = self.body.decode("utf-8") if isinstance(self.body, bytes) else self.body
        return json.loads(text)


@dataclass
class FakeResponse:
    """What a route handler returns."""

    status: int
    body: Any = None
    headers: Dict[str, str] = field(default_factory=dict)


def arm_error(status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> FakeResponse:
    """An ARM error response: ``{"error": {"code", "message"}}`` (ARM common-types ErrorResponse)."""
    return FakeResponse(status, {"error": {"code": code, "message": message}}, dict(headers or {}))


@dataclass
class Fault:
    """A failure to inject. Matches requests by method and a case-insensitive path substring.

    ``times`` is how many matching requests fail (None: all of them). ``retry_after`` adds a
    Retry-After header (seconds), as ARM does on 429 and on some 5xx.

    ``skip`` lets the first matching requests through (e.g. fail a workspace's listings only
    after discovery has listed it). ``probability`` makes the fault random: each matching request
    fails with that probability, drawn from the server's seeded RNG. ``after_handler`` lets the
    request reach the service and take effect, then replaces the response: the ambiguous failure
    of a gateway that times out after the resource provider has acted.
    """

    status: int
    method: Optional[str] = None
    path_contains: Optional[str] = None
    times: Optional[int] = 1
    retry_after: Optional[float] = None
    code: str = ""
    message: str = "Injected fault."
    hits: int = 0
    skip: int = 0
    probability: float = 1.0
    after_handler: bool = False
    seen: int = 0  # matching requests so far, skipped ones included

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not self.path_contains or self.path_contains.lower() in path.lower()


@dataclass
class Hook:
    """Something to do just before a matching request is served (another actor changing the
    world between two of our calls: a CI deleted after it was listed, a restart begun)."""

    method: Optional[str]
    path_contains: str
    action: Callable[[], None]
    times: Optional[int] = 1
    skip: int = 0  # let the first matching requests pass without acting
    hits: int = 0
    seen: int = 0


DEFAULT_CODES = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "ResourceNotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class TokenBucket:
    """ARM's throttling model: a bucket of ``capacity`` requests refilled at ``refill_per_second``.

    (Learn: azure-resource-manager/management/request-limits-and-throttling: writes 200, 10/s.)
    """

    def __init__(self, capacity: float, refill_per_second: float, clock: Callable[[], float] = time.monotonic):
        self.capacity = capacity
        self.refill = refill_per_second
        self._clock = clock
        self._tokens = capacity
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> Optional[float]:
        """Take one token. Returns None if granted, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.refill)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return None
            return (1 - self._tokens) / self.refill


class FakeCredential:
    """A TokenCredential for the fake: issues opaque tokens the fake server accepts until they expire.

    ``lifetime`` seconds lets a test make tokens expire mid-run; azure-core's
    BearerTokenCredentialPolicy must then fetch a new one, as it does against real Entra ID.
    ``reported_lifetime`` (default: ``lifetime``) is the expiry the client is told: longer than
    ``lifetime``, the server rejects a token the client still trusts (clock skew, a revoked
    token), which is the path where ARM answers 401 and the client must recover.
    """

    def __init__(self, authority: TokenAuthority, lifetime: float = 3600.0, reported_lifetime: Optional[float] = None):
        self._authority = authority
        self.lifetime = lifetime
        self.reported_lifetime = lifetime if reported_lifetime is None else reported_lifetime
        self.requests = 0
        self.principal = "admin"  # who the tokens are for (fake_azure/keyvault.py checks it)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        info = self.get_token_info(*scopes)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.requests += 1
        audience = audience_of(scopes)
        if audience is None:
            raise ValueError(f"the fake issues only ARM and Key Vault tokens, not {scopes}")
        token, expires = self._authority.issue(self.lifetime, audience=audience, principal=self.principal)
        return AccessTokenInfo(token, int(expires - self.lifetime + self.reported_lifetime))


def audience_of(scopes: Tuple[str, ...]) -> Optional[str]:
    """"arm" or "vault" for a token request's scopes (or resource), None for any other audience."""
    if not scopes or all(s.startswith("https://management.azure.com") for s in scopes):
        return "arm"
    if all(s.startswith("https://vault.azure.net") for s in scopes):
        return "vault"
    return None


class TokenAuthority:
    """Remembers the tokens it issued, when each expires (wall clock, like a JWT's ``exp``), its
    audience ("arm" or "vault") and whom it was issued to (``principal``)."""

    def __init__(self) -> None:
        self._tokens: Dict[str, float] = {}
        self._holders: Dict[str, Tuple[str, Optional[str]]] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def issue(self, lifetime: float, *, audience: str = "arm", principal: Optional[str] = None) -> Tuple[str, float]:
        with self._lock:
            token = f"fake-{audience}-token-{next(self._counter)}"
            self._tokens[token] = time.time() + lifetime
            self._holders[token] = (audience, principal)
            return token, self._tokens[token]

    def holder(self, authorization: Optional[str]) -> Optional[Tuple[str, Optional[str]]]:
        """(audience, principal) of a valid bearer token, None if it is missing, unknown or expired."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization.split(" ", 1)[1].strip()
        with self._lock:
            if self._tokens.get(token, 0) <= time.time():
                return None
            return self._holders.get(token)

    def expire_all(self) -> None:
        """Expire every token issued so far, now (clients still believe theirs are valid)."""
        with self._lock:
            now = time.time()
            self._tokens = {token: min(expires, now) for token, expires in self._tokens.items()}

    def check(self, authorization: Optional[str]) -> Optional[FakeResponse]:
        """None if the bearer token is valid, else the 401 ARM would return."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return arm_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        token = authorization.split(" ", 1)[1].strip()
        with self._lock:
            expires = self._tokens.get(token)
        if expires is None:
            return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if self._holders.get(token, ("arm", None))[0] != "arm":
            return arm_error(401, "InvalidAuthenticationTokenAudience", "The access token has been obtained for wrong audience or resource.")
        if time.time() >= expires:
            # ARM's 401 carries a Bearer challenge (no claims: azure-core does not resend on it).
            challenge = (
                'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", '
                'error_description="The access token expiry UTC time is earlier than current UTC time."'
            )
            return arm_error(
                401, "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time.", {"WWW-Authenticate": challenge}
            )
        return None


Handler = Callable[[FakeRequest], FakeResponse]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    api_versions: Tuple[str, ...]
    host: str
    is_write: bool
    authenticated: bool


@dataclass
class RecordedCall:
    """One request the fake answered, for assertions and benchmark accounting."""

    method: str
    path: str
    status: int
    at: float


class FakeArmServer:
    """Routes intercepted HTTP requests to registered handlers, adding ARM's cross-cutting behaviour.

    Cross-cutting behaviour, applied in this order: per-request ``latency``; :class:`Hook` s;
    bearer-token check; injected :class:`Fault` s; per-subscription write throttle (429 +
    Retry-After); api-version check (400 like ARM for a version the route does not serve); the
    handler. ``seed`` seeds the RNG of probabilistic faults.
    """

    def __init__(self, *, latency: float = 0.0, sleep: Callable[[float], None] = time.sleep, seed: Optional[int] = 0):
        self.latency = latency
        self.rng = random.Random(seed)
        self._hooks: List[Hook] = []
        self._sleep = sleep
        self._routes: List[_Route] = []
        self._faults: List[Fault] = []
        self._lock = threading.RLock()
        self.calls: List[RecordedCall] = []
        self.record_calls = True
        self.authority = TokenAuthority()
        self._write_throttle: Optional[Tuple[float, float]] = None
        self._buckets: Dict[str, TokenBucket] = {}
        self.throttled = 0
        self._mocks: List[responses.RequestsMock] = []
        self._hosts: set = set()

    # -- configuration -------------------------------------------------------------------
    def credential(self, lifetime: float = 3600.0, reported_lifetime: Optional[float] = None) -> FakeCredential:
        """A credential whose tokens this server accepts (see :class:`FakeCredential`)."""
        return FakeCredential(self.authority, lifetime, reported_lifetime)

    def route(
        self,
        method: str,
        path_regex: str,
        handler: Handler,
        *,
        api_versions: Tuple[str, ...] = (),
        host: str = ARM_HOST,
        authenticated: bool = True,
    ) -> None:
        """Serve ``method`` on paths matching ``path_regex`` (anchored, case-insensitive like ARM)."""
        host = host.rstrip("/")
        if self._mocks and host.lower() not in self._hosts:
            for mock in self._mocks:
                self._register_host(mock, host)
        self._routes.append(
            _Route(
                method.upper(),
                re.compile(f"^{path_regex}$", re.IGNORECASE),
                handler,
                tuple(api_versions),
                host.rstrip("/"),
                method.upper() in ("PUT", "POST", "PATCH", "DELETE"),
                authenticated,
            )
        )

    def inject(self, fault: Fault) -> Fault:
        """Add a fault; returns it so a test can read ``hits`` afterwards."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def inject_random(
        self,
        rate: float,
        statuses: Tuple[int, ...] = (500, 502, 503),
        *,
        method: Optional[str] = None,
        path_contains: Optional[str] = None,
    ) -> List[Fault]:
        """Fail a fraction ``rate`` of matching requests with one of ``statuses`` (equally likely),
        drawn from the seeded RNG: transient errors sprinkled over a long run."""
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        faults = []
        for i, status in enumerate(statuses):
            # The faults are tried in turn, so each later one sees only what the earlier let through.
            share = rate / len(statuses)
            remaining = 1 - share * i
            faults.append(self.inject(Fault(status, method, path_contains, times=None, probability=share / remaining, message="Injected transient fault.")))
        return faults

    def when(self, method: Optional[str], path_contains: str, action: Callable[[], None], times: Optional[int] = 1, skip: int = 0) -> Hook:
        """Run ``action`` just before each of the next ``times`` matching requests is served
        (after letting ``skip`` of them pass)."""
        hook = Hook(method.upper() if method else None, path_contains, action, times, skip)
        with self._lock:
            self._hooks.append(hook)
        return hook

    def clear_faults(self) -> None:
        """Remove every injected fault and hook (the outage is over)."""
        with self._lock:
            self._faults.clear()
            self._hooks.clear()

    def throttle_writes(self, capacity: float = 200, refill_per_second: float = 10) -> None:
        """Throttle writes per subscription with ARM's token bucket (defaults are ARM's)."""
        self._write_throttle = (capacity, refill_per_second)
        self._buckets.clear()

    def install(self, mock: responses.RequestsMock) -> None:
        """Register this server's hosts with ``mock`` for every HTTP method (and hosts of routes added later)."""
        self._mocks.append(mock)
        for host in sorted({r.host for r in self._routes} | {ARM_HOST}):
            self._register_host(mock, host)

    def _register_host(self, mock: responses.RequestsMock, host: str) -> None:
        self._hosts.add(host.lower())
        pattern = re.compile(re.escape(host) + r"(:443)?(/.*)?$", re.IGNORECASE)
        for method in METHODS:
            mock.add_callback(method, pattern, callback=self._callback)

    # -- request handling ----------------------------------------------------------------
    def _callback(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        response = self.handle(request.method, request.url, dict(request.headers), request.body or b"")
        headers = {"x-ms-request-id": "fake", **response.headers}
        if response.body is None:
            return response.status, headers, ""
        if isinstance(response.body, (bytes, str)):
            return response.status, headers, response.body
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return response.status, headers, json.dumps(response.body)

    def handle(self, method: str, url: str, headers: Dict[str, str], body: bytes) -> FakeResponse:
        """Answer one request (also callable directly, without ``responses``)."""
        if self.latency:
            self._sleep(self.latency)
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.hostname}".lower()
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        response = self._dispatch(method.upper(), host, path, query, headers, body, url)
        if self.record_calls:
            with self._lock:
                self.calls.append(RecordedCall(method.upper(), path, response.status, time.monotonic()))
        return response

    def _dispatch(self, method, host, path, query, headers, body, url) -> FakeResponse:
        candidates = [r for r in self._routes if r.host.lower() == host and r.pattern.match(path)]
        route = next((r for r in candidates if r.method == method), None)
        if route is None:
            if candidates:
                return arm_error(405, "MethodNotAllowed", f"The method {method} is not allowed on {path}.")
            return arm_error(404, "NoRegisteredProviderFound", f"The fake Azure serves no route for {method} {path}.")
        self._run_hooks(method, path)
        if route.authenticated:
            denied = self.authority.check(_header(headers, "Authorization"))
            if denied is not None:
                return denied
        fault = self._take_fault(method, path)
        if fault is not None:
            extra = {"Retry-After": _seconds(fault.retry_after)} if fault.retry_after is not None else {}
            failure = arm_error(fault.status, fault.code or DEFAULT_CODES.get(fault.status, "Error"), fault.message, extra)
            if not fault.after_handler:
                return failure
            self._serve(route, method, path, query, headers, body, url)  # the service acts; the caller sees only the failure
            return failure
        if route.is_write and self._write_throttle is not None:
            wait = self._bucket(path).take()
            if wait is not None:
                with self._lock:
                    self.throttled += 1
                return arm_error(
                    429,
                    "TooManyRequests",
                    "The request is being throttled: too many write requests for this subscription.",
                    {"Retry-After": str(math.ceil(wait))},
                )
        return self._serve(route, method, path, query, headers, body, url)

    def _serve(self, route: _Route, method, path, query, headers, body, url) -> FakeResponse:
        if route.api_versions and query.get("api-version") not in route.api_versions:
            return arm_error(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for api-version '{query.get('api-version')}'. "
                f"The supported api-versions are '{', '.join(route.api_versions)}'.",
            )
        request = FakeRequest(method, url, path, query, headers, body, route.pattern.match(path))
        return route.handler(request)

    def _take_fault(self, method: str, path: str) -> Optional[Fault]:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.seen += 1
                    if fault.seen <= fault.skip:
                        continue
                    if fault.probability < 1 and self.rng.random() >= fault.probability:
                        continue
                    fault.hits += 1
                    return fault
        return None

    def _run_hooks(self, method: str, path: str) -> None:
        due = []
        with self._lock:
            for hook in self._hooks:
                if hook.times is not None and hook.hits >= hook.times:
                    continue
                if (hook.method is None or hook.method == method) and hook.path_contains.lower() in path.lower():
                    hook.seen += 1
                    if hook.seen > hook.skip:
                        hook.hits += 1
                        due.append(hook)
        for hook in due:  # outside the lock: an action may call back into the fake
            hook.action()

    def _bucket(self, path: str) -> TokenBucket:
        m = re.match(r"^/subscriptions/([^/]+)", path, re.IGNORECASE)
        key = m.group(1).lower() if m else ""
        with self._lock:
            if key not in self._buckets:
                capacity, refill = self._write_throttle  # type: ignore[misc]
                self._buckets[key] = TokenBucket(capacity, refill)
            return self._buckets[key]

    # -- assertions helpers --------------------------------------------------------------
    def count(self, method: Optional[str] = None, path_contains: str = "", status: Optional[int] = None) -> int:
        """How many recorded calls match."""
        with self._lock:
            return sum(
                1
                for c in self.calls
                if (method is None or c.method == method.upper()) and path_contains.lower() in c.path.lower() and (status is None or c.status == status)
            )


def _header(headers: Dict[str, str], name: str) -> Optional[str]:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _seconds(value: float) -> str:
    # ARM sends whole seconds; an injected fault may ask for a fraction to keep tests fast.
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
