"""Multi-instance (MPI-style) tasks through the official SDK (azure-batch 15.x), against the
real server and three real node agents.

The behaviour encoded here is Azure Batch's, from "Use multi-instance tasks to run Message
Passing Interface (MPI) applications in Batch" and the SDK's model docs: every instance runs
the coordination command, the primary runs the task's command line once all have completed
and its result is the task's, the environment names the instances' hosts (`AZ_BATCH_HOST_LIST`) and the master
(`AZ_BATCH_MASTER_NODE`, `AZ_BATCH_IS_CURRENT_NODE_MASTER`), and `list_subtasks` lists the
subtasks (not the primary), one per other node.
"""

from __future__ import annotations

import pytest
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError

from conftest import create_pool_and_wait_idle, read_task_file, unique_id, wait_task_completed

POLL = 0.2
TASK_TIMEOUT_S = 90.0


def sh(script: str) -> str:
    # Azure Batch runs command lines without a shell.
    return f"/bin/sh -c '{script}'"


@pytest.fixture(scope="module")
def pool_id(client):
    pool_id = unique_id("mpi-pool")
    create_pool_and_wait_idle(client, pool_id, nodes=3, slots=1)
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def test_multi_instance_task_runs_on_three_nodes(client, pool_id, tmp_path):
    """A subtask's coordination command starts a daemon (like an MPI daemon) and returns; the
    primary's command line runs only once all three have, so the three markers are there
    already, and the task completes with its exit code. Then `list_subtasks` shows subtasks 1
    and 2 on the other nodes."""
    job_id = unique_id("mpi")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    markers = str(tmp_path)
    coordination = sh(
        'if [ "$AZ_BATCH_IS_CURRENT_NODE_MASTER" != true ]; then sleep 600 & sleep 1; fi; '
        'echo "$AZ_BATCH_HOST_LIST" > "$MARKERS/$AZ_BATCH_NODE_ID"'
    )
    command = sh(
        'echo "markers=$(ls "$MARKERS" | wc -l) master=$AZ_BATCH_MASTER_NODE hosts=$AZ_BATCH_HOST_LIST"; '
        '[ "$(ls "$MARKERS" | wc -l)" -eq 3 ]'
    )
    client.create_task(
        job_id,
        m.BatchTaskCreateOptions(
            id="mpi",
            command_line=command,
            environment_settings=[m.EnvironmentSetting(name="MARKERS", value=markers)],
            multi_instance_settings=m.MultiInstanceSettings(
                number_of_instances=3, coordination_command_line=coordination
            ),
        ),
    )
    task = wait_task_completed(client, job_id, "mpi", TASK_TIMEOUT_S)
    assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS
    assert task.execution_info.exit_code == 0
    assert task.multi_instance_settings.number_of_instances == 3
    stdout = read_task_file(client, job_id, "mpi", "stdout.txt").decode()
    assert "markers=3" in stdout, stdout
    hosts = stdout.split("hosts=")[1].strip().split(",")
    assert len(hosts) == 3, stdout

    subtasks = list(client.list_subtasks(job_id, "mpi"))
    assert [s.id for s in subtasks] == [1, 2]
    nodes = {n.id for n in client.list_nodes(pool_id)}
    sub_nodes = {s.node_info.node_id for s in subtasks}
    assert len(sub_nodes) == 2
    assert sub_nodes | {task.node_info.node_id} == nodes
    assert all(s.state == m.BatchSubtaskState.COMPLETED for s in subtasks)
    assert all(s.node_info.pool_id == pool_id for s in subtasks)


def test_bad_multi_instance_settings_are_refused(client, pool_id):
    """`numberOfInstances` below 1 is an invalid property value."""
    job_id = unique_id("mpi-bad")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    with pytest.raises(HttpResponseError) as err:
        client.create_task(
            job_id,
            m.BatchTaskCreateOptions(
                id="bad",
                command_line="/bin/true",
                multi_instance_settings=m.MultiInstanceSettings(
                    number_of_instances=0, coordination_command_line="/bin/true"
                ),
            ),
        )
    assert err.value.status_code == 400
