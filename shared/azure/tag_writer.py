"""Write or remove tags on an existing compute instance, and prove they stuck.

Whether Azure ML lets anyone change the tags of an existing compute instance is UNCONFIRMED
(docs/platform.md, "Unconfirmed"; "Azure ML compute instances"): the compute PATCH body has no tags, and a
full PUT of an existing CI may be refused. So there are two routes behind one interface:

- ``tags_api``: the generic ARM Tags API at the compute's scope,
  ``PATCH {computeId}/providers/Microsoft.Resources/tags/default?api-version=2021-04-01`` with
  ``{"operation": "Merge" | "Delete", "properties": {"tags": {...}}}`` (Azure/azure-rest-api-specs,
  specification/resources/resource-manager/Microsoft.Resources/stable/2021-04-01/resources.json,
  operation Tags_UpdateAtScope, body TagsPatchResource, 200 answer TagsResource). Sent through
  azure-mgmt-core's ARMPipelineClient with the same credential, so azure-core's retry policy
  (429/5xx, Retry-After) applies as it does to azure-ai-ml's own calls;
- ``full_put``: GET the compute and PUT it back with the new tags through azure-ai-ml's generated
  compute operations (``MLClient.compute._operation``, as :mod:`shared.azure.ml_gateway` uses);
- ``auto`` (default, ``exemption.tag_write_method``): the Tags API, falling back to the full PUT
  when the Tags API is refused (400/405), fails with 5xx, or its write does not show on the compute.

Either way the tags are then READ BACK from the compute itself (what the stop sweep reads), and
:class:`TagWriteError` says so plainly if they did not stick. The Tags API may answer 200 or 202 +
Location (docs/platform.md, "Azure ML compute instances"): a 202's Location is polled once, then
the compute is read back. A write that answered 5xx after azure-core's retries may still have
been applied: it is read back before being called failed. Azure's limit of 50 tags per resource is
checked before writing (:data:`shared.tags.MAX_TAGS_PER_RESOURCE`).

Where the compute refuses or ignores every route, the caller records the exemption on the CI's
**workspace** instead (:meth:`TagWriter.merge_workspace`, :meth:`TagWriter.delete_workspace`:
the Tags API at the workspace's scope, which workspaces support; proven by reading the workspace
back). See shared.tags for the tag format.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

from shared.azure.errors import translated
from shared.azure.ml_gateway import MLGateway
from shared.errors import TagWriteError
from shared.models import WorkspaceRef
from shared.sections import AUTO, FULL_PUT, TAG_WRITE_METHODS, TAGS_API
from shared.tags import MAX_TAGS_PER_RESOURCE

log = logging.getLogger(__name__)

ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
TAGS_API_VERSION = "2021-04-01"
# Statuses meaning "this resource type does not take the Tags API": worth trying the full PUT.
FALLBACK_STATUSES = (400, 405)
# 400 codes that say the request itself is wrong (too many tags, too long): no other route helps.
# The codes are UNCONFIRMED (docs/platform.md, "Fake Azure"); the 50-tag limit is checked beforehand anyway.
LIMIT_CODES = ("InvalidTagCount", "InvalidTagNameLength", "InvalidTagValueLength", "InvalidTagName")


@dataclass(frozen=True)
class TagWriteResult:
    """How the tags were written and what the compute shows afterwards."""

    method: str  # tags_api, full_put or workspace_tags_api: the route that worked
    tags: Dict[str, str]  # the compute's tags as read back
    fell_back: bool = False
    detail: str = ""


class TagWriter:
    """Merge tags into, or delete tags from, an existing compute instance."""

    def __init__(
        self,
        credential: Any,
        gateway: MLGateway,
        method: str = AUTO,
        *,
        readback_attempts: int = 3,
        readback_delay_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        endpoint: str = ARM_ENDPOINT,
        pipeline_client: Any = None,
    ):
        if method not in TAG_WRITE_METHODS:
            raise ValueError(f"tag write method must be one of {', '.join(TAG_WRITE_METHODS)}, not {method!r}")
        self.method = method
        self._credential = credential
        self._gateway = gateway
        self._attempts = max(1, readback_attempts)
        self._delay = readback_delay_seconds
        self._sleep = sleep
        self._endpoint = endpoint.rstrip("/")
        self._client = pipeline_client

    # -- public interface ------------------------------------------------------------------
    @translated
    def merge(self, workspace: WorkspaceRef, name: str, tags: Mapping[str, str], current: Optional[Mapping[str, str]] = None) -> TagWriteResult:
        """Add or update ``tags`` on the CI; every other tag stays as it is.

        ``current`` (the CI's tags as last read) lets a key that exists in another letter case be
        updated in place rather than duplicated (ARM tag names are case-insensitive).
        """
        wanted = _align_case(dict(tags), current or {})
        check_tag_count(current, wanted, f"compute instance {workspace.name}/{name}")

        def check(seen: Mapping[str, str]) -> List[str]:
            return [f"{k}={v!r} (found {_lookup(seen, k)!r})" for k, v in wanted.items() if _lookup(seen, k) != v]

        return self._write(workspace, name, "Merge", wanted, lambda have: {**_without(have, wanted), **wanted}, check)

    @translated
    def delete(self, workspace: WorkspaceRef, name: str, tag_names: Iterable[str], current: Optional[Mapping[str, str]] = None) -> TagWriteResult:
        """Remove the named tags (any letter case) from the CI; every other tag stays as it is."""
        doomed = {n.lower() for n in tag_names}
        have = dict(current) if current is not None else self.read(workspace, name)
        # Tags API "Delete" removes a tag whose name and value both match: send the values as they are.
        present = {k: v for k, v in have.items() if k.lower() in doomed}
        if not present:
            return TagWriteResult(self.method, have, detail="none of the tags were present")

        def check(seen: Mapping[str, str]) -> List[str]:
            return [f"{k} is still present" for k in seen if k.lower() in doomed]

        return self._write(workspace, name, "Delete", present, lambda now: {k: v for k, v in now.items() if k.lower() not in doomed}, check)

    def read(self, workspace: WorkspaceRef, name: str) -> Dict[str, str]:
        """The CI's tags as the compute resource shows them (what the stop sweep reads)."""
        return dict(self._gateway.get_compute_instance(workspace, name).tags or {})

    # -- the two routes --------------------------------------------------------------------
    def _write(self, workspace, name, operation, tags, transform, check) -> TagWriteResult:
        target = f"{workspace.name}/{name}"
        if self.method == FULL_PUT:
            return self._full_put_and_verify(workspace, name, transform, check, fell_back=False)
        try:
            self._tags_api_patch(workspace, name, operation, tags)
        except _TagsApiRefused as exc:
            if exc.limit:
                raise TagWriteError(f"Azure refused the tags on {target}: {exc}") from None
            if self.method != AUTO:
                raise TagWriteError(
                    f"the ARM Tags API refused to change tags on {target}: {exc}. "
                    "If this resource type does not take the Tags API, set exemption.tag_write_method to 'auto' or 'full_put'."
                ) from None
            log.warning("The ARM Tags API refused tags on %s (%s); falling back to a full PUT of the compute", target, exc)
            return self._full_put_and_verify(workspace, name, transform, check, fell_back=True)
        except Exception as exc:  # noqa: BLE001 - a 5xx after retries: the write may have been applied
            if not _transient(exc):
                raise
            seen, problems = self._verify(workspace, name, check)
            if not problems:
                log.warning("The ARM Tags API answered %s for %s, but the tags are there", _describe(exc), target)
                return TagWriteResult(TAGS_API, seen, detail=f"answered {_describe(exc)} but applied")
            if self.method != AUTO:
                raise
            log.warning("The ARM Tags API failed for %s (%s); falling back to a full PUT", target, _describe(exc))
            return self._full_put_and_verify(workspace, name, transform, check, fell_back=True)
        problems = self._verify(workspace, name, check)
        if not problems[1]:
            return TagWriteResult(TAGS_API, problems[0])
        if self.method == AUTO:
            log.warning("The ARM Tags API accepted tags on %s but they did not show (%s); falling back to a full PUT", target, "; ".join(problems[1]))
            return self._full_put_and_verify(workspace, name, transform, check, fell_back=True)
        raise TagWriteError(
            f"the ARM Tags API answered success for {target} but the compute does not show the change: {'; '.join(problems[1])}. "
            "Set exemption.tag_write_method to 'auto' or 'full_put' (see docs/admin.md, 'Verify once, on a real CI, that exemption tags stick')."
        )

    # -- the workspace (where exemptions go when the CI refuses tags) ----------------------------
    @translated
    def merge_workspace(self, workspace: WorkspaceRef, tags: Mapping[str, str], current: Optional[Mapping[str, str]] = None) -> TagWriteResult:
        """Add or update ``tags`` on the workspace through the Tags API (Merge), proven by reading it back."""
        have = dict(current) if current is not None else self.read_workspace(workspace)
        wanted = _align_case(dict(tags), have)
        check_tag_count(have, wanted, f"workspace {workspace.name}")

        def check(seen: Mapping[str, str]) -> List[str]:
            return [f"{k}={v!r} (found {_lookup(seen, k)!r})" for k, v in wanted.items() if _lookup(seen, k) != v]

        return self._workspace_write(workspace, "Merge", wanted, check)

    @translated
    def delete_workspace(self, workspace: WorkspaceRef, tag_names: Iterable[str], current: Optional[Mapping[str, str]] = None) -> TagWriteResult:
        """Remove the named tags (any letter case) from the workspace, proven by reading it back."""
        doomed = {n.lower() for n in tag_names}
        have = dict(current) if current is not None else self.read_workspace(workspace)
        present = {k: v for k, v in have.items() if k.lower() in doomed}
        if not present:
            return TagWriteResult(WORKSPACE_TAGS_API, have, detail="none of the tags were present")

        def check(seen: Mapping[str, str]) -> List[str]:
            return [f"{k} is still present" for k in seen if k.lower() in doomed]

        return self._workspace_write(workspace, "Delete", present, check)

    def read_workspace(self, workspace: WorkspaceRef) -> Dict[str, str]:
        """The workspace's tags as ARM shows them now."""
        return dict(self._gateway.get_workspace(workspace).tags or {})

    def _workspace_write(self, workspace, operation, tags, check) -> TagWriteResult:
        target = f"workspace {workspace.name}"
        url = f"{self._endpoint}{workspace.arm_id}/providers/Microsoft.Resources/tags/default"
        try:
            self._send_tags_patch(url, operation, tags)
        except _TagsApiRefused as exc:
            raise TagWriteError(f"Azure refused the tags on {target}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - 5xx after retries: read back before deciding
            if not _transient(exc):
                raise
        seen: Dict[str, str] = {}
        problems: List[str] = []
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._delay)
            seen = self.read_workspace(workspace)
            problems = check(seen)
            if not problems:
                return TagWriteResult(WORKSPACE_TAGS_API, seen)
        raise TagWriteError(f"the tags on {target} did not stick: {'; '.join(problems)}")

    def _full_put_and_verify(self, workspace, name, transform, check, *, fell_back: bool) -> TagWriteResult:
        target = f"{workspace.name}/{name}"
        try:
            self._full_put(workspace, name, transform)
        except Exception as exc:  # noqa: BLE001 - any refusal is reported the same way
            raise TagWriteError(f"a full PUT of compute {target} to change its tags failed: {_describe(exc)}") from None
        seen, problems = self._verify(workspace, name, check)
        if problems:
            raise TagWriteError(f"a full PUT of compute {target} succeeded but the tags did not stick: {'; '.join(problems)}")
        return TagWriteResult(FULL_PUT, seen, fell_back, "fell back to a full PUT" if fell_back else "")

    def _tags_api_patch(self, workspace: WorkspaceRef, name: str, operation: str, tags: Mapping[str, str]) -> None:
        self._send_tags_patch(f"{self._endpoint}{workspace.arm_id}/computes/{name}/providers/Microsoft.Resources/tags/default", operation, tags)

    def _send_tags_patch(self, url: str, operation: str, tags: Mapping[str, str]) -> None:
        """Tags_UpdateAtScope: 200, or 202 + Location (polled once; the read-back decides)."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, map_error
        from azure.core.rest import HttpRequest
        from azure.mgmt.core.exceptions import ARMErrorFormat

        body = {"operation": operation, "properties": {"tags": dict(tags)}}  # TagsPatchResource
        request = HttpRequest("PATCH", url, params={"api-version": TAGS_API_VERSION}, json=body)
        response = self._pipeline().send_request(request)
        if response.status_code == 200:
            return
        if response.status_code == 202:
            location = response.headers.get("Location") or response.headers.get("Azure-AsyncOperation")
            if location:
                try:
                    self._pipeline().send_request(HttpRequest("GET", location))
                except Exception as exc:  # noqa: BLE001 - the read-back decides whether it was applied
                    log.info("Polling the Tags API operation failed (%s); reading the resource back instead", _describe(exc))
            return
        if response.status_code in FALLBACK_STATUSES:
            error = HttpResponseError(response=response, error_format=ARMErrorFormat)
            code = getattr(getattr(error, "error", None), "code", None) or ""
            raise _TagsApiRefused(_describe(error), limit=code in LIMIT_CODES)
        map_error(response.status_code, response, {401: ClientAuthenticationError, 404: ResourceNotFoundError})
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)

    def _full_put(self, workspace: WorkspaceRef, name: str, transform: Callable[[Dict[str, str]], Dict[str, str]]) -> None:
        self._gateway.put_compute_tags(workspace, name, transform)

    def _verify(self, workspace, name, check):
        seen: Dict[str, str] = {}
        problems: List[str] = []
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._delay)
            seen = self.read(workspace, name)
            problems = check(seen)
            if not problems:
                break
        return seen, problems

    def _pipeline(self) -> Any:
        if self._client is None:
            from azure.core.configuration import Configuration
            from azure.core.pipeline import policies
            from azure.mgmt.core import ARMPipelineClient
            from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

            config: Any = Configuration()
            config.headers_policy = policies.HeadersPolicy()
            config.user_agent_policy = policies.UserAgentPolicy(sdk_moniker="ci-governance")
            config.proxy_policy = policies.ProxyPolicy()
            config.redirect_policy = policies.RedirectPolicy()
            config.retry_policy = policies.RetryPolicy()
            config.authentication_policy = ARMChallengeAuthenticationPolicy(self._credential, ARM_SCOPE)
            config.custom_hook_policy = policies.CustomHookPolicy()
            config.logging_policy = policies.NetworkTraceLoggingPolicy()
            config.http_logging_policy = ARMHttpLoggingPolicy()
            self._client = ARMPipelineClient(base_url=self._endpoint, config=config)
        return self._client


WORKSPACE_TAGS_API = "workspace_tags_api"


class _TagsApiRefused(Exception):
    """The Tags API answered 400/405 for this resource (``limit``: because of a tag limit)."""

    def __init__(self, message: str, *, limit: bool = False):
        super().__init__(message)
        self.limit = limit


def check_tag_count(current: Optional[Mapping[str, str]], wanted: Mapping[str, str], target: str) -> None:
    """Raise TagWriteError when merging ``wanted`` into ``current`` would pass Azure's 50 tags per resource."""
    if current is None:
        return
    names = {k.lower() for k in current} | {k.lower() for k in wanted}
    if len(names) > MAX_TAGS_PER_RESOURCE:
        raise TagWriteError(
            f"{target} has {len(current)} tags and this write would make {len(names)}: Azure allows {MAX_TAGS_PER_RESOURCE} per resource. "
            "Remove tags that are no longer needed (or expired exemptions), then ask again."
        )


def _transient(exc: BaseException) -> bool:
    from shared.azure.errors import is_transient

    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return is_transient(exc) or (isinstance(status, int) and status >= 500)


def _lookup(tags: Mapping[str, str], name: str) -> Optional[str]:
    lowered = name.lower()
    return next((v for k, v in tags.items() if k.lower() == lowered), None)


def _without(tags: Mapping[str, str], names: Mapping[str, str]) -> Dict[str, str]:
    drop = {k.lower() for k in names}
    return {k: v for k, v in tags.items() if k.lower() not in drop}


def _align_case(tags: Dict[str, str], current: Mapping[str, str]) -> Dict[str, str]:
    existing = {k.lower(): k for k in current}
    return {existing.get(k.lower(), k): v for k, v in tags.items()}


def _describe(exc: BaseException) -> str:
    from shared.azure.errors import describe_error

    return describe_error(exc)
