"""The Azure ML gateway on the real azure-ai-ml: what it relies on inside the SDK, what it sends,
and what it maps. A new azure-ai-ml that moves ``MLClient.compute._operation`` fails here first."""

from __future__ import annotations

import threading
import time

from azure.ai.ml import MLClient

from shared.azure.ml_gateway import AzureMLGateway
from shared.models import WorkspaceRef
from tests.conftest import SUB1, SUB2, TENANT


def test_the_generated_operations_the_gateway_uses_exist_in_the_pinned_sdk(arm):
    client = MLClient(arm.credential(), SUB1)
    for name in ("list", "get", "begin_stop", "begin_start"):
        assert callable(getattr(client.compute._operation, name)), name
    assert callable(client.workspaces._operation.list_by_resource_group)


def test_lists_workspaces_and_only_compute_instances_with_their_fields(arm, ml):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one", "northeurope")
    ml.add_workspace(SUB1, "rg-b", "mlw-two")
    ml.add_workspace(SUB2, "rg-c", "mlw-three")
    ml.add_compute_instance(ws, "ci-ada", state="JobRunning", vm_size="STANDARD_NC6S_V3", tags={"team": "x"}, assigned_user=("oid-1", TENANT), idle_minutes=45)
    ml.add_compute_instance(ws, "gpu-cluster", compute_type="AmlCompute")
    gw = AzureMLGateway(arm.credential())
    assert sorted(w.name for w in gw.list_workspaces(SUB1)) == ["mlw-one", "mlw-two"]
    assert [w.name for w in gw.list_workspaces(SUB1, "rg-b")] == ["mlw-two"]
    (ci,) = gw.list_compute_instances(WorkspaceRef(SUB1, "rg-a", "mlw-one"))
    assert (ci.name, ci.state, ci.vm_size, ci.location, ci.tags) == ("ci-ada", "JobRunning", "STANDARD_NC6S_V3", "northeurope", {"team": "x"})
    assert (ci.assigned_user_object_id, ci.assigned_user_tenant_id, ci.idle_shutdown_minutes) == ("oid-1", TENANT, 45)
    assert gw.get_compute_instance(ci.workspace, "ci-ada") == ci


def test_one_client_per_subscription_and_no_polling_thread_per_stop(arm, ml):
    ws = ml.add_workspace(SUB1, "rg-a", "mlw-one")
    for i in range(5):
        ml.add_compute_instance(ws, f"ci-{i}")
    gw = AzureMLGateway(arm.credential())
    ref = WorkspaceRef(SUB1, "rg-a", "mlw-one")
    assert gw.client(SUB1) is gw.client(SUB1.upper())
    before = threading.active_count()
    for i in range(5):
        gw.request_stop(ref, f"ci-{i}")
    assert threading.active_count() == before  # azure-ai-ml's begin_stop would start a poller thread per CI
    assert arm.count("POST", "/stop") == 5 and arm.count("GET", "computeOperationsStatus") == 0
    time.sleep(0.1)
    assert {c.state for c in gw.list_compute_instances(ref)} == {"Stopped"}
