"""Job schedules through the official SDK: create, get, exists, list (with $filter), the jobs of a
schedule with their tasks running, update and replace, disable/enable, terminate and delete (with
the SDK's pollers), Azure's error codes, and openbatch's cron extension set through the SDK
model's dict interface.

Azure refuses recurrences under 1 minute, and so does the session's server. The recurrence test
runs against a second server started with OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE=1 (the
development setting `job_schedule_min_recurrence`), so a 2-second recurrence is fast to watch.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from azure.batch import models as m
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from conftest import (
    create_pool_and_wait_idle,
    make_client,
    read_task_file,
    running_server,
    unique_id,
    wait_task_completed,
    wait_until,
)

POLL = 0.2
# Jobs are created by the server's clock tick (every 500 ms) or when the previous job ends.
JOB_APPEARS_TIMEOUT_S = 20.0
TASK_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def fast_client(tmp_path_factory):
    """A server that accepts recurrences down to 1 second (development setting)."""
    with running_server(tmp_path_factory, env={"OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE": "1"}) as s:
        yield make_client(s.endpoint, s.account_name, s.account_key)


@pytest.fixture(scope="module")
def pool_id(client):
    pool = unique_id("sched-pool")
    create_pool_and_wait_idle(client, pool, nodes=1, slots=2)
    return pool


def schedule_options(schedule_id: str, pool: str, schedule: m.BatchJobScheduleConfiguration):
    return m.BatchJobScheduleCreateOptions(
        id=schedule_id,
        schedule=schedule,
        job_specification=m.BatchJobSpecification(
            pool_info=m.BatchPoolInfo(pool_id=pool),
            # Each job ends when its tasks are done, so the schedule's next job can start.
            all_tasks_complete_mode=m.BatchAllTasksCompleteMode.TERMINATE_JOB,
            priority=3,
        ),
    )


def wait_for_jobs(client, schedule_id: str, count: int) -> list:
    def enough():
        jobs = sorted(client.list_jobs_from_schedule(schedule_id), key=lambda j: j.id)
        return jobs if len(jobs) >= count else None

    return wait_until(enough, JOB_APPEARS_TIMEOUT_S, f"{count} job(s) of schedule {schedule_id}")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def test_once_only_schedule_runs_its_job_and_completes(client, pool_id):
    sid = unique_id("once")
    client.create_job_schedule(schedule_options(sid, pool_id, m.BatchJobScheduleConfiguration()))
    assert client.job_schedule_exists(sid)
    # HEAD answers 404 for a missing schedule; azure-batch 15.x raises on every 404, this one too.
    with pytest.raises(ResourceNotFoundError):
        client.job_schedule_exists(unique_id("nope"))

    (job,) = wait_for_jobs(client, sid, 1)
    assert job.id == f"{sid}:job-1"
    assert job.pool_info.pool_id == pool_id and job.priority == 3
    assert job.execution_info.pool_id == pool_id
    schedule = client.get_job_schedule(sid)
    assert schedule.state == m.BatchJobScheduleState.ACTIVE
    assert schedule.execution_info.recent_job.id == job.id
    assert schedule.execution_info.recent_job.url.endswith(f"/jobs/{job.id}")
    assert schedule.job_specification.pool_info.pool_id == pool_id
    assert schedule.etag and schedule.last_modified and schedule.creation_time

    client.create_task(
        job.id, m.BatchTaskCreateOptions(id="t1", command_line="/bin/sh -c 'echo $AZ_BATCH_TASK_DIR'")
    )
    task = wait_task_completed(client, job.id, "t1", TASK_TIMEOUT_S)
    assert task.execution_info.exit_code == 0
    # Azure lays out the tasks of a schedule's jobs under workitems/<schedule>/<job-n>/<task>.
    out = read_task_file(client, job.id, "t1", "stdout.txt").decode()
    assert out.strip().endswith(f"workitems/{sid}/job-1/t1")

    def completed():
        s = client.get_job_schedule(sid)
        return s if s.state == m.BatchJobScheduleState.COMPLETED else None

    done = wait_until(completed, JOB_APPEARS_TIMEOUT_S, f"schedule {sid} to complete")
    assert done.execution_info.end_time is not None
    assert done.execution_info.next_run_time is None
    assert client.get_job(job.id).state == m.BatchJobState.COMPLETED
    listed = list(client.list_job_schedules(filter=f"id eq '{sid}' and state eq 'completed'"))
    assert [s.id for s in listed] == [sid]
    # Completed is final.
    with pytest.raises(HttpResponseError) as e:
        client.disable_job_schedule(sid)
    assert e.value.status_code == 409 and e.value.error.code == "JobScheduleCompleted"

    client.begin_delete_job_schedule(sid, polling_interval=POLL).result()
    with pytest.raises(ResourceNotFoundError):
        client.job_schedule_exists(sid)
    with pytest.raises(ResourceNotFoundError):
        client.get_job(job.id)


def test_do_not_run_until_with_disable_and_enable(client, pool_id):
    sid = unique_id("later")
    until = now_utc() + timedelta(seconds=2)
    client.create_job_schedule(
        schedule_options(sid, pool_id, m.BatchJobScheduleConfiguration(do_not_run_until=until))
    )
    client.disable_job_schedule(sid)
    schedule = client.get_job_schedule(sid)
    assert schedule.state == m.BatchJobScheduleState.DISABLED
    assert schedule.previous_state == m.BatchJobScheduleState.ACTIVE
    assert schedule.execution_info.next_run_time == until
    assert list(client.list_jobs_from_schedule(sid)) == []

    client.enable_job_schedule(sid)
    assert client.get_job_schedule(sid).state == m.BatchJobScheduleState.ACTIVE
    (job,) = wait_for_jobs(client, sid, 1)
    assert job.creation_time >= until
    client.begin_terminate_job_schedule(sid, polling_interval=POLL).result()
    assert client.get_job_schedule(sid).state == m.BatchJobScheduleState.COMPLETED
    client.begin_delete_job_schedule(sid, polling_interval=POLL).result()


def test_recurrence_waits_for_the_previous_job_and_terminate_ends_it(fast_client):
    client = fast_client
    pool = unique_id("fast-pool")
    create_pool_and_wait_idle(client, pool, nodes=1, slots=1)
    sid = unique_id("every2s")
    client.create_job_schedule(
        schedule_options(sid, pool, m.BatchJobScheduleConfiguration(recurrence_interval=timedelta(seconds=2)))
    )
    (first,) = wait_for_jobs(client, sid, 1)
    due = client.get_job_schedule(sid).execution_info.next_run_time
    assert due is not None

    # job-1 has no task yet, so it stays active; the second run, once due, waits for it.
    wait_until(lambda: now_utc() > due + timedelta(seconds=1), 10, "the second run to be due")
    assert [j.id for j in client.list_jobs_from_schedule(sid)] == [first.id]
    assert client.get_job_schedule(sid).execution_info.next_run_time <= now_utc()

    # Its task ends job-1 (terminatejob), and job-2 follows at once.
    client.create_task(first.id, m.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'echo $AZ_BATCH_JOB_ID'"))
    wait_task_completed(client, first.id, "t", TASK_TIMEOUT_S)
    assert read_task_file(client, first.id, "t", "stdout.txt").decode().strip() == first.id
    jobs = wait_for_jobs(client, sid, 2)
    ended = client.get_job(first.id)
    assert ended.state == m.BatchJobState.COMPLETED
    second = jobs[1]
    assert second.id == f"{sid}:job-2"
    assert second.creation_time >= ended.execution_info.end_time

    # Terminate: the active job-2 is terminated and the schedule completes with it.
    client.begin_terminate_job_schedule(sid, polling_interval=POLL).result()
    schedule = client.get_job_schedule(sid)
    assert schedule.state == m.BatchJobScheduleState.COMPLETED
    assert schedule.execution_info.recent_job.id == second.id
    job2 = client.get_job(second.id)
    assert job2.state == m.BatchJobState.COMPLETED
    assert job2.execution_info.termination_reason == "UserTerminate"

    client.begin_delete_job_schedule(sid, polling_interval=POLL).result()
    assert list(client.list_jobs(filter=f"startswith(id, '{sid}')")) == []


def test_cron_extension_update_replace_and_conditions(client, pool_id):
    sid = unique_id("nightly")
    cfg = m.BatchJobScheduleConfiguration()
    # openbatch's extension fields: the SDK model is a dict and sends keys it does not know.
    cfg["cron"] = "0 3 * * *"
    cfg["timeZone"] = "Europe/Berlin"
    client.create_job_schedule(schedule_options(sid, pool_id, cfg))

    schedule = client.get_job_schedule(sid)
    assert schedule.schedule["cron"] == "0 3 * * *"
    assert schedule.schedule["timeZone"] == "Europe/Berlin"
    berlin = datetime.now(ZoneInfo("Europe/Berlin"))
    expected = berlin.replace(hour=3, minute=0, second=0, microsecond=0)
    if expected <= berlin:
        expected = (berlin + timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    assert schedule.execution_info.next_run_time == expected.astimezone(timezone.utc)
    assert list(client.list_jobs_from_schedule(sid)) == []

    # PATCH changes what it names.
    client.update_job_schedule(
        sid, m.BatchJobScheduleUpdateOptions(metadata=[m.BatchMetadataItem(name="team", value="etl")])
    )
    patched = client.get_job_schedule(sid)
    assert [(x.name, x.value) for x in patched.metadata] == [("team", "etl")]
    assert patched.schedule["cron"] == "0 3 * * *"

    # A stale ETag is refused with 412.
    with pytest.raises(HttpResponseError) as e:
        client.disable_job_schedule(sid, etag=schedule.etag, match_condition=MatchConditions.IfNotModified)
    assert e.value.status_code == 412 and e.value.error.code == "ConditionNotMet"

    # PUT replaces every settable property: the schedule given, metadata cleared.
    far = datetime(2099, 1, 1, tzinfo=timezone.utc)
    patched.schedule = m.BatchJobScheduleConfiguration(do_not_run_until=far)
    patched.metadata = None
    client.replace_job_schedule(sid, patched)
    replaced = client.get_job_schedule(sid)
    assert "cron" not in replaced.schedule
    assert not replaced.metadata
    assert replaced.execution_info.next_run_time == far

    selected = client.get_job_schedule(sid, select=["id", "state"])
    assert selected.id == sid and selected.execution_info is None
    client.begin_delete_job_schedule(sid, polling_interval=POLL).result()


@pytest.mark.parametrize(
    "schedule, code, property_name, reason",
    [
        ({"cron": "0 25 * * *"}, "InvalidPropertyValue", "schedule.cron", "field 2 (hour) '25' at column 3"),
        (
            {"cron": "0 3 * * *", "recurrenceInterval": "PT1H"},
            "InvalidPropertyValue",
            "schedule.cron",
            "mutually exclusive",
        ),
        ({"cron": "0 3 * * *", "timeZone": "Mars/Olympus"}, "InvalidPropertyValue", "schedule.timeZone", "IANA"),
        ({"recurrenceInterval": "PT30S"}, "InvalidPropertyValue", "schedule.recurrenceInterval", "at least PT1M"),
        ({"startWindow": "PT10S"}, "InvalidPropertyValue", "schedule.startWindow", "at least PT1M"),
        ({"recurrenceInterval": "every hour"}, "InvalidPropertyValue", "schedule.recurrenceInterval", "ISO 8601"),
        ({"doNotRunUntil": "tomorrow"}, "InvalidPropertyValue", "schedule.doNotRunUntil", "ISO 8601"),
    ],
)
def test_bad_schedules_are_400_with_the_property_named(client, schedule, code, property_name, reason):
    body = {"id": unique_id("bad"), "schedule": schedule, "jobSpecification": {"poolInfo": {"poolId": "p"}}}
    with pytest.raises(HttpResponseError) as e:
        client.create_job_schedule(body)
    assert e.value.status_code == 400 and e.value.error.code == code
    # The SDK turns `values` into error.details (code=key, message=value).
    values = {d.code: d.message for d in e.value.error.details}
    assert values["PropertyName"] == property_name
    assert reason in values["Reason"], values


def test_schedule_error_codes(client, pool_id):
    with pytest.raises(HttpResponseError) as e:
        client.create_job_schedule({"id": unique_id("nopool"), "schedule": {}, "jobSpecification": {}})
    assert e.value.status_code == 400 and e.value.error.code == "MissingRequiredProperty"
    assert {d.code: d.message for d in e.value.error.details}["PropertyName"] == "jobSpecification.poolInfo"

    with pytest.raises(ResourceNotFoundError) as e:
        client.get_job_schedule(unique_id("missing"))
    assert e.value.error.code == "JobScheduleNotFound"

    sid = unique_id("dup")
    later = m.BatchJobScheduleConfiguration(do_not_run_until=datetime(2099, 1, 1, tzinfo=timezone.utc))
    client.create_job_schedule(schedule_options(sid, pool_id, later))
    with pytest.raises(ResourceExistsError) as e:
        client.create_job_schedule(schedule_options(sid, pool_id, later))
    assert e.value.error.code == "JobScheduleExists"
    # Jobs and job schedules share their ids.
    with pytest.raises(ResourceExistsError) as e:
        client.create_job(m.BatchJobCreateOptions(id=sid, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    assert e.value.error.code == "JobScheduleWithSameIdExists"
    client.begin_delete_job_schedule(sid, polling_interval=POLL).result()
