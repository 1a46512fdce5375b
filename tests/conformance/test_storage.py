"""Resource files of every form and output files, through the official SDKs.

Two storage setups, each with a real server and real local nodes:

* Azure Blob (Azurite): a server whose auto-storage is Azurite (`OPENBATCH_STORAGE_*`). Inputs
  are uploaded with `azure-storage-blob`, and tasks stage them through `http_url`,
  `storage_container_url` + `blob_prefix` and `auto_storage_container_name`. Outputs go to a
  container SAS URL on each upload condition; a SAS without write permission gives a
  `failureInfo`; SAS signatures never show up in a log or an error.
* The local directory (the default auto-storage, `DATA_DIR/storage`), which the server serves
  to nodes over HTTP with signed, expiring URLs: the same staging, and outputs uploaded to a
  signed container URL of the server's own blob endpoint, read back with `azure-storage-blob`.
"""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, quote

import pytest
from azure.batch import models as m
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from conftest import (
    create_pool_and_wait_idle,
    make_client,
    read_task_file,
    running_server,
    unique_id,
    wait_task_completed,
    wait_until,
)

TASK_TIMEOUT_S = 90.0
DELETE_TIMEOUT_S = 60.0

INPUTS = {
    "data/a.txt": b"alpha\n",
    "data/sub/b.txt": b"beta\n",
    "database.txt": b"not under data/\n",
    "other/c.txt": b"gamma\n",
    "single.txt": b"single file\n",
}

# Writes out/r1.txt, out/deep/r2.txt and a log line, then exits with $CODE.
MAKES_OUTPUTS = (
    '/bin/sh -c "echo to-stdout; echo to-stderr >&2; mkdir -p out/deep; '
    'echo r1 > out/r1.txt; echo r2 > out/deep/r2.txt; exit $CODE"'
)


def in_an_hour() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)


def signature_forms(url_or_sas: str) -> list[str]:
    """The `sig=` value of a SAS, as it appears in a URL and decoded."""
    query = url_or_sas.split("?", 1)[-1]
    (sig,) = parse_qs(query)["sig"]
    return sorted({sig, quote(sig, safe=""), quote(sig)})


def output(pattern, container_url, path, condition, headers=None) -> m.OutputFile:
    return m.OutputFile(
        file_pattern=pattern,
        destination=m.OutputFileDestination(
            container=m.OutputFileBlobContainerDestination(
                container_url=container_url,
                path=path,
                upload_headers=[m.OutputFileUploadHeader(name=k, value=v) for k, v in (headers or {}).items()],
            )
        ),
        upload_options=m.OutputFileUploadConfiguration(upload_condition=condition),
    )


def run_tasks(client, pool_id, tasks):
    """Create a job with `tasks`, wait for all of them, return (job id, {id: task})."""
    job_id = unique_id("storage-job")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    result = client.create_task_collection(job_id, m.BatchTaskGroup(task_values=tasks))
    assert {r.status for r in result.result_values} == {m.BatchTaskAddStatus.SUCCESS}, [
        (r.task_id, r.error) for r in result.result_values
    ]
    done = {t.id: wait_task_completed(client, job_id, t.id, TASK_TIMEOUT_S) for t in tasks}
    return job_id, done


def assert_succeeded(task):
    info = task.execution_info
    assert info.result == m.BatchTaskExecutionResult.SUCCESS, (task.id, info.failure_info)


def staging_tasks(http_url: str, container_url: str) -> list:
    """The three forms of resource file, each task printing what it got."""
    return [
        m.BatchTaskCreateOptions(
            id="http",
            command_line='/bin/sh -c "cat single.txt"',
            resource_files=[m.ResourceFile(http_url=http_url, file_path="single.txt")],
        ),
        m.BatchTaskCreateOptions(
            id="container",
            command_line='/bin/sh -c "cat in/data/a.txt in/data/sub/b.txt; ls -R in"',
            resource_files=[
                m.ResourceFile(storage_container_url=container_url, blob_prefix="data/", file_path="in")
            ],
        ),
        m.BatchTaskCreateOptions(
            id="auto",
            command_line='/bin/sh -c "cat data/a.txt data/sub/b.txt; ls -R ."',
            resource_files=[
                m.ResourceFile(auto_storage_container_name="inputs", blob_prefix="data/", file_mode="0600")
            ],
        ),
    ]


def check_staging(client, job_id, done):
    for tid in ("http", "container", "auto"):
        assert_succeeded(done[tid])
    assert read_task_file(client, job_id, "http", "stdout.txt") == INPUTS["single.txt"]
    for tid, root in (("container", "in"), ("auto", ".")):
        out = read_task_file(client, job_id, tid, "stdout.txt").decode()
        assert out.startswith("alpha\nbeta\n"), (tid, out)
        # Only blobs under data/ (not database.txt or other/), with their directories kept.
        assert "database.txt" not in out and "c.txt" not in out, (tid, out)
    assert read_task_file(client, job_id, "auto", "wd/data/sub/b.txt") == INPUTS["data/sub/b.txt"]
    # The task as read back keeps the resource files as submitted (the container name, not a URL).
    (auto_file,) = client.get_task(job_id, "auto").resource_files
    assert auto_file.auto_storage_container_name == "inputs"
    assert auto_file.storage_container_url is None


def delete_job_and_pool(client, job_id, pool_id):
    if job_id:
        try:
            client.begin_delete_job(job_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)
        except ResourceNotFoundError:
            pass
    client.begin_delete_pool(pool_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)


# --- Azure Blob (Azurite) as auto-storage ------------------------------------------------------


@pytest.fixture(scope="module")
def azure_server(tmp_path_factory, azurite):
    env = {
        "OPENBATCH_STORAGE_BACKEND": "azure",
        "OPENBATCH_STORAGE_ACCOUNT": azurite.account_name,
        "OPENBATCH_STORAGE_KEY": azurite.account_key,
        "OPENBATCH_STORAGE_ENDPOINT": azurite.account_url,
    }
    with running_server(tmp_path_factory, env=env, name="azure-storage") as server:
        yield server


@pytest.fixture(scope="module")
def azure_client(azure_server):
    return make_client(azure_server.endpoint, azure_server.account_name, azure_server.account_key)


@pytest.fixture(scope="module")
def blob_service(azurite):
    service = BlobServiceClient(azurite.account_url, credential=azurite.credential)
    for container in ("inputs", "outputs"):
        try:
            service.create_container(container)
        except ResourceExistsError:
            pass
    for name, data in INPUTS.items():
        service.get_blob_client("inputs", name).upload_blob(data, overwrite=True)
    return service


def container_sas_url(azurite, container: str, **perms) -> str:
    sas = generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(**perms),
        expiry=in_an_hour(),
    )
    return f"{azurite.account_url}/{container}?{sas}"


def test_azurite_staging_and_outputs(azure_client, azure_server, azurite, blob_service):
    client = azure_client
    pool_id = unique_id("azst-pool")
    http_sas = generate_blob_sas(
        azurite.account_name,
        "inputs",
        "single.txt",
        account_key=azurite.account_key,
        permission=BlobSasPermissions(read=True),
        expiry=in_an_hour(),
    )
    http_url = azurite.blob_url("inputs", "single.txt", http_sas)
    inputs_url = container_sas_url(azurite, "inputs", read=True, list=True)
    outputs_url = container_sas_url(azurite, "outputs", read=True, write=True, create=True, list=True)
    read_only_url = container_sas_url(azurite, "outputs", read=True, list=True)
    prefix = unique_id("run")

    outputs_ok = [
        output("out/**/*.txt", outputs_url, f"{prefix}/ok", m.OutputFileUploadCondition.TASK_SUCCESS,
               {"Content-Type": "text/plain"}),
        output("../std*.txt", outputs_url, f"{prefix}/ok/logs", m.OutputFileUploadCondition.TASK_COMPLETION),
        output("out/r1.txt", outputs_url, f"{prefix}/ok-on-failure.txt", m.OutputFileUploadCondition.TASK_FAILURE),
    ]
    outputs_fail = [
        output("out/*.txt", outputs_url, f"{prefix}/fail", m.OutputFileUploadCondition.TASK_FAILURE),
        output("out/r1.txt", outputs_url, f"{prefix}/fail-on-success.txt", m.OutputFileUploadCondition.TASK_SUCCESS),
        output("../stdout.txt", outputs_url, f"{prefix}/fail-stdout.txt", m.OutputFileUploadCondition.TASK_COMPLETION),
    ]
    tasks = staging_tasks(http_url, inputs_url) + [
        m.BatchTaskCreateOptions(
            id="out-ok", command_line=MAKES_OUTPUTS, output_files=outputs_ok,
            environment_settings=[m.EnvironmentSetting(name="CODE", value="0")],
        ),
        m.BatchTaskCreateOptions(
            id="out-fail", command_line=MAKES_OUTPUTS, output_files=outputs_fail,
            environment_settings=[m.EnvironmentSetting(name="CODE", value="1")],
        ),
        m.BatchTaskCreateOptions(
            id="out-denied", command_line=MAKES_OUTPUTS,
            output_files=[output("out/r1.txt", read_only_url, f"{prefix}/denied.txt",
                                 m.OutputFileUploadCondition.TASK_COMPLETION)],
            environment_settings=[m.EnvironmentSetting(name="CODE", value="0")],
        ),
    ]
    create_pool_and_wait_idle(client, pool_id, nodes=1, slots=4)
    job_id = None
    try:
        job_id, done = run_tasks(client, pool_id, tasks)
        check_staging(client, job_id, done)

        assert_succeeded(done["out-ok"])
        assert done["out-fail"].execution_info.exit_code == 1
        assert done["out-fail"].execution_info.failure_info.code == "FailureExitCode"

        outputs = blob_service.get_container_client("outputs")
        uploaded = {b.name: b for b in outputs.list_blobs(name_starts_with=f"{prefix}/")}
        assert sorted(uploaded) == sorted(
            f"{prefix}/{n}"
            for n in (
                "ok/r1.txt", "ok/deep/r2.txt", "ok/logs/stdout.txt", "ok/logs/stderr.txt",
                "fail/r1.txt", "fail-stdout.txt",
            )
        ), sorted(uploaded)
        read = lambda name: outputs.get_blob_client(f"{prefix}/{name}").download_blob().readall()
        assert read("ok/deep/r2.txt") == b"r2\n"
        assert read("ok/logs/stdout.txt") == b"to-stdout\n"
        assert read("ok/logs/stderr.txt") == b"to-stderr\n"
        assert read("fail/r1.txt") == b"r1\n"
        assert uploaded[f"{prefix}/ok/r1.txt"].content_settings.content_type == "text/plain"

        # A SAS without write permission: the task fails with a user error, the process having
        # succeeded, and the node says which file and where, without the signature.
        denied = done["out-denied"].execution_info
        assert denied.exit_code == 0
        assert denied.result == m.BatchTaskExecutionResult.FAILURE
        assert denied.failure_info.category == m.BatchErrorSourceCategory.USER_ERROR
        assert denied.failure_info.code == "FileUploadMiscError"
        assert "out/r1.txt" in denied.failure_info.message
        assert "denied.txt" in denied.failure_info.message
        assert "AuthorizationPermissionMismatch" in denied.failure_info.message

        # No signature leaks: not in failures, task files, or any server or agent log.
        secrets = []
        for url in (http_url, inputs_url, outputs_url, read_only_url):
            secrets += signature_forms(url)
        texts = [azure_server.log_text(), str(denied.failure_info)]
        for tid in done:
            texts.append(str(client.get_task(job_id, tid).execution_info.failure_info))
        texts.append(read_task_file(client, job_id, "out-denied", "fileuploaderr.txt").decode())
        texts.append(read_task_file(client, job_id, "out-ok", "fileuploadout.txt").decode())
        for text in texts:
            for secret in secrets:
                assert secret not in text
    finally:
        delete_job_and_pool(client, job_id, pool_id)


def test_a_missing_auto_storage_container_name_is_a_client_error(azure_client):
    """Azure's validation: each resource file names exactly one source."""
    job_id = unique_id("storage-bad")
    pool_id = unique_id("nopool")
    azure_client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    try:
        result = azure_client.create_task_collection(
            job_id,
            m.BatchTaskGroup(
                task_values=[
                    m.BatchTaskCreateOptions(
                        id="two", command_line="true",
                        resource_files=[m.ResourceFile(http_url="http://h/x", auto_storage_container_name="c")],
                    ),
                    m.BatchTaskCreateOptions(
                        id="prefix", command_line="true",
                        resource_files=[m.ResourceFile(http_url="http://h/x", blob_prefix="p")],
                    ),
                ]
            ),
        )
        errors = {r.task_id: (r.status, r.error.code) for r in result.result_values}
        assert errors == {
            "two": (m.BatchTaskAddStatus.CLIENT_ERROR, "InvalidPropertyValue"),
            "prefix": (m.BatchTaskAddStatus.CLIENT_ERROR, "InvalidPropertyValue"),
        }
    finally:
        azure_client.begin_delete_job(job_id, polling_interval=0.2).result(timeout=DELETE_TIMEOUT_S)


# --- The local directory (default auto-storage), served by the server ----------------------------


def signed_container_url(client, container: str, permissions: str) -> str:
    """`POST /openbatch/storagesas`, signed with Shared Key by the Batch client's own pipeline."""
    response = client.send_request(
        HttpRequest(
            "POST",
            "/openbatch/storagesas?api-version=2025-06-01",
            json={"container": container, "permissions": permissions},
        )
    )
    assert response.status_code == 200, response.text()
    return response.json()["containerUrl"]


def test_local_directory_staging_and_outputs(client, server):
    # The local backend is a directory: inputs can simply be put there.
    root = server.data_dir / "storage" / "inputs"
    for name, data in INPUTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    inputs_url = signed_container_url(client, "inputs", "rl")
    assert inputs_url.startswith(f"{server.endpoint}/openbatch/storage/inputs?")
    outputs_url = signed_container_url(client, "outputs", "rcwl")
    read_only_url = signed_container_url(client, "outputs", "rl")
    # The Azure Storage SDK reads the server's endpoint like a container (List Blobs, Get Blob).
    listed = sorted(b.name for b in ContainerClient.from_container_url(inputs_url).list_blobs())
    assert listed == sorted(INPUTS)
    single = ContainerClient.from_container_url(inputs_url).get_blob_client("single.txt")
    http_url = single.url

    prefix = unique_id("run")
    tasks = staging_tasks(http_url, inputs_url) + [
        m.BatchTaskCreateOptions(
            id="out-ok", command_line=MAKES_OUTPUTS,
            output_files=[
                output("out/**/*.txt", outputs_url, f"{prefix}/ok", m.OutputFileUploadCondition.TASK_SUCCESS),
                output("../std*.txt", outputs_url, f"{prefix}/logs", m.OutputFileUploadCondition.TASK_COMPLETION),
            ],
            environment_settings=[m.EnvironmentSetting(name="CODE", value="0")],
        ),
        m.BatchTaskCreateOptions(
            id="out-denied", command_line=MAKES_OUTPUTS,
            output_files=[output("out/r1.txt", read_only_url, None, m.OutputFileUploadCondition.TASK_SUCCESS)],
            environment_settings=[m.EnvironmentSetting(name="CODE", value="0")],
        ),
    ]
    pool_id = unique_id("localst-pool")
    create_pool_and_wait_idle(client, pool_id, nodes=1, slots=4)
    job_id = None
    try:
        job_id, done = run_tasks(client, pool_id, tasks)
        check_staging(client, job_id, done)
        assert_succeeded(done["out-ok"])
        outputs = ContainerClient.from_container_url(outputs_url)
        names = sorted(b.name for b in outputs.list_blobs(name_starts_with=f"{prefix}/"))
        assert names == sorted(
            f"{prefix}/{n}" for n in ("ok/r1.txt", "ok/deep/r2.txt", "logs/stdout.txt", "logs/stderr.txt")
        ), names
        assert outputs.get_blob_client(f"{prefix}/ok/deep/r2.txt").download_blob().readall() == b"r2\n"
        # And they are files of the local backend.
        assert (server.data_dir / "storage" / "outputs" / prefix / "logs" / "stdout.txt").read_bytes() == b"to-stdout\n"

        denied = done["out-denied"].execution_info
        assert denied.result == m.BatchTaskExecutionResult.FAILURE
        assert denied.failure_info.category == m.BatchErrorSourceCategory.USER_ERROR
        assert denied.failure_info.code == "FileUploadMiscError"
        assert "AuthorizationPermissionMismatch" in denied.failure_info.message

        secrets = []
        for url in (inputs_url, outputs_url, read_only_url, http_url):
            secrets += signature_forms(url)
        texts = [server.log_text(), str(denied.failure_info)]
        for text in texts:
            for secret in secrets:
                assert secret not in text
    finally:
        delete_job_and_pool(client, job_id, pool_id)
