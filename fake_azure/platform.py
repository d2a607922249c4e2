"""Which reading of the platform the fake Azure follows, where public sources disagree or are silent.

Every field is one uncertain (or, for ``package_validation``/``run_jobs``, one legacy-vs-documented)
behaviour; its values and their sources are listed next to it and in docs/platform.md. The fake's
resource providers take ``platform=`` (``FakeMachineLearning``, ``FakeAutomation``).

- :data:`PESSIMISTIC`: the reading that makes the product's life hardest (the default to aim for).
- :data:`OPTIMISTIC`: the friendliest reading that a public source still allows.
- :data:`ALL_VARIANTS`: a short list that takes every value of every field at least once, for
  ``pytest.mark.parametrize("platform", ALL_VARIANTS, ids=VARIANT_IDS)``.
- :data:`LEGACY`: the fake as it behaved before issue #10 (tags writable, wrong-state refused at
  once with 409, bad wheels refused at import, jobs not executed). It is *not* a reading of real
  Azure and is not in ``ALL_VARIANTS``; a test that needs it passes ``platform=LEGACY`` and says why.

The constructor default is :data:`PESSIMISTIC` (:data:`DEFAULT`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Dict, List, Optional, Tuple

# Values of each field (the first is the pessimistic one where that makes sense).
COMPUTE_TAGS_API = ("refused", "accepted_202", "applied_200", "ignored_200")
COMPUTE_FULL_PUT_EXISTING = ("ignored", "applied", "refused")
WRONG_STATE = ("late", "sync_409")
WEBHOOK_PARAMETERS_ORDER = ("after", "before")
JOB_NONZERO_EXIT = ("Completed", "Failed")
PACKAGE_VALIDATION = ("job", "import")

FIELD_VALUES: Dict[str, Tuple[object, ...]] = {
    "compute_tags_api": COMPUTE_TAGS_API,
    "compute_full_put_existing": COMPUTE_FULL_PUT_EXISTING,
    "wrong_state": WRONG_STATE,
    "webhook_parameters_order": WEBHOOK_PARAMETERS_ORDER,
    "webhook_body_escaped": (True, False),
    "import_rate_limited": (True, False),
    "job_nonzero_exit": JOB_NONZERO_EXIT,
    "package_validation": PACKAGE_VALIDATION,
    "run_jobs": (True, False),
}


@dataclass(frozen=True)
class Platform:
    """One reading of the platform. ``name`` is for test ids and messages only."""

    name: str = "custom"
    # ARM Tags API (Microsoft.Resources/tags/default) at a compute's scope.
    # - "refused": 400; tag-support.md lists workspaces/computes "Supports tags: No" (the exact
    #   status and code the service answers are UNCONFIRMED; the fake answers 400
    #   UnsupportedResourceOperation);
    # - "accepted_202": 202 + Location, applied when the Location is polled or shortly after
    #   (TagsResource.tsp / example PatchTagsResource.json; azure-rest-api-specs#20267);
    # - "applied_200": 200 and applied (the Tags_* 200 responses in resources.json 2021-04-01);
    # - "ignored_200": 200 echoing the new tags, compute unchanged (the failure a read-back catches).
    compute_tags_api: str = "refused"
    # Full PUT (Compute_CreateOrUpdate) of an existing compute:
    # - "ignored": 200, nothing changes (Azure/bicep#17617, Azure/bicep-types-az#2543);
    # - "applied": 200 and the new tags are stored (the spec's "will overwrite a compute if it exists");
    # - "refused": 400 (older fake behaviour, kept for full_put_of_existing_allowed=False).
    compute_full_put_existing: str = "ignored"
    # Start of a CI that is not Stopped / stop of a CI that is not Running:
    # - "late": POST 202 + Location, the operation then fails with 400
    #   StartComputeInstanceOnlyAllowedInStoppedState / StopComputeInstanceOnlyAllowedInRunningState
    #   (microsoft/vscode-tools-for-ai#2096, #1100, #2439: "Long running operation failed");
    # - "sync_409": the POST itself answers 409 with that code (no public source; older fake).
    wrong_state: str = "late"
    # Where a webhook's own parameter values go in argv relative to the WebhookData envelope.
    # No source says (automation-webhooks.md: Python webhooks "aren't supported"): both.
    webhook_parameters_order: str = "after"
    # Whether the RequestBody in the envelope has its quotes escaped as \" and its newlines as the
    # literal sequence \r\n (automation-webhooks.md's WebhookData example; the Python 3 variant of
    # azureautomation/runbooks Utility/Python/process_azure_alerts.py strips both) or arrives raw.
    webhook_body_escaped: bool = True
    # Package imports limited to about 5 per 30 s per account, 429 + Retry-After beyond
    # (azureautomation/runbooks Utility/Python/import_py3package_from_pypi.py paces its imports and
    # waits 60 s on 429; the exact limit is UNCONFIRMED).
    import_rate_limited: bool = True
    # Job status of a Python runbook that exits non-zero or raises: UNCONFIRMED. "Completed"
    # (pessimistic: only the streams tell) or "Failed".
    job_nonzero_exit: str = "Completed"
    # When Python 3.10 packages are checked: "job" (automation-runbook-types.md, Python 3.10 tab:
    # "only validated during job runtime"; the import ends Succeeded) or "import" (older fake).
    package_validation: str = "job"
    # Whether the fake executes a created job's runbook (the platform does; the older fake did not).
    run_jobs: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "name":
                continue
            allowed = FIELD_VALUES[f.name]
            if getattr(self, f.name) not in allowed:
                raise ValueError(f"Platform.{f.name} must be one of {allowed}, not {getattr(self, f.name)!r}")

    def but(self, **changes: object) -> Platform:
        """A copy with some fields changed (``PESSIMISTIC.but(import_rate_limited=False)``)."""
        return replace(self, **changes)  # type: ignore[arg-type]


PESSIMISTIC = Platform(name="pessimistic")
OPTIMISTIC = Platform(
    name="optimistic",
    compute_tags_api="applied_200",
    compute_full_put_existing="applied",
    wrong_state="sync_409",
    webhook_parameters_order="before",
    webhook_body_escaped=False,
    import_rate_limited=False,
    job_nonzero_exit="Failed",
)
# The Tags API answers 202 and applies later; a full PUT is refused; envelope escaped, parameters first.
TAGS_ACCEPTED_202 = Platform(
    name="tags-accepted-202",
    compute_tags_api="accepted_202",
    compute_full_put_existing="refused",
    webhook_parameters_order="before",
    webhook_body_escaped=True,
)
# Every tag write "succeeds" and nothing sticks (only a read-back can tell).
TAGS_SILENTLY_IGNORED = Platform(
    name="tags-silently-ignored",
    compute_tags_api="ignored_200",
    compute_full_put_existing="ignored",
    webhook_body_escaped=False,
    import_rate_limited=False,
    job_nonzero_exit="Failed",
)
LEGACY = Platform(
    name="legacy",
    compute_tags_api="applied_200",
    compute_full_put_existing="applied",
    wrong_state="sync_409",
    webhook_parameters_order="after",
    webhook_body_escaped=False,
    import_rate_limited=False,
    job_nonzero_exit="Failed",
    package_validation="import",
    run_jobs=False,
)

ALL_VARIANTS: List[Platform] = [PESSIMISTIC, OPTIMISTIC, TAGS_ACCEPTED_202, TAGS_SILENTLY_IGNORED]
VARIANT_IDS: List[str] = [p.name for p in ALL_VARIANTS]
# The constructor default: the reading that makes the product's life hardest (issue #10).
DEFAULT = PESSIMISTIC


def resolve(
    platform: Optional[Platform],
    *,
    tags_api_supported: Optional[bool] = None,
    tags_api_ignored: Optional[bool] = None,
    full_put_of_existing_allowed: Optional[bool] = None,
    import_rate_limited: Optional[bool] = None,
) -> Platform:
    """``platform`` (default :data:`DEFAULT`) with the older constructor switches applied on top."""
    p = platform or DEFAULT
    if tags_api_supported is not None:
        p = replace(p, compute_tags_api="applied_200" if tags_api_supported else "refused")
    if tags_api_ignored and tags_api_supported is not False:
        p = replace(p, compute_tags_api="ignored_200")
    if full_put_of_existing_allowed is not None:
        p = replace(p, compute_full_put_existing="applied" if full_put_of_existing_allowed else "refused")
    if import_rate_limited is not None:
        p = replace(p, import_rate_limited=import_rate_limited)
    return p
