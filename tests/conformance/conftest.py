"""Fixtures for the Azure Batch SDK conformance suite (azure-batch 15.x).

One real `openbatch server` per test session, on 127.0.0.1 with a port the OS picks and a
throwaway data directory; Azurite's blob service for the tests that need storage. Tests talk to
them only through the official `azure-batch` and `azure-storage-blob` SDKs, the way a user of
Azure Batch would. Every wait has a deadline (`wait_until`), and the SDK client has
connect/read timeouts, so a hung server fails the suite instead of hanging it.

Starting and stopping the processes lives in `serverproc.py`, shared with the azure-batch 14.x
suite in `sdk14/` (which runs in its own venv, with its own conftest).
"""

from __future__ import annotations

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from serverproc import (  # noqa: F401  (re-exported for the test modules)
    HTTP_CONNECT_TIMEOUT_S,
    HTTP_READ_TIMEOUT_S,
    NODES_IDLE_TIMEOUT_S,
    Azurite,
    Server,
    running_azurite,
    running_server,
    unique_id,
    wait_until,
)

# The virtual machine configuration of Azure-Samples/batch-python-quickstart.
QUICKSTART_VM_CONFIG = m.VirtualMachineConfiguration(
    image_reference=m.BatchVmImageReference(
        publisher="canonical",
        offer="0001-com-ubuntu-server-focal",
        sku="20_04-lts",
        version="latest",
    ),
    node_agent_sku_id="batch.node.ubuntu 20.04",
)


def make_client(endpoint: str, account: str, key: str) -> BatchClient:
    return BatchClient(
        endpoint,
        AzureNamedKeyCredential(account, key),
        connection_timeout=HTTP_CONNECT_TIMEOUT_S,
        read_timeout=HTTP_READ_TIMEOUT_S,
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    with running_server(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory):
    """Azurite's blob service, started the first time a test asks for it."""
    with running_azurite(tmp_path_factory) as azurite:
        yield azurite


@pytest.fixture(scope="session")
def client(server: Server) -> BatchClient:
    return make_client(server.endpoint, server.account_name, server.account_key)


def create_pool_and_wait_idle(
    client: BatchClient,
    pool_id: str,
    nodes: int,
    slots: int,
    vm_size: str = "Standard_D2s_v3",
    **pool_options,
) -> list:
    """Create a pool of local nodes and wait until all of them are idle."""
    client.create_pool(
        m.BatchPoolCreateOptions(
            id=pool_id,
            vm_size=vm_size,
            target_dedicated_nodes=nodes,
            task_slots_per_node=slots,
            virtual_machine_configuration=QUICKSTART_VM_CONFIG,
            **pool_options,
        )
    )

    def all_idle():
        listed = list(client.list_nodes(pool_id))
        if len(listed) == nodes and all(n.state == m.BatchNodeState.IDLE for n in listed):
            return listed
        return None

    return wait_until(all_idle, NODES_IDLE_TIMEOUT_S, f"{nodes} idle nodes in pool {pool_id}")


def wait_task_completed(client: BatchClient, job_id: str, task_id: str, timeout: float):
    """Wait for one task to reach `completed` and return it."""

    def completed():
        task = client.get_task(job_id, task_id)
        return task if task.state == m.BatchTaskState.COMPLETED else None

    return wait_until(completed, timeout, f"task {job_id}/{task_id} to complete")


def read_task_file(client: BatchClient, job_id: str, task_id: str, path: str, **kwargs) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, path, **kwargs))
