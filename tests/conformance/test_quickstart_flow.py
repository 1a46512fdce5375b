"""The Azure Batch Python quickstart's workflow, end to end, through the official SDK.

Pool (the quickstart's VM configuration) -> job -> 250 tasks through `create_tasks` (which the
SDK splits into requests of 100) -> wait -> read outputs -> list with paging and $filter ->
task counts -> delete job and pool with the SDK's long-running-operation pollers.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.batch import models as m
from azure.core.exceptions import ResourceNotFoundError

from conftest import (
    create_pool_and_wait_idle,
    read_task_file,
    unique_id,
    wait_until,
)

TASK_COUNT = 250
# 250 short shell tasks on 2 nodes x 2 slots: a few seconds on a laptop, minutes on a slow CI box.
ALL_TASKS_TIMEOUT_S = 180.0
DELETE_TIMEOUT_S = 60.0


def task_id(i: int) -> str:
    return f"task{i:03d}"


def expected_sum(i: int) -> int:
    # Each task sums 1..(50 + i) in shell arithmetic: a little real work with a checkable answer.
    n = 50 + i
    return n * (n + 1) // 2


def command_line(i: int) -> str:
    # Azure Batch runs command lines without a shell, so the sh we start expands the variables.
    n = 50 + i
    return (
        "/bin/sh -c 'echo id=$AZ_BATCH_TASK_ID; "
        f"s=0; k=1; while [ $k -le {n} ]; do s=$((s + k)); k=$((k + 1)); done; "
        "echo sum=$s'"
    )


def test_quickstart_flow(client, server):
    endpoint = server.endpoint
    pool_id = unique_id("quickstart-pool")
    job_id = unique_id("quickstart-job")

    nodes = create_pool_and_wait_idle(client, pool_id, nodes=2, slots=2, vm_size="STANDARD_DS1_V2")
    assert len({n.id for n in nodes}) == 2
    pool = client.get_pool(pool_id)
    assert pool.virtual_machine_configuration.node_agent_sku_id == "batch.node.ubuntu 20.04"
    assert pool.virtual_machine_configuration.image_reference.offer == "0001-com-ubuntu-server-focal"
    assert pool.task_slots_per_node == 2
    assert pool.current_dedicated_nodes == 2

    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))

    # Count the addtaskcollection requests on the wire: the SDK must have split 250 into 100s.
    collection_requests = []

    def count_collections(request):
        http = request.http_request
        if http.method == "POST" and "/addtaskcollection" in http.url:
            collection_requests.append(http.url)

    tasks = [
        m.BatchTaskCreateOptions(id=task_id(i), command_line=command_line(i))
        for i in range(TASK_COUNT)
    ]
    result = client.create_tasks(job_id, tasks, raw_request_hook=count_collections)
    statuses = {r.task_id: r.status for r in result.result_values}
    assert len(statuses) == TASK_COUNT
    assert set(statuses.values()) == {m.BatchTaskAddStatus.SUCCESS}
    assert len(collection_requests) == 3, collection_requests

    def all_completed():
        counts = client.get_job_task_counts(job_id).task_counts
        return counts if counts.completed == TASK_COUNT else None

    wait_until(all_completed, ALL_TASKS_TIMEOUT_S, f"{TASK_COUNT} tasks to complete", interval=0.25)

    # Outputs of tasks from each of the three submission chunks.
    for i in (0, 1, 99, 100, 173, 249):
        task = client.get_task(job_id, task_id(i))
        assert task.state == m.BatchTaskState.COMPLETED
        assert task.execution_info.exit_code == 0
        assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
        assert task.execution_info.failure_info is None
        assert task.node_info.pool_id == pool_id
        assert task.node_info.node_id in {n.id for n in nodes}
        stdout = read_task_file(client, job_id, task_id(i), "stdout.txt").decode()
        assert stdout == f"id={task_id(i)}\nsum={expected_sum(i)}\n"
        assert read_task_file(client, job_id, task_id(i), "stderr.txt") == b""

    # Paging: 250 tasks at 100 per page is 100 + 100 + 50, every task exactly once.
    next_links = []

    def record_next_link(response):
        http = response.http_response
        if http.request.method == "GET":
            next_links.append(json.loads(http.text()).get("odata.nextLink"))

    pages = [
        list(page)
        for page in client.list_tasks(
            job_id, max_results=100, raw_response_hook=record_next_link
        ).by_page()
    ]
    assert [len(p) for p in pages] == [100, 100, 50]
    paged_ids = [t.id for p in pages for t in p]
    assert sorted(paged_ids) == [task_id(i) for i in range(TASK_COUNT)]
    # Older SDKs (14.x) follow nextLink verbatim and need it absolute, with the api-version.
    assert len(next_links) == 3 and next_links[2] is None, next_links
    for link in next_links[:2]:
        assert link.startswith(f"{endpoint}/jobs/{job_id}/tasks?"), link
        query = parse_qs(urlsplit(link).query)
        assert query["api-version"] == ["2025-06-01"], link

    small_pages = list(client.list_tasks(job_id, max_results=7).by_page())
    assert len(small_pages) == (TASK_COUNT + 6) // 7
    assert sorted(t.id for p in small_pages for t in p) == sorted(paged_ids)

    completed = list(client.list_tasks(job_id, filter="state eq 'completed'"))
    assert len(completed) == TASK_COUNT
    assert all(t.state == m.BatchTaskState.COMPLETED for t in completed)
    assert list(client.list_tasks(job_id, filter="state eq 'active'")) == []
    assert list(client.list_tasks(job_id, filter="state eq 'running'")) == []

    counts = client.get_job_task_counts(job_id)
    for c in (counts.task_counts, counts.task_slot_counts):
        assert (c.active, c.running, c.completed, c.succeeded, c.failed) == (
            0,
            0,
            TASK_COUNT,
            TASK_COUNT,
            0,
        )

    poller = client.begin_delete_job(job_id, polling_interval=0.2)
    poller.result(timeout=DELETE_TIMEOUT_S)
    assert poller.done(), f"job {job_id} still being deleted after {DELETE_TIMEOUT_S}s"
    with pytest.raises(ResourceNotFoundError) as job_gone:
        client.get_job(job_id)
    assert job_gone.value.error.code == "JobNotFound"

    poller = client.begin_delete_pool(pool_id, polling_interval=0.2)
    poller.result(timeout=DELETE_TIMEOUT_S)
    assert poller.done(), f"pool {pool_id} still being deleted after {DELETE_TIMEOUT_S}s"
    with pytest.raises(ResourceNotFoundError) as pool_gone:
        client.get_pool(pool_id)
    assert pool_gone.value.error.code == "PoolNotFound"
