"""Application packages through the official SDK (azure-batch 15.x).

Packages are uploaded with openbatch's own CLI (`openbatch app upload`; on Azure that is the
management plane's job), then everything else goes through the SDK as on Azure Batch:
`list_applications` and `get_application`, a pool whose start task uses the default version
(`AZ_BATCH_APP_PACKAGE_<id>`), and a task that names a version
(`AZ_BATCH_APP_PACKAGE_<id>_<version>`, with `-` and `.` flattened to `_` as on Linux nodes).
"""

from __future__ import annotations

import subprocess
import zipfile

import pytest
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from conftest import (
    create_pool_and_wait_idle,
    read_task_file,
    unique_id,
    wait_task_completed,
)
from serverproc import server_binary

TASK_TIMEOUT_S = 90.0


def make_package(path, version: str) -> None:
    """A zip with an executable `bin/hello.sh` that prints its version."""
    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo("bin/hello.sh")
        info.external_attr = (0o100755 << 16)
        z.writestr(info, f'#!/bin/sh\necho "hello from v{version}"\n')


def cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(server_binary()), *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def upload(server, app_id: str, version: str, path, *extra: str) -> None:
    done = cli(server, "app", "upload", app_id, version, str(path), *extra)
    assert done.returncode == 0, done.stderr


def test_applications_and_package_references(client, server, tmp_path):
    app_id = unique_id("hello-app")
    flat = app_id.replace("-", "_")
    for v in ("1.0", "2.0"):
        make_package(tmp_path / f"{v}.zip", v)
    upload(server, app_id, "1.0", tmp_path / "1.0.zip", "--display-name", "Hello", "--set-default")
    upload(server, app_id, "2.0", tmp_path / "2.0.zip")

    listed = {a.id: a for a in client.list_applications()}
    assert listed[app_id].display_name == "Hello"
    assert sorted(listed[app_id].versions) == ["1.0", "2.0"]
    got = client.get_application(app_id)
    assert (got.id, got.display_name, sorted(got.versions)) == (app_id, "Hello", ["1.0", "2.0"])
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_application(unique_id("no-such-app"))
    assert err.value.error.code == "ApplicationNotFound"

    # A pool that references an application that does not exist is refused, as on Azure.
    with pytest.raises(HttpResponseError) as err:
        client.create_pool(
            m.BatchPoolCreateOptions(
                id=unique_id("apps-bad"),
                vm_size="Standard_D2s_v3",
                application_package_references=[
                    m.BatchApplicationPackageReference(application_id=unique_id("missing"))
                ],
            )
        )
    assert err.value.status_code == 409
    assert err.value.error.code == "InvalidApplicationPackageReferences"

    pool_id = unique_id("apps-pool")
    job_id = unique_id("apps")
    create_pool_and_wait_idle(
        client,
        pool_id,
        nodes=1,
        slots=1,
        start_task=m.BatchStartTask(
            command_line=(
                f"/bin/sh -c '$AZ_BATCH_APP_PACKAGE_{flat}/bin/hello.sh "
                "> $AZ_BATCH_NODE_SHARED_DIR/start.txt'"
            ),
            wait_for_success=True,
        ),
        application_package_references=[m.BatchApplicationPackageReference(application_id=app_id)],
    )
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    try:
        pool = client.get_pool(pool_id)
        assert [(r.application_id, r.version) for r in pool.application_package_references] == [
            (app_id, None)
        ]
        node = next(iter(client.list_nodes(pool_id)))
        started = b"".join(client.download_node_file(pool_id, node.id, "shared/start.txt"))
        assert started == b"hello from v1.0\n"

        client.create_task(
            job_id,
            m.BatchTaskCreateOptions(
                id="t",
                command_line=(
                    f"/bin/sh -c '$AZ_BATCH_APP_PACKAGE_{flat}_2_0/bin/hello.sh; "
                    f"$AZ_BATCH_APP_PACKAGE_{flat}/bin/hello.sh'"
                ),
                application_package_references=[
                    m.BatchApplicationPackageReference(application_id=app_id, version="2.0")
                ],
            ),
        )
        task = wait_task_completed(client, job_id, "t", TASK_TIMEOUT_S)
        assert task.execution_info.exit_code == 0
        assert [(r.application_id, r.version) for r in task.application_package_references] == [
            (app_id, "2.0")
        ]
        assert read_task_file(client, job_id, "t", "stdout.txt") == (
            b"hello from v2.0\nhello from v1.0\n"
        )

        # A task naming a version that does not exist is refused.
        with pytest.raises(HttpResponseError) as err:
            client.create_task(
                job_id,
                m.BatchTaskCreateOptions(
                    id="bad",
                    command_line="/bin/true",
                    application_package_references=[
                        m.BatchApplicationPackageReference(application_id=app_id, version="9.9")
                    ],
                ),
            )
        assert err.value.error.code == "InvalidApplicationPackageReferences"
    finally:
        client.begin_delete_job(job_id, polling_interval=0.2).result()
        client.begin_delete_pool(pool_id, polling_interval=0.2).result()
    # Once no pool uses it, the application can be deleted.
    done = cli(server, "app", "delete", app_id)
    assert done.returncode == 0, done.stderr
    assert app_id not in {a.id for a in client.list_applications()}
