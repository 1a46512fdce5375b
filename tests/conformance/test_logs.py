"""Task logs that outlive the node, through the official SDK (azure-batch 15.x).

openbatch keeps each run's `stdout.txt` and `stderr.txt` in the account's auto-storage when the
run ends, so `download_task_file` and `get_task_file_properties` keep answering, with the same
bytes and headers, after the node that ran the task has left the pool (on Azure Batch the files
go with the node; keeping them is openbatch's addition, on the same operations).
"""

from __future__ import annotations

from azure.batch import models as m

from conftest import (
    create_pool_and_wait_idle,
    read_task_file,
    unique_id,
    wait_task_completed,
    wait_until,
)

TASK_TIMEOUT_S = 90.0
RESIZE_TIMEOUT_S = 60.0


def test_task_files_are_read_after_the_node_left_the_pool(client):
    pool_id = unique_id("logs-pool")
    job_id = unique_id("logs")
    create_pool_and_wait_idle(client, pool_id, nodes=1, slots=1)
    try:
        client.create_job(
            m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id))
        )
        client.create_task(
            job_id,
            m.BatchTaskCreateOptions(
                id="t", command_line='/bin/sh -c "echo kept stdout; echo kept stderr >&2"'
            ),
        )
        wait_task_completed(client, job_id, "t", TASK_TIMEOUT_S)
        on_node = client.get_task_file_properties(job_id, "t", "stdout.txt")

        client.begin_resize_pool(
            pool_id, m.BatchPoolResizeOptions(target_dedicated_nodes=0), polling_interval=0.2
        ).result()
        wait_until(
            lambda: not list(client.list_nodes(pool_id)),
            RESIZE_TIMEOUT_S,
            f"pool {pool_id} to have no nodes",
        )

        assert read_task_file(client, job_id, "t", "stdout.txt") == b"kept stdout\n"
        assert read_task_file(client, job_id, "t", "stderr.txt") == b"kept stderr\n"
        assert read_task_file(client, job_id, "t", "stdout.txt", ocp_range="bytes=5-10") == b"stdout"
        kept = client.get_task_file_properties(job_id, "t", "stdout.txt")
        assert kept.content_length == on_node.content_length == len(b"kept stdout\n")
        assert kept.is_directory is False
        assert kept.creation_time is not None
        names = sorted(f.name for f in client.list_task_files(job_id, "t"))
        assert names == ["stderr.txt", "stdout.txt"]
    finally:
        client.begin_delete_job(job_id, polling_interval=0.2).result()
        client.begin_delete_pool(pool_id, polling_interval=0.2).result()
