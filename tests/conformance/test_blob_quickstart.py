"""The Azure Batch Python quickstart with real blob storage: Azurite stands in for the storage
account, the official `azure-storage-blob` SDK uploads the inputs and signs read SAS URLs, and
tasks fetch them as `httpUrl` resource files.

Follows Azure-Samples/batch-python-quickstart (`src/python_quickstart_client.py`): container
`input`, one blob per task, `ResourceFile(http_url=<blob SAS URL>, file_path=<blob name>)`, a
command line that cats the file, then each task's stdout.txt is read back. The only edits are the
ones every Azurite user makes: a path-style URL (`http://127.0.0.1:PORT/devstoreaccount1/...`)
instead of `https://<account>.blob.core.windows.net/...`, and the 15.x SDK's model names.
"""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, quote

import pytest
from azure.batch import models as m
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from conftest import (
    QUICKSTART_VM_CONFIG,
    create_pool_and_wait_idle,
    read_task_file,
    unique_id,
    wait_task_completed,
    wait_until,
)

CONTAINER = "input"
ALL_TASKS_TIMEOUT_S = 120.0
TASK_TIMEOUT_S = 60.0
DELETE_TIMEOUT_S = 60.0

# The quickstart uploads taskdata0.txt..taskdata2.txt; five here, one of them large enough that
# both the resource-file download and the stdout.txt download take more than one read.
INPUTS = {
    "taskdata0.txt": b"Hello from the Batch quickstart\n",
    "taskdata1.txt": b"two\nlines\n",
    "taskdata2.txt": "unicode: \u00e9t\u00e9 \u2713 \u65e5\u672c\n".encode(),
    "taskdata3.txt": b"no trailing newline",
    "taskdata4.txt": b"".join(b"line %06d of a larger input file\n" % i for i in range(8000)),
}


def read_sas(azurite, container: str, blob: str, account_key: str | None = None) -> str:
    """A read-only blob SAS token, as the quickstart makes them (`generate_blob_sas`)."""
    return generate_blob_sas(
        azurite.account_name,
        container,
        blob,
        account_key=account_key or azurite.account_key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2),
    )


def signature_forms(sas: str) -> list[str]:
    """The `sig=` value of a SAS token, both as it appears in the URL and decoded."""
    (sig,) = parse_qs(sas)["sig"]
    return sorted({sig, quote(sig, safe=""), quote(sig)})


@pytest.fixture(scope="module")
def blob_service(azurite):
    service = BlobServiceClient(azurite.account_url, credential=azurite.credential)
    try:
        service.create_container(CONTAINER)
    except ResourceExistsError:
        pass
    for name, data in INPUTS.items():
        service.get_blob_client(CONTAINER, name).upload_blob(data, overwrite=True)
    return service


def test_quickstart_with_blob_resource_files(client, azurite, blob_service):
    pool_id = unique_id("blobqs-pool")
    job_id = unique_id("blobqs-job")

    # Uploaded as the quickstart does, and readable through a SAS URL without the account key.
    listed = {b.name: b.size for b in blob_service.get_container_client(CONTAINER).list_blobs()}
    assert listed == {name: len(data) for name, data in INPUTS.items()}

    sas_urls = {
        name: azurite.blob_url(CONTAINER, name, read_sas(azurite, CONTAINER, name)) for name in INPUTS
    }

    # Like the quickstart: create the pool and submit the work without waiting for the nodes.
    client.create_pool(
        m.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="STANDARD_DS1_V2",
            target_dedicated_nodes=2,
            virtual_machine_configuration=QUICKSTART_VM_CONFIG,
        )
    )
    try:
        client.create_job(
            m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id))
        )
        task_ids = {}
        tasks = []
        for i, name in enumerate(INPUTS):
            task_ids[name] = f"Task{i}"
            tasks.append(
                m.BatchTaskCreateOptions(
                    id=f"Task{i}",
                    command_line=f'/bin/sh -c "cat {name}"',
                    resource_files=[m.ResourceFile(http_url=sas_urls[name], file_path=name)],
                )
            )
        result = client.create_task_collection(job_id, m.BatchTaskGroup(task_values=tasks))
        assert {r.status for r in result.result_values} == {m.BatchTaskAddStatus.SUCCESS}

        # The quickstart's wait: list the tasks until every one is completed.
        def all_completed():
            listed = list(client.list_tasks(job_id))
            done = [t for t in listed if t.state == m.BatchTaskState.COMPLETED]
            return listed if len(done) == len(INPUTS) else None

        wait_until(all_completed, ALL_TASKS_TIMEOUT_S, f"{len(INPUTS)} tasks to complete", 0.25)

        for name, data in INPUTS.items():
            task = client.get_task(job_id, task_ids[name])
            info = task.execution_info
            assert info.result == m.BatchTaskExecutionResult.SUCCESS, (name, info)
            assert info.exit_code == 0
            assert info.failure_info is None
            assert task.node_info.node_id
            # The resource file as the task saw it, and what it printed.
            assert read_task_file(client, job_id, task.id, f"wd/{name}") == data, name
            assert read_task_file(client, job_id, task.id, "stdout.txt") == data, name
            assert read_task_file(client, job_id, task.id, "stderr.txt") == b""
            # The task as read back keeps the resource file exactly as submitted.
            (resource_file,) = task.resource_files
            assert resource_file.http_url == sas_urls[name]
            assert resource_file.file_path == name
    finally:
        # The quickstart's cleanup: delete the job and the pool (and, there, the container).
        try:
            client.begin_delete_job(job_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)
        except ResourceNotFoundError:
            pass
        client.begin_delete_pool(pool_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)


def test_bad_sas_url_fails_task_without_leaking_signature(client, server, azurite, blob_service):
    """A resource file whose SAS URL storage refuses fails the task as a user error, naming the
    file, and the SAS signature never shows up in failureInfo, in task files, or in any log."""
    pool_id = unique_id("blobsas-pool")
    job_id = unique_id("blobsas-job")
    create_pool_and_wait_idle(client, pool_id, nodes=1, slots=2)
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="

    good_sas = read_sas(azurite, CONTAINER, "taskdata0.txt")
    cases = {
        # 404 BlobNotFound: a properly signed URL for a blob that does not exist.
        "missing": ("nope.txt", read_sas(azurite, CONTAINER, "nope.txt")),
        # 403 AuthenticationFailed: an existing blob, signed with the wrong key.
        "forged": ("taskdata1.txt", read_sas(azurite, CONTAINER, "taskdata1.txt", wrong_key)),
    }
    try:
        client.create_job(
            m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id))
        )
        # A task with a working SAS URL next to the failing ones: its signature must not be
        # logged either.
        client.create_task(
            job_id,
            m.BatchTaskCreateOptions(
                id="good",
                command_line='/bin/sh -c "cat taskdata0.txt"',
                resource_files=[
                    m.ResourceFile(
                        http_url=azurite.blob_url(CONTAINER, "taskdata0.txt", good_sas),
                        file_path="taskdata0.txt",
                    )
                ],
            ),
        )
        for case, (blob, sas) in cases.items():
            client.create_task(
                job_id,
                m.BatchTaskCreateOptions(
                    id=case,
                    command_line="/bin/sh -c 'echo should not run'",
                    resource_files=[
                        m.ResourceFile(
                            http_url=azurite.blob_url(CONTAINER, blob, sas), file_path=f"in/{blob}"
                        )
                    ],
                ),
            )

        good = wait_task_completed(client, job_id, "good", TASK_TIMEOUT_S)
        assert good.execution_info.result == m.BatchTaskExecutionResult.SUCCESS, good.execution_info
        assert read_task_file(client, job_id, "good", "stdout.txt") == INPUTS["taskdata0.txt"]

        secrets = signature_forms(good_sas)
        for case, (blob, sas) in cases.items():
            secrets += signature_forms(sas)
            task = wait_task_completed(client, job_id, case, TASK_TIMEOUT_S)
            info = task.execution_info
            assert info.result == m.BatchTaskExecutionResult.FAILURE, (case, info)
            assert info.exit_code is None, f"{case}: the command must not run without its inputs"
            failure = info.failure_info
            assert failure is not None, case
            assert failure.category == m.BatchErrorSourceCategory.USER_ERROR, (case, failure)
            assert failure.code, (case, failure)
            texts = [failure.code, failure.message or ""] + [
                f"{d.name}={d.value}" for d in (failure.details or [])
            ]
            assert blob in " ".join(texts), f"{case}: failureInfo should name the file: {texts}"
            for text in texts:
                for secret in signature_forms(sas):
                    assert secret not in text, f"{case}: SAS signature leaked into failureInfo: {text!r}"
            # Whatever the task directory holds must not carry the signature either.
            for f in client.list_task_files(job_id, case, recursive=True):
                if not f.is_directory:
                    body = read_task_file(client, job_id, case, f.name).decode(errors="replace")
                    for secret in signature_forms(sas):
                        assert secret not in body, f"{case}: SAS signature leaked into {f.name}"

        logs = server.log_text()
        for secret in secrets:
            assert secret not in logs, "a SAS signature leaked into the server or agent logs"
    finally:
        try:
            client.begin_delete_job(job_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)
        except ResourceNotFoundError:
            pass
        client.begin_delete_pool(pool_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)
