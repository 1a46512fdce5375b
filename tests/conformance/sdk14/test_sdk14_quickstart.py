"""The quickstart workflow through azure-batch 14.x, unchanged from how its users write it.

1. pool.add -> compute_node.list until idle -> job.add -> task.add_collection (150 tasks in chunks
   of 100) -> task.list until completed -> paging with TaskListOptions(max_results) -> task.get ->
   file.get_from_task / list_from_task / get_properties_from_task -> job.delete, pool.delete.
2. Azure-Samples/batch-python-quickstart itself (written for the msrest SDK generation), with
   Azurite as its storage account: blobs uploaded with azure-storage-blob, read SAS URLs as
   `ResourceFile(http_url=...)`, stdout.txt streamed back.
"""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

import azure.batch.models as bm
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from conftest import (
    QUICKSTART_VM_CONFIG,
    SDK14_API_VERSION,
    create_pool_and_wait_idle,
    delete_job_and_wait,
    delete_pool_and_wait,
    read_task_file,
    unique_id,
    wait_until,
)

TASK_COUNT = 150
CHUNK = 100
ALL_TASKS_TIMEOUT_S = 120.0


def task_id(i: int) -> str:
    return f"task{i:03d}"


def command_line(i: int) -> str:
    # No shell runs Batch command lines: the sh started here expands $AZ_BATCH_TASK_ID.
    return f"/bin/sh -c 'echo id=$AZ_BATCH_TASK_ID; echo n={i * i}'"


def list_task_pages(client, job_id: str, max_results: int) -> list[list]:
    """task.list page by page, the msrest way (`Paged.advance_page`)."""
    paged = client.task.list(job_id, task_list_options=bm.TaskListOptions(max_results=max_results))
    pages = []
    while True:
        try:
            pages.append(list(paged.advance_page()))
        except StopIteration:
            return pages


def test_quickstart_flow_sdk14(client, server, wire):
    pool_id = unique_id("sdk14-pool")
    job_id = unique_id("sdk14-job")

    nodes = create_pool_and_wait_idle(client, pool_id, nodes=2, slots=2)
    assert len({n.id for n in nodes}) == 2
    pool = client.pool.get(pool_id)
    assert pool.state == bm.PoolState.active
    assert pool.allocation_state == bm.AllocationState.steady
    assert pool.current_dedicated_nodes == 2
    assert pool.task_slots_per_node == 2
    assert pool.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 20.04"
    assert pool.virtual_machine_configuration.image_reference.sku == "20_04-lts"
    assert isinstance(pool.creation_time, datetime.datetime)
    node = client.compute_node.get(pool_id, nodes[0].id)
    assert node.state == bm.ComputeNodeState.idle
    assert node.scheduling_state == bm.SchedulingState.enabled

    client.job.add(bm.JobAddParameter(id=job_id, pool_info=bm.PoolInformation(pool_id=pool_id)))
    job = client.job.get(job_id)
    assert job.state == bm.JobState.active
    assert job.pool_info.pool_id == pool_id

    # As users of 14.x write it: add_collection takes at most 100 tasks a request.
    tasks = [bm.TaskAddParameter(id=task_id(i), command_line=command_line(i)) for i in range(TASK_COUNT)]
    wire.clear()
    added = []
    for start in range(0, TASK_COUNT, CHUNK):
        result = client.task.add_collection(job_id, tasks[start : start + CHUNK])
        added += result.value
    assert len(wire.requests("POST", "/addtaskcollection")) == 2
    assert sorted(r.task_id for r in added) == [task_id(i) for i in range(TASK_COUNT)]
    assert {r.status for r in added} == {bm.TaskAddStatus.success}

    # The quickstart's wait: list every task until all are completed.
    def all_completed():
        listed = list(client.task.list(job_id))
        done = [t for t in listed if t.state == bm.TaskState.completed]
        return listed if len(done) == TASK_COUNT else None

    wait_until(all_completed, ALL_TASKS_TIMEOUT_S, f"{TASK_COUNT} tasks to complete", interval=0.25)

    # Paging: 14.x requests the nextLink verbatim, so every page must come back, each task once,
    # and the link must be absolute and keep 14.x's api-version.
    wire.clear()
    pages = list_task_pages(client, job_id, max_results=40)
    assert [len(p) for p in pages] == [40, 40, 40, 30]
    assert sorted(t.id for p in pages for t in p) == [task_id(i) for i in range(TASK_COUNT)]
    urls = wire.requests("GET", f"/jobs/{job_id}/tasks")
    assert len(urls) == 4, urls
    for url in urls:
        assert url.startswith(f"{server.endpoint}/jobs/{job_id}/tasks?"), url
        assert parse_qs(urlsplit(url).query)["api-version"] == [SDK14_API_VERSION], url
    seven = list_task_pages(client, job_id, max_results=7)
    assert len(seven) == (TASK_COUNT + 6) // 7
    assert sorted(t.id for p in seven for t in p) == [task_id(i) for i in range(TASK_COUNT)]
    # Plain iteration follows the links too.
    every = list(client.task.list(job_id, task_list_options=bm.TaskListOptions(max_results=25)))
    assert len(every) == TASK_COUNT

    completed = list(
        client.task.list(job_id, task_list_options=bm.TaskListOptions(filter="state eq 'completed'"))
    )
    assert len(completed) == TASK_COUNT
    assert list(client.task.list(job_id, task_list_options=bm.TaskListOptions(filter="state eq 'active'"))) == []

    counts = client.job.get_task_counts(job_id)
    c = counts.task_counts
    assert (c.active, c.running, c.completed, c.succeeded, c.failed) == (0, 0, TASK_COUNT, TASK_COUNT, 0)

    node_ids = {n.id for n in nodes}
    for i in (0, 99, 100, 149):
        task = client.task.get(job_id, task_id(i))
        assert task.state == bm.TaskState.completed
        info = task.execution_info
        assert info.exit_code == 0
        assert info.result == bm.TaskExecutionResult.success
        assert info.failure_info is None
        assert task.node_info.node_id in node_ids
        assert task.node_info.pool_id == pool_id
        stdout = read_task_file(client, job_id, task.id, "stdout.txt")
        assert stdout == f"id={task_id(i)}\nn={i * i}\n".encode()
        assert read_task_file(client, job_id, task.id, "stderr.txt") == b""

    # Ranges, properties (response headers only) and a recursive listing.
    assert read_task_file(client, job_id, task_id(1), "stdout.txt", ocp_range="bytes=0-1") == b"id"
    props = client.file.get_properties_from_task(job_id, task_id(1), "stdout.txt", raw=True)
    assert props.headers["Content-Length"] == len(f"id={task_id(1)}\nn=1\n")
    assert props.headers["ocp-batch-file-isdirectory"] is False
    assert isinstance(props.headers["Last-Modified"], datetime.datetime)
    assert isinstance(props.headers["ocp-creation-time"], datetime.datetime)
    files = {f.name: f for f in client.file.list_from_task(job_id, task_id(1), recursive=True)}
    assert {"stdout.txt", "stderr.txt", "wd"} <= set(files), sorted(files)
    assert files["wd"].is_directory
    assert not files["stdout.txt"].is_directory
    assert files["stdout.txt"].properties.content_length == len(f"id={task_id(1)}\nn=1\n")

    delete_job_and_wait(client, job_id)
    delete_pool_and_wait(client, pool_id)
    assert client.pool.exists(pool_id) is False


# --- Azure-Samples/batch-python-quickstart, against Azurite ---------------------------------

QUICKSTART_INPUTS = {
    "taskdata0.txt": b"Batch quickstart input number zero\n",
    "taskdata1.txt": b"one\ntwo\nthree\n",
    "taskdata2.txt": "\u00fcnicode \u2713\n".encode(),
}


def test_python_quickstart_with_azurite(client, azurite):
    """src/python_quickstart_client.py, with only the storage URL made path-style for Azurite."""
    pool_id = unique_id("PythonQuickstartPool")
    job_id = unique_id("PythonQuickstartJob")
    container = "input"

    blob_service_client = BlobServiceClient(azurite.account_url, credential=azurite.credential)
    try:
        blob_service_client.create_container(container)
    except ResourceExistsError:
        pass

    input_files = []
    for name, data in QUICKSTART_INPUTS.items():
        blob_service_client.get_blob_client(container, name).upload_blob(data, overwrite=True)
        sas_token = generate_blob_sas(
            azurite.account_name,
            container,
            name,
            account_key=azurite.account_key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2),
        )
        sas_url = azurite.blob_url(container, name, sas_token)
        input_files.append(bm.ResourceFile(http_url=sas_url, file_path=name))

    # create_pool: no waiting for the nodes.
    client.pool.add(
        bm.PoolAddParameter(
            id=pool_id,
            virtual_machine_configuration=QUICKSTART_VM_CONFIG,
            vm_size="STANDARD_DS1_V2",
            target_dedicated_nodes=2,
        )
    )
    try:
        # create_job
        client.job.add(bm.JobAddParameter(id=job_id, pool_info=bm.PoolInformation(pool_id=pool_id)))
        # add_tasks
        tasks = [
            bm.TaskAddParameter(
                id=f"Task{idx}",
                command_line=f'/bin/bash -c "cat {input_file.file_path}"',
                resource_files=[input_file],
            )
            for idx, input_file in enumerate(input_files)
        ]
        client.task.add_collection(job_id, tasks)

        # wait_for_tasks_to_complete
        def all_completed():
            tasks = client.task.list(job_id)
            incomplete = [t for t in tasks if t.state != bm.TaskState.completed]
            return not incomplete

        wait_until(all_completed, ALL_TASKS_TIMEOUT_S, "the quickstart's tasks to complete", 0.25)

        # print_task_output
        for idx, (name, data) in enumerate(QUICKSTART_INPUTS.items()):
            task = client.task.get(job_id, f"Task{idx}")
            assert task.execution_info.result == bm.TaskExecutionResult.success, task.execution_info
            assert task.node_info.node_id
            stream = client.file.get_from_task(job_id, task.id, "stdout.txt")
            assert b"".join(stream) == data, name
    finally:
        delete_job_and_wait(client, job_id)
        delete_pool_and_wait(client, pool_id)
        blob_service_client.delete_container(container)
