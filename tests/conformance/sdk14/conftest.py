"""Fixtures for the conformance suite of the older Azure Batch SDK, azure-batch 14.x.

14.x is the AutoRest/msrest generation that most existing code, the official quickstart and
tutorials included, was written against: `BatchServiceClient(SharedKeyCredentials(name, key),
batch_url=...)`, operation groups (`pool.add`, `task.add_collection`, `file.get_from_task`),
`BatchErrorException`, api-version `2024-02-01.19.0`, and `nextLink` followed verbatim.

It cannot share a venv with azure-batch 15.x (both are the `azure.batch` package), so this
directory is its own pytest run, with its own pytest.ini and venv (.venv-conformance-14, from
tests/conformance/requirements-14.txt; scripts/test.sh makes it). The processes come from the
shared `serverproc.py` one directory up, exactly as for the 15.x suite.
"""

from __future__ import annotations

import pytest

try:
    import azure.batch.models as bm
    from azure.batch import BatchServiceClient
    from azure.batch.batch_auth import SharedKeyCredentials
except ImportError as err:  # azure-batch 15.x, or none at all
    pytest.exit(
        f"tests/conformance/sdk14 needs azure-batch 14.x ({err}): run it with "
        ".venv-conformance-14/bin/python -m pytest tests/conformance/sdk14 (scripts/test.sh does)",
        returncode=2,
    )

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

# What azure-batch 14.2.0 sends, whatever the server's own default is.
SDK14_API_VERSION = "2024-02-01.19.0"
DELETE_TIMEOUT_S = 60.0

# The virtual machine configuration of Azure-Samples/batch-python-quickstart, in 14.x models.
QUICKSTART_VM_CONFIG = bm.VirtualMachineConfiguration(
    image_reference=bm.ImageReference(
        publisher="canonical",
        offer="0001-com-ubuntu-server-focal",
        sku="20_04-lts",
        version="latest",
    ),
    node_agent_sku_id="batch.node.ubuntu 20.04",
)


def make_client(endpoint: str, account: str, key: str) -> BatchServiceClient:
    client = BatchServiceClient(SharedKeyCredentials(account, key), batch_url=endpoint)
    # msrest hands this to requests as its (connect, read) timeout.
    client.config.connection.timeout = (HTTP_CONNECT_TIMEOUT_S, HTTP_READ_TIMEOUT_S)
    return client


class WireLog:
    """Every HTTP exchange a 14.x client makes, through msrest's (requests) response hooks."""

    def __init__(self) -> None:
        self.responses: list = []

    def __call__(self, response, *args, **kwargs) -> None:
        self.responses.append(response)

    def requests(self, method: str, path_part: str) -> list:
        return [
            r.request.url
            for r in self.responses
            if r.request.method == method and path_part in r.request.url
        ]

    def clear(self) -> None:
        self.responses.clear()


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
def client(server: Server) -> BatchServiceClient:
    return make_client(server.endpoint, server.account_name, server.account_key)


@pytest.fixture
def wire(client: BatchServiceClient):
    """The HTTP exchanges of `client` during one test."""
    log = WireLog()
    client.config.hooks.append(log)
    try:
        yield log
    finally:
        client.config.hooks.remove(log)


def error_code(call) -> str | None:
    """Run `call`; return the Batch error code of the BatchErrorException it raises, else None."""
    try:
        call()
    except bm.BatchErrorException as err:
        return err.error.code if err.error is not None else f"(no error body, {err.response.status_code})"
    return None


def create_pool_and_wait_idle(
    client: BatchServiceClient,
    pool_id: str,
    nodes: int,
    slots: int = 1,
    vm_size: str = "STANDARD_DS1_V2",
    **pool_options,
) -> list:
    """pool.add, then poll compute_node.list until every node is idle (as 14.x users do)."""
    client.pool.add(
        bm.PoolAddParameter(
            id=pool_id,
            vm_size=vm_size,
            target_dedicated_nodes=nodes,
            task_slots_per_node=slots,
            virtual_machine_configuration=QUICKSTART_VM_CONFIG,
            **pool_options,
        )
    )

    def all_idle():
        listed = list(client.compute_node.list(pool_id))
        if len(listed) == nodes and all(n.state == bm.ComputeNodeState.idle for n in listed):
            return listed
        return None

    return wait_until(all_idle, NODES_IDLE_TIMEOUT_S, f"{nodes} idle nodes in pool {pool_id}")


def wait_task_completed(client: BatchServiceClient, job_id: str, task_id: str, timeout: float):
    def completed():
        task = client.task.get(job_id, task_id)
        return task if task.state == bm.TaskState.completed else None

    return wait_until(completed, timeout, f"task {job_id}/{task_id} to complete")


def read_task_file(client: BatchServiceClient, job_id: str, task_id: str, path: str, **options) -> bytes:
    opts = bm.FileGetFromTaskOptions(**options) if options else None
    return b"".join(client.file.get_from_task(job_id, task_id, path, file_get_from_task_options=opts))


def delete_job_and_wait(client: BatchServiceClient, job_id: str) -> None:
    """job.delete (202), then job.get until JobNotFound: 14.x has no long-running-operation
    poller, so this is what its users write."""
    try:
        client.job.delete(job_id)
    except bm.BatchErrorException as err:
        if err.error is None or err.error.code != "JobNotFound":
            raise
    wait_until(
        lambda: error_code(lambda: client.job.get(job_id)) == "JobNotFound",
        DELETE_TIMEOUT_S,
        f"job {job_id} to be deleted",
        interval=0.2,
    )


def delete_pool_and_wait(client: BatchServiceClient, pool_id: str) -> None:
    try:
        client.pool.delete(pool_id)
    except bm.BatchErrorException as err:
        if err.error is None or err.error.code != "PoolNotFound":
            raise
    wait_until(
        lambda: error_code(lambda: client.pool.get(pool_id)) == "PoolNotFound",
        DELETE_TIMEOUT_S,
        f"pool {pool_id} to be deleted",
        interval=0.2,
    )

