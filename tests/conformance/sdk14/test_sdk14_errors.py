"""Errors as azure-batch 14.x sees them: every failure is a `BatchErrorException` whose `error`
is parsed from the body (`error.code`, `error.message.value`, `error.values[].key/value`), the
way the quickstart prints them. Also 14.x-only behaviour: `pool.exists` returning False,
the SDK's own splitting of add_collection, durations round-tripping through msrest."""

from __future__ import annotations

import base64
import datetime
import os

import azure.batch.models as bm
import pytest
from azure.batch.custom.custom_errors import CreateTasksErrorException

from conftest import (
    QUICKSTART_VM_CONFIG,
    create_pool_and_wait_idle,
    delete_job_and_wait,
    delete_pool_and_wait,
    make_client,
    read_task_file,
    unique_id,
    wait_task_completed,
)

TASK_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def pool_id(client):
    pool_id = unique_id("sdk14-errors-pool")
    create_pool_and_wait_idle(
        client,
        pool_id,
        nodes=1,
        slots=4,
        start_task=bm.StartTask(command_line="/bin/sh -c 'echo node ready'", wait_for_success=True),
    )
    yield pool_id
    delete_pool_and_wait(client, pool_id)


@pytest.fixture(scope="module")
def job_id(client, pool_id):
    job_id = unique_id("sdk14-errors-job")
    client.job.add(bm.JobAddParameter(id=job_id, pool_info=bm.PoolInformation(pool_id=pool_id)))
    yield job_id
    delete_job_and_wait(client, job_id)


def batch_error(call) -> bm.BatchErrorException:
    with pytest.raises(bm.BatchErrorException) as err:
        call()
    assert err.value.error is not None, "the body must be a Batch error {code, message{lang,value}}"
    return err.value


@pytest.mark.parametrize(
    "call, status, code, message",
    [
        (lambda c: c.job.get("nope"), 404, "JobNotFound", "The specified job does not exist."),
        (lambda c: c.pool.get("nope"), 404, "PoolNotFound", "The specified pool does not exist."),
        (lambda c: c.job.get_task_counts("nope"), 404, "JobNotFound", "The specified job does not exist."),
        (lambda c: c.task.list("nope").advance_page(), 404, "JobNotFound", "The specified job does not exist."),
    ],
    ids=["job", "pool", "taskcounts", "tasklist"],
)
def test_not_found_is_batch_error_exception(client, call, status, code, message):
    err = batch_error(lambda: call(client))
    assert err.response.status_code == status
    assert err.error.code == code
    # What the quickstart prints: error.message.value (and error.message.lang).
    assert err.error.message.value.startswith(message), err.error.message.value
    assert err.error.message.lang == "en-US"
    assert code in str(err)


def test_missing_task_and_file(client, job_id):
    err = batch_error(lambda: client.task.get(job_id, "nope"))
    assert err.error.code == "TaskNotFound"
    client.task.add(job_id, bm.TaskAddParameter(id="files", command_line="/bin/true"))
    wait_task_completed(client, job_id, "files", TASK_TIMEOUT_S)
    err = batch_error(lambda: read_task_file(client, job_id, "files", "wd/nope.txt"))
    assert err.response.status_code == 404
    assert err.error.code == "FileNotFound"


def test_duplicates_are_exists_errors(client, job_id, pool_id):
    err = batch_error(
        lambda: client.pool.add(
            bm.PoolAddParameter(
                id=pool_id,
                vm_size="STANDARD_DS1_V2",
                target_dedicated_nodes=0,
                virtual_machine_configuration=QUICKSTART_VM_CONFIG,
            )
        )
    )
    assert (err.response.status_code, err.error.code) == (409, "PoolExists")
    err = batch_error(
        lambda: client.job.add(bm.JobAddParameter(id=job_id, pool_info=bm.PoolInformation(pool_id=pool_id)))
    )
    assert (err.response.status_code, err.error.code) == (409, "JobExists")

    task = bm.TaskAddParameter(id=unique_id("dup"), command_line="/bin/true")
    client.task.add(job_id, task)
    err = batch_error(lambda: client.task.add(job_id, task))
    assert (err.response.status_code, err.error.code) == (409, "TaskExists")
    assert err.error.message.value.startswith("The specified task already exists.")

    # In a collection the conflict is a per-task clienterror. 14.x's add_collection treats
    # TaskExists as done (it may be its own retry) and hands the result back with the others.
    fresh = bm.TaskAddParameter(id=unique_id("fresh"), command_line="/bin/true")
    result = client.task.add_collection(job_id, [task, fresh])
    by_id = {r.task_id: r for r in result.value}
    assert by_id[fresh.id].status == bm.TaskAddStatus.success
    assert by_id[task.id].status == bm.TaskAddStatus.client_error
    assert by_id[task.id].error.code == "TaskExists"


def test_invalid_task_in_collection_raises_create_tasks_error(client, job_id):
    """A task the server refuses (an id with spaces) makes add_collection raise
    CreateTasksErrorException, whether the server refuses that one task or the whole request."""
    bad = bm.TaskAddParameter(id="bad id with spaces", command_line="/bin/true")
    good = bm.TaskAddParameter(id=unique_id("ok"), command_line="/bin/true")
    with pytest.raises(CreateTasksErrorException) as err:
        client.task.add_collection(job_id, [good, bad])
    failed_ids = [f.task_id for f in err.value.failure_tasks]
    request_errors = [e for e in err.value.errors if isinstance(e, bm.BatchErrorException)]
    assert failed_ids == [bad.id] or (
        not failed_ids and request_errors and request_errors[0].response.status_code == 400
    ), (failed_ids, err.value.errors)
    for failure in err.value.failure_tasks:
        assert failure.status == bm.TaskAddStatus.client_error
        assert failure.error.code
    assert batch_error(lambda: client.task.get(job_id, bad.id)).response.status_code in (400, 404)


def test_wrong_key_is_authentication_failed(server):
    wrong_key = base64.b64encode(os.urandom(32)).decode()
    bad_client = make_client(server.endpoint, server.account_name, wrong_key)
    err = batch_error(lambda: bad_client.job.get("whatever"))
    assert err.response.status_code == 403
    assert err.error.code == "AuthenticationFailed"
    assert err.error.message.value.startswith("Server failed to authenticate the request.")
    details = {v.key: v.value for v in err.error.values or []}
    assert "AuthenticationErrorDetail" in details, details


def test_pool_exists_is_a_boolean(client, pool_id):
    # 14.x maps HEAD 404 to False (15.1.0 raises instead: see the reference doc).
    assert client.pool.exists(pool_id) is True
    assert client.pool.exists(unique_id("no-such-pool")) is False


def test_sdk_splits_large_add_collection(client, job_id, wire):
    """Given more than 100 tasks, 14.x's add_collection sends several requests of at most 100."""
    tasks = [bm.TaskAddParameter(id=f"bulk{i:03d}", command_line="/bin/true") for i in range(120)]
    result = client.task.add_collection(job_id, tasks)
    assert sorted(r.task_id for r in result.value) == sorted(t.id for t in tasks)
    assert {r.status for r in result.value} == {bm.TaskAddStatus.success}
    assert len(wire.requests("POST", "/addtaskcollection")) == 2


def test_failed_task_and_constraints(client, job_id):
    task = bm.TaskAddParameter(
        id=unique_id("fails"),
        command_line="/bin/sh -c 'echo oops >&2; exit 3'",
        constraints=bm.TaskConstraints(
            max_wall_clock_time=datetime.timedelta(minutes=5),
            retention_time=datetime.timedelta(days=1),
            max_task_retry_count=1,
        ),
    )
    client.task.add(job_id, task)
    done = wait_task_completed(client, job_id, task.id, TASK_TIMEOUT_S)
    # msrest sends durations as PT5M / P1D and must read back what the server returns.
    assert done.constraints.max_wall_clock_time == datetime.timedelta(minutes=5)
    assert done.constraints.retention_time == datetime.timedelta(days=1)
    assert done.constraints.max_task_retry_count == 1
    info = done.execution_info
    assert info.exit_code == 3
    assert info.retry_count == 1
    assert info.result == bm.TaskExecutionResult.failure
    assert info.failure_info.category == bm.ErrorCategory.user_error
    assert info.failure_info.code == "FailureExitCode"
    assert read_task_file(client, job_id, task.id, "stderr.txt") == b"oops\n"


def test_start_task_output_on_node(client, pool_id):
    (node,) = list(client.compute_node.list(pool_id))
    node = client.compute_node.get(pool_id, node.id)
    info = node.start_task_info
    assert info.state == bm.StartTaskState.completed
    assert info.exit_code == 0
    assert info.result == bm.TaskExecutionResult.success
    stdout = b"".join(client.file.get_from_compute_node(pool_id, node.id, "startup/stdout.txt"))
    assert stdout == b"node ready\n"
    names = {f.name for f in client.file.list_from_compute_node(pool_id, node.id, recursive=True)}
    assert "startup/stdout.txt" in names, sorted(names)
