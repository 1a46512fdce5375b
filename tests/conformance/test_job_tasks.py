"""Job preparation, release and manager tasks through the official SDK (azure-batch 15.x),
against the real server and real node agents.

The behaviour encoded here is Azure Batch's, from "Run job preparation and job release tasks on
Batch compute nodes" and the SDK's own model docs: the preparation task runs on a node before
the job's first task there, the release task runs on each such node when the job ends (and the
job is not complete until they have), `list_job_preparation_and_release_task_status` lists one
entry per node, and a job without a preparation task answers 409
`JobPreparationTaskNotSpecified`.
"""

from __future__ import annotations

import pytest
from azure.batch import models as m
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core.exceptions import HttpResponseError

from conftest import create_pool_and_wait_idle, read_task_file, unique_id, wait_until

POLL = 0.2
JOB_TIMEOUT_S = 90.0


def sh(script: str) -> str:
    # Azure Batch runs command lines without a shell.
    return f"/bin/sh -c '{script}'"


@pytest.fixture(scope="module")
def pool_id(client):
    pool_id = unique_id("jobtasks-pool")
    create_pool_and_wait_idle(client, pool_id, nodes=2, slots=1)
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def wait_job_state(client, job_id: str, state) -> m.BatchJob:
    def reached():
        job = client.get_job(job_id)
        return job if job.state == state else None

    return wait_until(reached, JOB_TIMEOUT_S, f"job {job_id} to be {state}")


def test_preparation_and_release_on_each_node(client, pool_id):
    """Tasks read what the preparation task left in `AZ_BATCH_JOB_PREP_WORKING_DIR` on their
    node; after terminate, the release task ran on both nodes and the status list shows both."""
    job_id = unique_id("jobtasks")
    client.create_job(
        m.BatchJobCreateOptions(
            id=job_id,
            pool_info=m.BatchPoolInfo(pool_id=pool_id),
            job_preparation_task=m.BatchJobPreparationTask(
                command_line=sh('echo "$AZ_BATCH_NODE_ID" > "$AZ_BATCH_JOB_PREP_WORKING_DIR/marker"'),
                wait_for_success=True,
            ),
            job_release_task=m.BatchJobReleaseTask(
                id="cleanup",
                command_line=sh('rm "$AZ_BATCH_JOB_PREP_WORKING_DIR/marker" && echo cleaned'),
            ),
        )
    )
    job = client.get_job(job_id)
    assert job.job_preparation_task.command_line.startswith("/bin/sh")
    assert job.job_release_task.id == "cleanup"

    client.create_tasks(
        job_id,
        [
            m.BatchTaskCreateOptions(
                id=f"t{i}", command_line=sh('sleep 0.3; cat "$AZ_BATCH_JOB_PREP_WORKING_DIR/marker"')
            )
            for i in range(4)
        ],
    )

    def all_done():
        tasks = list(client.list_tasks(job_id))
        return tasks if all(t.state == m.BatchTaskState.COMPLETED for t in tasks) else None

    tasks = wait_until(all_done, JOB_TIMEOUT_S, "the tasks to complete")
    nodes = set()
    for t in tasks:
        assert t.execution_info.result == m.BatchTaskExecutionResult.SUCCESS, t.execution_info
        node = t.node_info.node_id
        assert read_task_file(client, job_id, t.id, "stdout.txt").decode().strip() == node
        nodes.add(node)
    assert len(nodes) == 2

    status = list(client.list_job_preparation_and_release_task_status(job_id))
    assert {s.node_id for s in status} == nodes
    for s in status:
        prep = s.job_preparation_task_execution_info
        assert prep.state == m.BatchJobPreparationTaskState.COMPLETED
        assert prep.result == m.BatchTaskExecutionResult.SUCCESS
        assert prep.exit_code == 0
        assert prep.task_root_directory.endswith("/jobpreparation")
        assert s.job_release_task_execution_info is None

    client.begin_terminate_job(
        job_id, BatchJobTerminateOptions(termination_reason="done"), polling_interval=POLL
    ).result()
    job = wait_job_state(client, job_id, m.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "done"
    status = list(client.list_job_preparation_and_release_task_status(job_id))
    assert len(status) == 2
    for s in status:
        release = s.job_release_task_execution_info
        assert release.state == m.BatchJobReleaseTaskState.COMPLETED
        assert release.result == m.BatchTaskExecutionResult.SUCCESS, release.failure_info
        assert release.task_root_directory.endswith("/cleanup")
        out = b"".join(
            client.download_node_file(pool_id, s.node_id, f"{release.task_root_directory}/stdout.txt")
        )
        assert out.decode().strip() == "cleaned"

    # `$filter` and `$select` on the list.
    picked = list(
        client.list_job_preparation_and_release_task_status(
            job_id, filter=f"nodeId eq '{sorted(nodes)[0]}'", select=["nodeId"]
        )
    )
    assert [s.node_id for s in picked] == [sorted(nodes)[0]]
    assert picked[0].job_preparation_task_execution_info is None


def test_job_manager_ends_its_job(client, pool_id):
    """The job manager task is a task of the job, started with it; with killJobOnCompletion
    its completion terminates the job (`JMComplete`)."""
    job_id = unique_id("jobtasks-jm")
    client.create_job(
        m.BatchJobCreateOptions(
            id=job_id,
            pool_info=m.BatchPoolInfo(pool_id=pool_id),
            job_manager_task=m.BatchJobManagerTask(
                id="manager", command_line=sh("sleep 0.3; echo managed"), kill_job_on_completion=True
            ),
        )
    )
    job = wait_job_state(client, job_id, m.BatchJobState.COMPLETED)
    assert job.execution_info.termination_reason == "JMComplete"
    manager = client.get_task(job_id, "manager")
    assert manager.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
    assert read_task_file(client, job_id, "manager", "stdout.txt").decode().strip() == "managed"


def test_job_task_errors(client, pool_id):
    """No status list without a preparation task; a release task needs a preparation task; a
    task may not take the release task's id."""
    plain = unique_id("jobtasks-plain")
    client.create_job(m.BatchJobCreateOptions(id=plain, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    with pytest.raises(HttpResponseError) as e:
        list(client.list_job_preparation_and_release_task_status(plain))
    assert e.value.status_code == 409
    assert e.value.error.code == "JobPreparationTaskNotSpecified"

    with pytest.raises(HttpResponseError) as e:
        client.create_job(
            m.BatchJobCreateOptions(
                id=unique_id("jobtasks-bad"),
                pool_info=m.BatchPoolInfo(pool_id=pool_id),
                job_release_task=m.BatchJobReleaseTask(command_line="/bin/true"),
            )
        )
    assert e.value.status_code == 400

    job_id = unique_id("jobtasks-ids")
    client.create_job(
        m.BatchJobCreateOptions(
            id=job_id,
            pool_info=m.BatchPoolInfo(pool_id=pool_id),
            job_preparation_task=m.BatchJobPreparationTask(command_line="/bin/true"),
            job_release_task=m.BatchJobReleaseTask(command_line="/bin/true"),
        )
    )
    with pytest.raises(HttpResponseError) as e:
        client.create_task(job_id, m.BatchTaskCreateOptions(id="jobrelease", command_line="/bin/true"))
    assert e.value.status_code == 409
    assert e.value.error.code == "TaskIdSameAsJobReleaseTask"
