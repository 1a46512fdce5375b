"""P2 operations through the official SDK: pool update/replace/stop resize/remove nodes, job
update/replace/disable/enable, task replace/reactivate, node scheduling and reboot/reimage, and
the account listings (supported images, node counts, applications)."""

import pytest
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from conftest import create_pool_and_wait_idle, read_task_file, unique_id, wait_task_completed, wait_until

POLL = 0.2


def test_pool_update_replace_and_listings(client):
    pool_id = unique_id("p2pool")
    create_pool_and_wait_idle(client, pool_id, nodes=1, slots=1)
    client.update_pool(
        pool_id,
        m.BatchPoolUpdateOptions(metadata=[m.BatchMetadataItem(name="team", value="render")]),
    )
    pool = client.get_pool(pool_id)
    assert [(x.name, x.value) for x in pool.metadata] == [("team", "render")]

    client.replace_pool_properties(
        pool_id,
        m.BatchPoolReplaceOptions(application_package_references=[], metadata=[]),
    )
    assert not client.get_pool(pool_id).metadata

    counts = {c.pool_id: c for c in client.list_pool_node_counts()}
    assert counts[pool_id].dedicated.total == 1
    assert counts[pool_id].dedicated.idle == 1

    images = list(client.list_supported_images())
    assert images and images[0].os_type == "linux" and images[0].node_agent_sku_id.startswith("batch.node.")
    # Other tests of the session upload (and delete) their own applications.
    assert "nope" not in {a.id for a in client.list_applications()}
    with pytest.raises(ResourceNotFoundError) as e:
        client.get_application("nope")
    assert e.value.error.code == "ApplicationNotFound"

    # Remove the node by name: the pool shrinks to 0 and becomes steady.
    node = list(client.list_nodes(pool_id))[0]
    client.begin_remove_nodes(
        pool_id, m.BatchNodeRemoveOptions(node_ids=[node.id]), polling_interval=POLL
    ).result()
    wait_until(lambda: not list(client.list_nodes(pool_id)), 30, "the removed node to leave")
    pool = client.get_pool(pool_id)
    assert pool.target_dedicated_nodes == 0 and pool.allocation_state == "steady"
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def test_stop_resize_keeps_the_nodes_it_has(client):
    pool_id = unique_id("p2stop")
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="Standard_D2s_v3", target_dedicated_nodes=1))
    client.begin_resize_pool(pool_id, m.BatchPoolResizeOptions(target_dedicated_nodes=3), polling_interval=POLL)
    client.begin_stop_pool_resize(pool_id, polling_interval=POLL).result()
    pool = client.get_pool(pool_id)
    assert pool.allocation_state == "steady"
    assert pool.target_dedicated_nodes == len(list(client.list_nodes(pool_id)))
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def test_job_update_disable_enable_and_task_reactivate(client):
    pool_id = unique_id("p2job")
    create_pool_and_wait_idle(client, pool_id, nodes=1, slots=2)
    job_id = unique_id("j")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))

    client.update_job(job_id, m.BatchJobUpdateOptions(priority=500, max_parallel_tasks=1))
    job = client.get_job(job_id)
    assert job.priority == 500 and job.max_parallel_tasks == 1
    job.priority = 7
    client.replace_job(job_id, job)
    assert client.get_job(job_id).priority == 7

    client.begin_disable_job(
        job_id, m.BatchJobDisableOptions(disable_tasks="requeue"), polling_interval=POLL
    ).result()
    assert client.get_job(job_id).state == "disabled"
    client.create_task(job_id, m.BatchTaskCreateOptions(id="waits", command_line="/bin/true"))
    # A disabled job starts nothing.
    with pytest.raises(pytest.fail.Exception):
        wait_task_completed(client, job_id, "waits", timeout=1.5)
    assert client.get_task(job_id, "waits").state == "active"
    client.begin_enable_job(job_id, polling_interval=POLL).result()
    assert client.get_job(job_id).state == "active"
    assert wait_task_completed(client, job_id, "waits", 30).execution_info.exit_code == 0

    # Replace a task's constraints, then reactivate it after it failed.
    flag = f"/tmp/{job_id}-flag"
    cmd = f'/bin/sh -c "if [ -e {flag} ]; then echo second; else touch {flag}; exit 4; fi"'
    client.create_task(job_id, m.BatchTaskCreateOptions(id="flaky", command_line=cmd))
    failed = wait_task_completed(client, job_id, "flaky", 30)
    assert failed.execution_info.exit_code == 4
    with pytest.raises(HttpResponseError) as e:
        client.reactivate_task(job_id, "waits")
    assert e.value.error.code == "OperationInvalidForCurrentState"
    client.reactivate_task(job_id, "flaky")
    again = wait_task_completed(client, job_id, "flaky", 30)
    assert again.execution_info.exit_code == 0 and again.execution_info.retry_count == 0
    assert read_task_file(client, job_id, "flaky", "stdout.txt") == b"second\n"

    client.create_task(job_id, m.BatchTaskCreateOptions(id="long", command_line="/bin/sh -c 'sleep 30'"))
    task = client.get_task(job_id, "long")
    task.constraints = m.BatchTaskConstraints(max_task_retry_count=3)
    client.replace_task(job_id, "long", task)
    assert client.get_task(job_id, "long").constraints.max_task_retry_count == 3
    client.terminate_task(job_id, "long")
    client.begin_delete_job(job_id, polling_interval=POLL).result()
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def test_node_scheduling_reboot_and_reimage(client):
    pool_id = unique_id("p2node")
    start = m.BatchStartTask(command_line='/bin/sh -c "echo booted >> $AZ_BATCH_NODE_SHARED_DIR/boots"', wait_for_success=True)
    node = create_pool_and_wait_idle(client, pool_id, nodes=1, slots=1, start_task=start)[0]

    # The SDK cannot serialize an absent options body here, so users pass one.
    client.disable_node_scheduling(
        pool_id, node.id, m.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option="requeue")
    )
    wait_until(lambda: client.get_node(pool_id, node.id).state == "offline", 10, "node offline")
    assert client.get_node(pool_id, node.id).scheduling_state == "disabled"
    client.enable_node_scheduling(pool_id, node.id)
    wait_until(lambda: client.get_node(pool_id, node.id).state == "idle", 10, "node idle again")

    # A reboot runs the start task again and keeps the disk; a reimage wipes it.
    client.begin_reboot_node(
        pool_id, node.id, {"nodeRebootOption": "requeue"}, polling_interval=POLL
    ).result()
    wait_until(lambda: client.get_node(pool_id, node.id).state == "idle", 30, "node idle after reboot")
    boots = b"".join(client.download_node_file(pool_id, node.id, "shared/boots"))
    assert boots == b"booted\nbooted\n"
    client.begin_reimage_node(
        pool_id, node.id, {"nodeReimageOption": "requeue"}, polling_interval=POLL
    ).result()
    wait_until(lambda: client.get_node(pool_id, node.id).state == "idle", 30, "node idle after reimage")
    boots = b"".join(client.download_node_file(pool_id, node.id, "shared/boots"))
    assert boots == b"booted\n"
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def test_conditional_headers(client):
    """ETag / If-Match / If-None-Match as the SDK sends them (etag + match_condition)."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotModifiedError

    pool_id = unique_id("p2etag")
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="Standard_D2s_v3", target_dedicated_nodes=0))
    etag = client.get_pool(pool_id).etag
    client.update_pool(
        pool_id,
        m.BatchPoolUpdateOptions(metadata=[m.BatchMetadataItem(name="a", value="1")]),
        etag=etag,
        match_condition=MatchConditions.IfNotModified,
    )
    # The pool changed since `etag`: the same conditional update now fails with 412.
    with pytest.raises(ResourceModifiedError) as e:
        client.update_pool(
            pool_id,
            m.BatchPoolUpdateOptions(metadata=[]),
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )
    assert e.value.error.code == "ConditionNotMet"
    assert [x.name for x in client.get_pool(pool_id).metadata] == ["a"]
    # A GET with If-None-Match of the current ETag is "not modified".
    current = client.get_pool(pool_id).etag
    # SDK 15.1.0 maps the 304 to ResourceModifiedError; the status is what matters.
    with pytest.raises((ResourceNotModifiedError, ResourceModifiedError)) as e:
        client.get_pool(pool_id, etag=current, match_condition=MatchConditions.IfModified)
    assert e.value.status_code == 304
    client.begin_delete_pool(pool_id, etag=current, match_condition=MatchConditions.IfNotModified, polling_interval=POLL).result()


def test_file_delete_select_expand_and_request_ids(client):
    pool_id = unique_id("p2file")
    node = create_pool_and_wait_idle(client, pool_id, nodes=1, slots=1)[0]
    job_id = unique_id("j")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    client.create_task(
        job_id,
        m.BatchTaskCreateOptions(id="t", command_line='/bin/sh -c "mkdir -p out && echo x > out/a.txt && echo y > b.txt"'),
    )
    wait_task_completed(client, job_id, "t", 30)
    names = {f.name for f in client.list_task_files(job_id, "t", recursive=True)}
    assert {"wd/out/a.txt", "wd/b.txt"} <= names
    client.delete_task_file(job_id, "t", "wd/b.txt")
    # A directory needs recursive=true.
    with pytest.raises(HttpResponseError):
        client.delete_task_file(job_id, "t", "wd/out")
    client.delete_task_file(job_id, "t", "wd/out", recursive=True)
    names = {f.name for f in client.list_task_files(job_id, "t", recursive=True)}
    assert "wd/b.txt" not in names and "wd/out/a.txt" not in names
    node_files = {f.name for f in client.list_node_files(pool_id, node.id, recursive=True)}
    assert f"workitems/{job_id}/job-1/t/stdout.txt" in node_files

    # $select keeps only what was asked for; $expand=stats is accepted.
    selected = client.get_task(job_id, "t", select=["id", "state"])
    assert selected.id == "t" and selected.state == "completed" and selected.command_line is None
    listed = list(client.list_tasks(job_id, select=["id"], expand=["stats"]))
    assert [t.id for t in listed] == ["t"] and listed[0].state is None

    # request-id on every answer; client-request-id echoed when asked for.
    seen = {}

    def hook(response):
        seen.update(response.http_response.headers)

    client.get_job(job_id, raw_response_hook=hook, headers={"return-client-request-id": "true", "client-request-id": "abc-123"})
    assert seen.get("request-id")
    assert seen.get("client-request-id") == "abc-123"
    client.begin_delete_job(job_id, polling_interval=POLL).result()
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def test_paging_is_stable_under_concurrent_inserts(client):
    """Pages continue after the last id returned, so tasks added meanwhile never make a page
    repeat or skip a task that existed when the listing started."""
    job_id = unique_id("j")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=unique_id("nopool"))))
    first = [m.BatchTaskCreateOptions(id=f"a{i:03d}", command_line="/bin/true") for i in range(150)]
    client.create_tasks(job_id, first)
    seen = []
    for i, task in enumerate(client.list_tasks(job_id, max_results=20)):
        seen.append(task.id)
        if i == 30:
            client.create_tasks(job_id, [m.BatchTaskCreateOptions(id=f"b{j:03d}", command_line="/bin/true") for j in range(40)])
    assert len(seen) == len(set(seen)), "no task listed twice"
    assert {t.id for t in first} <= set(seen), "no task that existed at the start was skipped"
    client.begin_delete_job(job_id, polling_interval=POLL).result()


def test_features_not_yet_supported_are_refused_not_ignored(client):
    # Multi-instance tasks, output files and container resource files are supported now (see
    # test_multi_instance.py and test_storage.py). Auto pools are not: refused, never ignored.
    with pytest.raises(HttpResponseError) as e:
        client.create_job(
            m.BatchJobCreateOptions(
                id=unique_id("j"),
                pool_info=m.BatchPoolInfo(
                    auto_pool_specification=m.BatchAutoPoolSpecification(
                        pool_lifetime_option=m.BatchPoolLifetimeOption.JOB,
                        pool=m.BatchPoolSpecification(vm_size="Standard_D2s_v3"),
                    )
                ),
            )
        )
    assert e.value.status_code == 400 and e.value.error.code == "UnsupportedOperation"
    job_id = unique_id("j")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=unique_id("nopool"))))
    # Per-task errors of a collection carry the request id like any other error body.
    result = client.create_task_collection(
        job_id, m.BatchTaskGroup(task_values=[m.BatchTaskCreateOptions(id="bad id", command_line="/bin/true")])
    )
    message = result.result_values[0].error.message.value
    assert "\nRequestId:" in message and "\nRequestId:\n" not in message
    client.begin_delete_job(job_id, polling_interval=POLL).result()


def test_a_retried_chunk_is_task_exists_never_a_duplicate(client):
    """The SDK re-sends a chunk after a 5xx; the server answers TaskExists for tasks it already
    has, which `create_tasks` treats as success, and never creates a task twice."""
    job_id = unique_id("j")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(pool_id=unique_id("nopool"))))
    tasks = [m.BatchTaskCreateOptions(id=f"t{i:03d}", command_line="/bin/true") for i in range(120)]
    client.create_tasks(job_id, tasks)
    again = client.create_task_collection(job_id, m.BatchTaskGroup(task_values=tasks[:100]))
    assert {r.status for r in again.result_values} == {"clienterror"}
    assert {r.error.code for r in again.result_values} == {"TaskExists"}
    client.create_tasks(job_id, tasks)  # the SDK helper treats TaskExists as success
    assert sum(1 for _ in client.list_tasks(job_id)) == 120
    client.begin_delete_job(job_id, polling_interval=POLL).result()


def test_autoscale_through_the_sdk(client):
    """enable/evaluate/disable autoscale as the SDK calls them; a new formula is evaluated at
    once, a broken one is refused with its position."""
    pool_id = unique_id("p2auto")
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="Standard_D2s_v3", target_dedicated_nodes=0))
    with pytest.raises(HttpResponseError) as e:
        client.enable_pool_auto_scale(
            pool_id,
            m.BatchPoolEnableAutoScaleOptions(auto_scale_formula="$TargetDedicatedNodes = max(1, ;"),
        )
    assert e.value.status_code == 400 and e.value.error.code == "InvalidAutoScaleFormula"
    # The SDK turns `values` into error.details (code=key, message=value).
    assert any(d.code == "Position" and "Col" in d.message for d in e.value.error.details)

    client.enable_pool_auto_scale(
        pool_id,
        m.BatchPoolEnableAutoScaleOptions(
            auto_scale_formula="$TargetDedicatedNodes = 0;", auto_scale_evaluation_interval="PT5M"
        ),
    )
    run = wait_until(lambda: client.get_pool(pool_id).auto_scale_run, 15, "the first autoscale run")
    assert run.results.startswith("$TargetDedicatedNodes=0")
    evaluated = client.evaluate_pool_auto_scale(
        pool_id, m.BatchPoolEvaluateAutoScaleOptions(auto_scale_formula="$TargetDedicatedNodes = 4;")
    )
    assert evaluated.results.startswith("$TargetDedicatedNodes=4") and evaluated.error is None
    assert client.get_pool(pool_id).target_dedicated_nodes == 0, "evaluate does not apply"
    client.disable_pool_auto_scale(pool_id)
    assert client.get_pool(pool_id).enable_auto_scale is False
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()
