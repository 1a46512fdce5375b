"""Applications as azure-batch 14.x sees them: `application.list` (ApplicationSummary, with
`nextLink` followed verbatim) and `application.get`, after packages were uploaded with
`openbatch app upload`; a missing application is a `BatchErrorException` with
`ApplicationNotFound`."""

from __future__ import annotations

import subprocess
import zipfile

import azure.batch.models as bm
import pytest

from conftest import unique_id
from serverproc import server_binary


def test_application_list_and_get(client, server, tmp_path):
    app_id = unique_id("sdk14-app")
    package = tmp_path / "p.zip"
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("run.sh", "#!/bin/sh\necho hi\n")
    other = unique_id("sdk14-app-other")
    for app, version in ((app_id, "1"), (app_id, "2.5"), (other, "1")):
        done = subprocess.run(
            [
                str(server_binary()),
                "app",
                "upload",
                app,
                version,
                str(package),
                "--display-name",
                "SDK 14 app",
                "--data-dir",
                str(server.data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    # One application a page: the SDK follows nextLink.
    listed = {a.id: a for a in client.application.list(bm.ApplicationListOptions(max_results=1))}
    assert app_id in listed and other in listed
    assert sorted(listed[app_id].versions) == ["1", "2.5"]
    got = client.application.get(app_id)
    assert (got.id, got.display_name, sorted(got.versions)) == (app_id, "SDK 14 app", ["1", "2.5"])
    with pytest.raises(bm.BatchErrorException) as err:
        client.application.get(unique_id("sdk14-missing"))
    assert err.value.error.code == "ApplicationNotFound"
