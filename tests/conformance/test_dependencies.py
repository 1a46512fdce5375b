"""Task dependencies, exit conditions and job completion rules through the official SDK
(azure-batch 15.x), against the real server and real node agents.

The Azure Batch behaviour each test encodes is named in its docstring: the "Create task
dependencies" article, and the REST reference of ExitConditions, ExitOptions and BatchJob.
"""

from __future__ import annotations

import datetime

import pytest
from azure.batch import models as m
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core.exceptions import HttpResponseError

from conftest import create_pool_and_wait_idle, unique_id, wait_until

POLL = 0.2
# Short shell tasks on local nodes: seconds on a laptop, more on a loaded CI machine.
JOB_TIMEOUT_S = 90.0


def sh(script: str) -> str:
    # Azure Batch runs command lines without a shell.
    return f"/bin/sh -c '{script}'"


@pytest.fixture(scope="module")
def pool_id(client):
    pool_id = unique_id("deps-pool")
    create_pool_and_wait_idle(client, pool_id, nodes=2, slots=2)
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def create_job(client, pool_id: str, **options) -> str:
    job_id = unique_id("deps")
    client.create_job(
        m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id), **options)
    )
    return job_id


def wait_job_completed(client, job_id: str) -> m.BatchJob:
    def completed():
        job = client.get_job(job_id)
        return job if job.state == m.BatchJobState.COMPLETED else None

    return wait_until(completed, JOB_TIMEOUT_S, f"job {job_id} to complete")


def wait_task_completed(client, job_id: str, task_id: str) -> m.BatchTask:
    def completed():
        task = client.get_task(job_id, task_id)
        return task if task.state == m.BatchTaskState.COMPLETED else None

    return wait_until(completed, JOB_TIMEOUT_S, f"task {job_id}/{task_id} to complete")


def test_diamond_dag_ranges_and_a_satisfying_failure_end_with_all_tasks_complete(client, pool_id):
    """A diamond (b and c after a, d after both), a range over numeric ids with a zero-padded
    one, and a failing task whose exit condition says `dependencyAction: satisfy`. Dependents
    are added before their parents and wait in `active`. Then, as Azure advises, the job is
    switched to `onAllTasksComplete: terminatejob` once every task is added, and it completes
    with `terminateReason` `AllTasksComplete`."""
    job_id = create_job(client, pool_id, uses_task_dependencies=True, all_tasks_complete_mode="noaction")
    after = lambda *ids: m.BatchTaskDependencies(task_ids=list(ids))  # noqa: E731
    satisfy_on_3 = m.ExitConditions(
        exit_codes=[m.ExitCodeMapping(code=3, exit_options=m.ExitOptions(dependency_action="satisfy"))]
    )
    client.create_tasks(
        job_id,
        [
            m.BatchTaskCreateOptions(id="d", command_line=sh("echo d"), depends_on=after("b", "c")),
            m.BatchTaskCreateOptions(id="b", command_line=sh("echo b"), depends_on=after("a")),
            m.BatchTaskCreateOptions(id="c", command_line=sh("echo c"), depends_on=after("A")),
            m.BatchTaskCreateOptions(id="a", command_line=sh("sleep 1; echo a")),
            m.BatchTaskCreateOptions(id="flaky", command_line=sh("exit 3"), exit_conditions=satisfy_on_3),
            m.BatchTaskCreateOptions(id="after-flaky", command_line=sh("echo ok"), depends_on=after("flaky")),
            m.BatchTaskCreateOptions(
                id="merge",
                command_line=sh("echo merged"),
                depends_on=m.BatchTaskDependencies(task_id_ranges=[m.BatchTaskIdRange(start=1, end=3)]),
            ),
            m.BatchTaskCreateOptions(id="1", command_line=sh("echo 1")),
            m.BatchTaskCreateOptions(id="2", command_line=sh("echo 2")),
            m.BatchTaskCreateOptions(id="003", command_line=sh("echo 3")),
        ],
    )
    waiting = client.get_task(job_id, "d")
    assert waiting.state == m.BatchTaskState.ACTIVE
    assert waiting.depends_on.task_ids == ["b", "c"]

    client.update_job(job_id, m.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    job = wait_job_completed(client, job_id)
    assert job.execution_info.termination_reason == "AllTasksComplete"
    assert job.all_tasks_complete_mode == "terminatejob"
    assert job.uses_task_dependencies is True

    tasks = {t.id: t for t in client.list_tasks(job_id)}
    assert all(t.state == m.BatchTaskState.COMPLETED for t in tasks.values())
    flaky = tasks["flaky"].execution_info
    assert flaky.exit_code == 3 and flaky.result == m.BatchTaskExecutionResult.FAILURE
    assert tasks["after-flaky"].execution_info.result == m.BatchTaskExecutionResult.SUCCESS
    assert tasks["flaky"].exit_conditions.exit_codes[0].exit_options.dependency_action == "satisfy"
    # Each dependent started only after every task it depends on had ended.
    edges = {
        "b": ["a"],
        "c": ["a"],
        "d": ["b", "c"],
        "after-flaky": ["flaky"],
        "merge": ["1", "2", "003"],
    }
    for child, parents in edges.items():
        for parent in parents:
            assert tasks[child].execution_info.start_time >= tasks[parent].execution_info.end_time, (
                f"{child} started before {parent} ended"
            )
    counts = client.get_job_task_counts(job_id).task_counts
    assert (counts.succeeded, counts.failed) == (9, 1)


def test_a_failed_dependency_blocks_its_dependent_in_active(client, pool_id):
    """By default a failure blocks ("dependent tasks continue to wait"), and "Batch does not yet
    support cancellation of dependent tasks": the dependent stays `active` while nodes are idle,
    until the job is terminated (with the caller's reason), and even after."""
    job_id = create_job(client, pool_id, uses_task_dependencies=True)
    client.create_tasks(
        job_id,
        [
            m.BatchTaskCreateOptions(id="fails", command_line=sh("exit 1")),
            m.BatchTaskCreateOptions(
                id="never", command_line=sh("echo never"), depends_on=m.BatchTaskDependencies(task_ids=["fails"])
            ),
        ],
    )
    wait_task_completed(client, job_id, "fails")
    # The server places work in the same step that records a completion: had `never` been
    # released, it would be running or done by now.
    never = client.get_task(job_id, "never")
    assert never.state == m.BatchTaskState.ACTIVE
    assert never.execution_info.start_time is None
    # azure-batch 15.1 cannot build this request without a non-empty options body, and does
    # not export the options' model (it lives in models._models).
    reason = BatchJobTerminateOptions(termination_reason="blocked for good")
    client.begin_terminate_job(job_id, reason, polling_interval=POLL).result()
    job = wait_job_completed(client, job_id)
    assert job.execution_info.termination_reason == "blocked for good"
    assert client.get_task(job_id, "never").state == m.BatchTaskState.ACTIVE


def test_dependencies_and_exit_conditions_are_validated(client, pool_id):
    """`TaskDependenciesNotSpecifiedOnJob` on a job without `usesTaskDependencies`; a range
    that ends before it starts and a task that depends on itself are invalid property values,
    one result per task in a collection; a `jobAction` on a job whose `onTaskFailure` is
    `noaction` is an invalid property value."""
    plain = create_job(client, pool_id)
    with pytest.raises(HttpResponseError) as e:
        client.create_task(
            plain,
            m.BatchTaskCreateOptions(
                id="t", command_line="/bin/true", depends_on=m.BatchTaskDependencies(task_ids=["x"])
            ),
        )
    assert e.value.status_code == 400
    assert e.value.error.code == "TaskDependenciesNotSpecifiedOnJob"

    with pytest.raises(HttpResponseError) as e:
        client.create_task(
            plain,
            m.BatchTaskCreateOptions(
                id="t",
                command_line="/bin/true",
                exit_conditions=m.ExitConditions(default=m.ExitOptions(job_action="terminate")),
            ),
        )
    assert e.value.status_code == 400
    assert e.value.error.code == "InvalidPropertyValue"

    job_id = create_job(client, pool_id, uses_task_dependencies=True)
    result = client.create_task_collection(
        job_id,
        m.BatchTaskGroup(
            task_values=[
                m.BatchTaskCreateOptions(
                    id="backwards",
                    command_line="/bin/true",
                    depends_on=m.BatchTaskDependencies(task_id_ranges=[m.BatchTaskIdRange(start=5, end=4)]),
                ),
                m.BatchTaskCreateOptions(
                    id="self", command_line="/bin/true", depends_on=m.BatchTaskDependencies(task_ids=["self"])
                ),
                m.BatchTaskCreateOptions(id="fine", command_line="/bin/true"),
            ]
        ),
    )
    by_id = {r.task_id: r for r in result.result_values}
    assert by_id["backwards"].status == "clienterror"
    assert by_id["backwards"].error.code == "InvalidPropertyValue"
    assert by_id["self"].error.code == "InvalidPropertyValue"
    assert by_id["fine"].status == "success"
    for j in (plain, job_id):
        client.begin_delete_job(j, polling_interval=POLL).result()


def test_an_exit_condition_job_action_terminates_the_job(client, pool_id):
    """With `onTaskFailure: performexitoptionsjobaction`, exit code 3 mapped to `jobAction:
    terminate` ends the job with `terminateReason` `TaskFailed`, and the task still running is
    killed."""
    job_id = create_job(client, pool_id, task_failure_mode="performexitoptionsjobaction")
    client.create_tasks(
        job_id,
        [
            m.BatchTaskCreateOptions(id="long", command_line=sh("sleep 60")),
            m.BatchTaskCreateOptions(
                id="fails",
                command_line=sh("sleep 1; exit 3"),
                exit_conditions=m.ExitConditions(
                    exit_codes=[m.ExitCodeMapping(code=3, exit_options=m.ExitOptions(job_action="terminate"))]
                ),
            ),
        ],
    )
    job = wait_job_completed(client, job_id)
    assert job.task_failure_mode == "performexitoptionsjobaction"
    assert job.execution_info.termination_reason == "TaskFailed"
    long = client.get_task(job_id, "long")
    assert long.state == m.BatchTaskState.COMPLETED
    assert long.execution_info.failure_info.code == "TaskEnded"


def test_job_max_wall_clock_time_terminates_the_job(client, pool_id):
    """`constraints.maxWallClockTime`: a job that outlives it is terminated with
    `MaxWallClockTimeExpiry`, and its running task is killed."""
    job_id = create_job(
        client, pool_id, constraints=m.BatchJobConstraints(max_wall_clock_time=datetime.timedelta(seconds=3))
    )
    client.create_task(job_id, m.BatchTaskCreateOptions(id="long", command_line=sh("sleep 60")))
    job = wait_job_completed(client, job_id)
    assert job.execution_info.termination_reason == "MaxWallClockTimeExpiry"
    assert job.constraints.max_wall_clock_time == datetime.timedelta(seconds=3)
    took = (job.execution_info.end_time - job.creation_time).total_seconds()
    assert 3 <= took < 30, f"a 3 s job limit ended the job after {took:.1f}s"
    task = client.get_task(job_id, "long")
    assert task.state == m.BatchTaskState.COMPLETED
    assert task.execution_info.failure_info.code == "TaskEnded"
