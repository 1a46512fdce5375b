"""Errors and failures as the official SDK sees them: error codes and exception types, failing
tasks, constraints, retries, start tasks, resource files and task files."""

from __future__ import annotations

import base64
import datetime
import functools
import http.server
import json
import os
import threading
import time
from urllib.parse import unquote

import pytest
from azure.batch import models as m
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from conftest import (
    create_pool_and_wait_idle,
    make_client,
    read_task_file,
    unique_id,
    wait_task_completed,
    wait_until,
)

# Short local tasks complete in well under a second; the margin is for loaded CI machines.
TASK_TIMEOUT_S = 60.0
DELETE_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def pool_id(client):
    pool_id = unique_id("errors-pool")
    create_pool_and_wait_idle(client, pool_id, nodes=2, slots=2)
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)


@pytest.fixture(scope="module")
def job_id(client, pool_id):
    job_id = unique_id("errors-job")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    yield job_id
    client.begin_delete_job(job_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)


def run_task(client, job_id: str, command_line: str, **options):
    """Add one task, wait for it to complete, return it."""
    task_id = unique_id("t")
    client.create_task(job_id, m.BatchTaskCreateOptions(id=task_id, command_line=command_line, **options))
    return wait_task_completed(client, job_id, task_id, TASK_TIMEOUT_S)


# --- error codes and exception types ---------------------------------------------------------


@pytest.mark.parametrize(
    "call, code",
    [
        (lambda c: c.get_job("nope"), "JobNotFound"),
        (lambda c: c.get_pool("nope"), "PoolNotFound"),
        (lambda c: c.get_job_task_counts("nope"), "JobNotFound"),
    ],
    ids=["job", "pool", "taskcounts"],
)
def test_missing_resource_is_resource_not_found(client, call, code):
    with pytest.raises(ResourceNotFoundError) as err:
        call(client)
    assert err.value.status_code == 404
    assert err.value.error is not None, "the error body must be a Batch error ({code, message{lang,value}})"
    assert err.value.error.code == code
    assert err.value.error.message


def test_missing_task_is_task_not_found(client, job_id):
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_task(job_id, "nope")
    assert err.value.error.code == "TaskNotFound"


def test_duplicate_pool_is_pool_exists(client):
    pool_id = unique_id("dup-pool")
    options = m.BatchPoolCreateOptions(
        id=pool_id,
        vm_size="Standard_D2s_v3",
        target_dedicated_nodes=0,
        virtual_machine_configuration=m.VirtualMachineConfiguration(
            image_reference=m.BatchVmImageReference(
                publisher="canonical", offer="ubuntu", sku="22_04-lts", version="latest"
            ),
            node_agent_sku_id="batch.node.ubuntu 22.04",
        ),
    )
    client.create_pool(options)
    try:
        with pytest.raises(ResourceExistsError) as err:
            client.create_pool(options)
        assert err.value.status_code == 409
        assert err.value.error.code == "PoolExists"
    finally:
        client.begin_delete_pool(pool_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)


def test_duplicate_job_is_job_exists(client, pool_id):
    job_id = unique_id("dup-job")
    options = m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id))
    client.create_job(options)
    try:
        with pytest.raises(ResourceExistsError) as err:
            client.create_job(options)
        assert err.value.status_code == 409
        assert err.value.error.code == "JobExists"
    finally:
        client.begin_delete_job(job_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)


def test_duplicate_task_is_task_exists(client, job_id):
    task_id = unique_id("dup-task")
    options = m.BatchTaskCreateOptions(id=task_id, command_line="/bin/true")
    client.create_task(job_id, options)
    with pytest.raises(ResourceExistsError) as err:
        client.create_task(job_id, options)
    assert err.value.status_code == 409
    assert err.value.error.code == "TaskExists"

    # In a task collection the same conflict is a per-task clienterror, not a failed request.
    fresh_id = unique_id("fresh-task")
    result = client.create_task_collection(
        job_id,
        m.BatchTaskGroup(
            task_values=[options, m.BatchTaskCreateOptions(id=fresh_id, command_line="/bin/true")]
        ),
    )
    by_id = {r.task_id: r for r in result.result_values}
    assert by_id[fresh_id].status == m.BatchTaskAddStatus.SUCCESS
    assert by_id[task_id].status == m.BatchTaskAddStatus.CLIENT_ERROR
    assert by_id[task_id].error.code == "TaskExists"


def test_wrong_key_is_authentication_failed(server):
    wrong_key = base64.b64encode(os.urandom(32)).decode()
    bad_client = make_client(server.endpoint, server.account_name, wrong_key)
    with pytest.raises(HttpResponseError) as err:
        bad_client.get_job("whatever")
    assert err.value.status_code == 403
    assert err.value.error is not None
    assert err.value.error.code == "AuthenticationFailed"


# --- task failures ---------------------------------------------------------------------------


def test_nonzero_exit_is_failure_exit_code(client, job_id):
    task = run_task(client, job_id, "/bin/sh -c 'echo oops >&2; exit 3'")
    info = task.execution_info
    assert info.exit_code == 3
    assert info.result == m.BatchTaskExecutionResult.FAILURE
    assert info.failure_info is not None
    assert info.failure_info.code == "FailureExitCode"
    assert info.failure_info.category == m.BatchErrorSourceCategory.USER_ERROR
    assert info.retry_count == 0
    assert read_task_file(client, job_id, task.id, "stderr.txt") == b"oops\n"
    counts = client.get_job_task_counts(job_id).task_counts
    assert counts.failed >= 1


def test_max_wall_clock_time_ends_task(client, job_id):
    started = time.monotonic()
    task = run_task(
        client,
        job_id,
        "/bin/sh -c 'sleep 60'",
        constraints=m.BatchTaskConstraints(max_wall_clock_time=datetime.timedelta(seconds=2)),
    )
    took = time.monotonic() - started
    assert took < 15, f"a 2 s maxWallClockTime took {took:.1f}s to end the task"
    assert task.constraints.max_wall_clock_time == datetime.timedelta(seconds=2)
    info = task.execution_info
    assert info.result == m.BatchTaskExecutionResult.FAILURE
    assert info.failure_info is not None
    assert info.failure_info.code == "TaskEnded"
    ran_for = (info.end_time - info.start_time).total_seconds()
    assert 1.5 <= ran_for < 15, f"task ran {ran_for:.1f}s under a 2 s limit"


def test_failing_task_is_retried_max_task_retry_count_times(client, job_id):
    task = run_task(
        client,
        job_id,
        "/bin/sh -c 'exit 1'",
        constraints=m.BatchTaskConstraints(max_task_retry_count=2),
    )
    info = task.execution_info
    assert info.retry_count == 2
    assert info.last_retry_time is not None
    assert info.exit_code == 1
    assert info.result == m.BatchTaskExecutionResult.FAILURE
    assert info.failure_info.code == "FailureExitCode"


def test_failed_start_task_with_wait_for_success_is_starttaskfailed(client):
    pool_id = unique_id("starttask-pool")
    client.create_pool(
        m.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="Standard_D2s_v3",
            target_dedicated_nodes=1,
            virtual_machine_configuration=m.VirtualMachineConfiguration(
                image_reference=m.BatchVmImageReference(
                    publisher="canonical", offer="ubuntu", sku="22_04-lts", version="latest"
                ),
                node_agent_sku_id="batch.node.ubuntu 22.04",
            ),
            start_task=m.BatchStartTask(
                command_line="/bin/sh -c 'echo preparing node; exit 7'",
                wait_for_success=True,
            ),
        )
    )
    try:

        def start_task_failed():
            nodes = list(client.list_nodes(pool_id))
            return nodes if nodes and nodes[0].state == m.BatchNodeState.START_TASK_FAILED else None

        (node,) = wait_until(start_task_failed, TASK_TIMEOUT_S, "the node to be starttaskfailed")
        node = client.get_node(pool_id, node.id)
        info = node.start_task_info
        assert info is not None
        assert info.state == m.BatchStartTaskState.COMPLETED
        assert info.exit_code == 7
        assert info.result == m.BatchTaskExecutionResult.FAILURE
        assert info.failure_info is not None
        assert info.failure_info.code == "FailureExitCode"
        stdout = b"".join(client.download_node_file(pool_id, node.id, "startup/stdout.txt"))
        assert stdout == b"preparing node\n"
    finally:
        client.begin_delete_pool(pool_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)


# --- resource files --------------------------------------------------------------------------

PAYLOAD = b"resource file payload\nsecond line\n"
OK_SECRET = "OKSECRET0123"
MISSING_SECRET = "SECRET404xyz"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests_seen: list = []

    def do_GET(self):
        self.requests_seen.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def file_server(tmp_path_factory):
    """A tiny HTTP server on 127.0.0.1 standing in for blob storage with SAS URLs."""
    root = tmp_path_factory.mktemp("http-root")
    (root / "data.txt").write_bytes(PAYLOAD)
    handler = type("Handler", (_QuietHandler,), {"requests_seen": []})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests_seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_resource_file_is_downloaded_into_wd(client, job_id, file_server):
    base, seen = file_server
    task = run_task(
        client,
        job_id,
        "/bin/sh -c 'test -f \"$AZ_BATCH_TASK_WORKING_DIR/inputs/data.txt\" && cat inputs/data.txt'",
        resource_files=[m.ResourceFile(http_url=f"{base}/data.txt?sig={OK_SECRET}", file_path="inputs/data.txt")],
    )
    assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS, task.execution_info
    assert read_task_file(client, job_id, task.id, "stdout.txt") == PAYLOAD
    assert f"/data.txt?sig={OK_SECRET}" in seen
    assert read_task_file(client, job_id, task.id, "wd/inputs/data.txt") == PAYLOAD


def test_missing_resource_file_fails_task_without_leaking_sas(client, server, job_id, file_server):
    base, _ = file_server
    task = run_task(
        client,
        job_id,
        "/bin/sh -c 'echo should not run'",
        resource_files=[m.ResourceFile(http_url=f"{base}/missing.bin?sig={MISSING_SECRET}", file_path="missing.bin")],
    )
    info = task.execution_info
    assert info.result == m.BatchTaskExecutionResult.FAILURE
    assert info.failure_info is not None
    assert info.failure_info.category == m.BatchErrorSourceCategory.USER_ERROR
    assert info.failure_info.code
    assert info.exit_code is None, "the command must not run when its resource files fail"
    texts = [info.failure_info.message or ""] + [
        f"{d.name}={d.value}" for d in (info.failure_info.details or [])
    ]
    for text in texts:
        assert MISSING_SECRET not in text, f"SAS signature leaked into failureInfo: {text!r}"
    assert "missing.bin" in " ".join(texts), f"failureInfo should name the file: {texts}"
    logs = server.log_text()
    for secret in (MISSING_SECRET, OK_SECRET):
        assert secret not in logs, f"SAS signature {secret} leaked into the server or agent logs"


# --- task files ------------------------------------------------------------------------------


def test_task_files_properties_ranges_and_nested_paths(client, job_id):
    task = run_task(
        client,
        job_id,
        "/bin/sh -c 'mkdir -p out && printf \"nested file body\" > \"out/a b.txt\" && echo 0123456789abcdef'",
    )
    assert task.execution_info.result == m.BatchTaskExecutionResult.SUCCESS, task.execution_info
    stdout = b"0123456789abcdef\n"
    assert read_task_file(client, job_id, task.id, "stdout.txt") == stdout

    props = client.get_task_file_properties(job_id, task.id, "stdout.txt")
    assert int(props.content_length) == len(stdout)
    assert props.is_directory in (False, "false")
    assert unquote(props.url).endswith(f"/jobs/{job_id}/tasks/{task.id}/files/stdout.txt")
    assert isinstance(props.last_modified, datetime.datetime)

    assert read_task_file(client, job_id, task.id, "stdout.txt", ocp_range="bytes=0-4") == b"01234"
    assert read_task_file(client, job_id, task.id, "stdout.txt", ocp_range="bytes=10-15") == b"abcdef"

    nested = "wd/out/a b.txt"
    assert read_task_file(client, job_id, task.id, nested) == b"nested file body"
    nested_props = client.get_task_file_properties(job_id, task.id, nested)
    assert int(nested_props.content_length) == len(b"nested file body")

    listed = {f.name: f for f in client.list_task_files(job_id, task.id, recursive=True)}
    assert nested in listed, sorted(listed)
    assert not listed[nested].is_directory
    assert int(listed[nested].properties.content_length) == len(b"nested file body")
    assert listed["wd/out"].is_directory

    # download_task_file streams, so the SDK does not parse the error body (`error` is None):
    # read it ourselves.
    with pytest.raises(ResourceNotFoundError) as err:
        read_task_file(client, job_id, task.id, "wd/out/nope.txt")
    assert err.value.status_code == 404
    assert json.loads(err.value.response.read())["code"] == "FileNotFound"
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_task_file_properties(job_id, task.id, "wd/out/nope.txt")
    assert err.value.status_code == 404


def test_server_built_urls_do_not_encode_unreserved_characters(client, job_id):
    task = run_task(client, job_id, "/bin/true")
    props = client.get_task_file_properties(job_id, task.id, "stdout.txt")
    assert props.url.endswith("/files/stdout.txt"), props.url
