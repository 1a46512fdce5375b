//! Job schedules: jobs created on a schedule, one at a time (Azure Batch semantics), and the
//! openbatch cron extension. Time passes only through `Input::Tick`, as in the server.

use chrono::{DateTime, Duration, Utc};
use openbatch_api::models::{JobScheduleState, JobState, TaskState};
use openbatch_core::{Core, CoreError, Input, Limits, Precondition, Target};
use serde_json::{json, Value};

use crate::common::*;

/// Pool `p` of one connected two-slot node.
fn sim() -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 2))));
    sim.connect_all();
    sim
}

fn iso(t: DateTime<Utc>) -> String {
    openbatch_api::time::iso8601(t)
}

/// `POST /jobschedules` of schedule `id` with this `schedule` on pool `p`; jobs terminate
/// when their tasks are done.
fn create(sim: &mut Sim, id: &str, schedule: Value) {
    sim.ok(Input::CreateJobSchedule(Box::new(job_schedule(json!({
        "id": id,
        "schedule": schedule,
        "jobSpecification": {"poolInfo": {"poolId": "p"}, "onAllTasksComplete": "terminatejob"},
    })))));
}

fn state(sim: &Sim, id: &str) -> JobScheduleState {
    sim.schedule_view(id).state
}

fn next_run(sim: &Sim, id: &str) -> Option<DateTime<Utc>> {
    sim.schedule_view(id).execution_info.next_run_time
}

/// Run one task in `job` and let it succeed, which completes the job (terminatejob).
fn run_to_completion(sim: &mut Sim, job: &str) {
    sim.ok(add(job, vec![simple_task("t")]));
    sim.advance(1);
    sim.finish_task(job, "t", 0);
    assert_eq!(sim.job_view(job).state, JobState::Completed);
}

/// Start a task in `job` that keeps running.
fn keep_busy(sim: &mut Sim, job: &str) {
    sim.ok(add(job, vec![simple_task("t")]));
    assert_eq!(sim.task_state(job, "t"), TaskState::Running);
}

/// Let `secs` pass, ticking every second as the server does (every 500 ms there).
fn tick_for(sim: &mut Sim, secs: i64) {
    for _ in 0..secs {
        sim.advance(1);
        sim.tick();
    }
}

fn minutes(m: i64) -> Value {
    json!(format!("PT{m}M"))
}

/// No recurrence: one job at once, named as Azure names it; the schedule completes when that
/// job does. The job's tasks live under `workitems/<schedule>/job-<n>/<task>`.
#[test]
fn once_only_schedule_runs_one_job_then_completes() {
    let mut sim = sim();
    create(&mut sim, "once", json!({}));
    assert_eq!(sim.schedule_jobs("once"), ["once:job-1"]);
    let s = sim.schedule_view("once");
    assert_eq!(s.state, JobScheduleState::Active);
    assert_eq!(s.execution_info.next_run_time, None);
    assert_eq!(
        s.execution_info.recent_job.and_then(|r| r.url).as_deref(),
        Some("https://acct.openbatch.test/jobs/once:job-1")
    );
    let job = sim.job_view("once:job-1");
    assert_eq!(job.pool_info.pool_id.as_deref(), Some("p"));
    assert_eq!(
        job.execution_info.and_then(|e| e.pool_id).as_deref(),
        Some("p")
    );

    sim.ok(add("once:job-1", vec![simple_task("t")]));
    let dir = sim
        .task_view("once:job-1", "t")
        .node_info
        .and_then(|n| n.task_root_directory);
    assert_eq!(dir.as_deref(), Some("workitems/once/job-1/t"));
    tick_for(&mut sim, 120);
    assert_eq!(sim.schedule_jobs("once").len(), 1, "no second job");

    sim.finish_task("once:job-1", "t", 0);
    let s = sim.schedule_view("once");
    assert_eq!(s.state, JobScheduleState::Completed);
    assert_eq!(s.execution_info.end_time, Some(sim.now));
    assert_eq!(s.previous_state, Some(JobScheduleState::Active));
}

/// `doNotRunUntil`: nothing before it; the job is created by the first tick at or after it.
#[test]
fn do_not_run_until_holds_the_first_job_back() {
    let mut sim = sim();
    let until = sim.now + Duration::minutes(10);
    create(&mut sim, "later", json!({"doNotRunUntil": iso(until)}));
    assert!(sim.schedule_jobs("later").is_empty());
    assert_eq!(next_run(&sim, "later"), Some(until));

    tick_for(&mut sim, 599);
    assert!(sim.schedule_jobs("later").is_empty());
    sim.advance(1);
    let tick = sim.tick();
    assert!(tick.changed, "a tick that creates a job is journaled");
    assert_eq!(sim.schedule_jobs("later"), ["later:job-1"]);
    assert_eq!(sim.job_view("later:job-1").creation_time, until);
}

/// Azure: "if it is time to create a new job under a job schedule, but the previous job is
/// still running, the Batch service will not create the new job until the previous job
/// finishes". The next recurrences keep their grid.
#[test]
fn recurrence_waits_for_the_previous_job() {
    let mut sim = sim();
    let start = sim.now;
    create(&mut sim, "r", json!({"recurrenceInterval": minutes(10)}));
    keep_busy(&mut sim, "r:job-1");
    assert_eq!(next_run(&sim, "r"), Some(start + Duration::minutes(10)));

    sim.advance(12 * 60);
    sim.tick();
    assert_eq!(sim.schedule_jobs("r"), ["r:job-1"], "job-1 still runs");
    assert_eq!(next_run(&sim, "r"), Some(start + Duration::minutes(10)));

    // job-1 ends at 15 min: job-2 is created at once, and the grid stays at 10-minute steps.
    sim.advance(3 * 60);
    sim.finish_task("r:job-1", "t", 0);
    assert_eq!(sim.schedule_jobs("r"), ["r:job-1", "r:job-2"]);
    assert_eq!(
        sim.job_view("r:job-2").creation_time,
        start + Duration::minutes(15)
    );
    assert_eq!(next_run(&sim, "r"), Some(start + Duration::minutes(20)));

    run_to_completion(&mut sim, "r:job-2");
    sim.advance(5 * 60 - 1);
    sim.tick();
    assert_eq!(sim.schedule_jobs("r").len(), 3);
    assert_eq!(
        sim.job_view("r:job-3").creation_time,
        start + Duration::minutes(20)
    );
}

/// A due job that cannot be created within `startWindow` (the previous job still runs) is
/// skipped; the next one comes at the next recurrence.
#[test]
fn start_window_missed_skips_that_recurrence() {
    let mut sim = sim();
    let start = sim.now;
    create(
        &mut sim,
        "w",
        json!({"recurrenceInterval": minutes(10), "startWindow": minutes(2)}),
    );
    keep_busy(&mut sim, "w:job-1");
    sim.advance(11 * 60);
    sim.tick();
    assert_eq!(next_run(&sim, "w"), Some(start + Duration::minutes(10)));
    sim.advance(60);
    sim.tick();
    assert_eq!(
        next_run(&sim, "w"),
        Some(start + Duration::minutes(20)),
        "the window of the 10-minute run closed"
    );

    sim.advance(2 * 60);
    sim.finish_task("w:job-1", "t", 0);
    assert_eq!(sim.schedule_jobs("w"), ["w:job-1"], "nothing due now");
    sim.advance(6 * 60);
    sim.tick();
    assert_eq!(sim.schedule_jobs("w"), ["w:job-1", "w:job-2"]);
    assert_eq!(
        sim.job_view("w:job-2").creation_time,
        start + Duration::minutes(20)
    );
}

/// A once-only schedule whose start window passed before it could run completes without a
/// job; so does one that only wakes up long after its due time (the server was down).
#[test]
fn start_window_missed_by_a_once_only_schedule_completes_it() {
    let mut sim = sim();
    let until = sim.now + Duration::minutes(5);
    create(
        &mut sim,
        "o",
        json!({"doNotRunUntil": iso(until), "startWindow": minutes(1)}),
    );
    sim.advance(7 * 60);
    sim.tick();
    assert!(sim.schedule_jobs("o").is_empty());
    assert_eq!(state(&sim, "o"), JobScheduleState::Completed);
}

/// `doNotRunAfter`: no job is due after it, and the schedule completes once its last job has.
#[test]
fn do_not_run_after_ends_the_schedule() {
    let mut sim = sim();
    let start = sim.now;
    create(
        &mut sim,
        "a",
        json!({"recurrenceInterval": minutes(10), "doNotRunAfter": iso(start + Duration::minutes(25))}),
    );
    run_to_completion(&mut sim, "a:job-1");
    sim.advance(10 * 60);
    sim.tick();
    run_to_completion(&mut sim, "a:job-2");
    sim.advance(10 * 60);
    sim.tick();
    assert_eq!(sim.schedule_jobs("a").len(), 3);
    assert_eq!(next_run(&sim, "a"), None, "30 min is after doNotRunAfter");
    keep_busy(&mut sim, "a:job-3");
    sim.advance(20 * 60);
    sim.tick();
    assert_eq!(
        state(&sim, "a"),
        JobScheduleState::Active,
        "job-3 still runs"
    );
    sim.finish_task("a:job-3", "t", 0);
    assert_eq!(state(&sim, "a"), JobScheduleState::Completed);

    // doNotRunAfter in the past: completed at once, no job.
    let past = sim.now - Duration::minutes(1);
    create(&mut sim, "past", json!({"doNotRunAfter": iso(past)}));
    assert_eq!(state(&sim, "past"), JobScheduleState::Completed);
    assert!(sim.schedule_jobs("past").is_empty());
}

/// Disabled: no job is created, the active job runs on. Enabled again within the start window
/// of a due time: its job is created at once; after it: the schedule waits for the next one.
#[test]
fn disable_and_enable() {
    let mut sim = sim();
    let start = sim.now;
    create(
        &mut sim,
        "d",
        json!({"recurrenceInterval": minutes(10), "startWindow": minutes(5)}),
    );
    keep_busy(&mut sim, "d:job-1");
    sim.ok(Input::DisableJobSchedule { id: "d".into() });
    let s = sim.schedule_view("d");
    assert_eq!(s.state, JobScheduleState::Disabled);
    assert_eq!(
        s.execution_info.next_run_time,
        Some(start + Duration::minutes(10))
    );
    assert_eq!(sim.job_view("d:job-1").state, JobState::Active, "runs on");
    sim.finish_task("d:job-1", "t", 0);

    sim.advance(11 * 60);
    sim.tick();
    assert_eq!(sim.schedule_jobs("d"), ["d:job-1"], "disabled: no job");
    sim.ok(Input::EnableJobSchedule { id: "d".into() });
    assert_eq!(state(&sim, "d"), JobScheduleState::Active);
    assert_eq!(
        sim.schedule_jobs("d"),
        ["d:job-1", "d:job-2"],
        "due and in window"
    );
    run_to_completion(&mut sim, "d:job-2");

    sim.ok(Input::DisableJobSchedule { id: "d".into() });
    sim.ok(Input::DisableJobSchedule { id: "d".into() }); // idempotent
    sim.advance(16 * 60); // 27 min: the 20-minute run's window closed at 25
    sim.tick();
    assert_eq!(next_run(&sim, "d"), Some(start + Duration::minutes(30)));
    sim.ok(Input::EnableJobSchedule { id: "d".into() });
    assert_eq!(sim.schedule_jobs("d").len(), 2, "nothing due after enable");
    sim.advance(3 * 60);
    sim.tick();
    assert_eq!(sim.schedule_jobs("d").len(), 3);
}

/// Terminate: the active job is terminated (its running task killed); the schedule is
/// `terminating` until that job has ended, then `completed`. Completed is final.
#[test]
fn terminate_ends_the_active_job_then_the_schedule() {
    let mut sim = sim();
    create(&mut sim, "t", json!({"recurrenceInterval": minutes(10)}));
    keep_busy(&mut sim, "t:job-1");
    let run = sim.run_of("t:job-1", "t");
    sim.advance(1);
    sim.ok(Input::TerminateJobSchedule { id: "t".into() });
    assert_eq!(sim.last_kills(), vec![run]);
    assert_eq!(state(&sim, "t"), JobScheduleState::Terminating);
    assert_eq!(sim.job_view("t:job-1").state, JobState::Terminating);
    sim.ok(Input::TerminateJobSchedule { id: "t".into() }); // idempotent
    tick_for(&mut sim, 3);

    sim.finish(run, 137);
    assert_eq!(sim.job_view("t:job-1").state, JobState::Completed);
    let s = sim.schedule_view("t");
    assert_eq!(s.state, JobScheduleState::Completed);
    assert_eq!(s.previous_state, Some(JobScheduleState::Terminating));
    sim.advance(3600);
    sim.tick();
    assert_eq!(sim.schedule_jobs("t").len(), 1);

    for input in [
        Input::TerminateJobSchedule { id: "t".into() },
        Input::DisableJobSchedule { id: "t".into() },
        Input::EnableJobSchedule { id: "t".into() },
    ] {
        assert_eq!(
            sim.refused(input),
            CoreError::JobScheduleCompleted("t".into())
        );
    }

    // Without an active job, terminate completes the schedule at once.
    let until = sim.now + Duration::hours(1);
    create(&mut sim, "idle", json!({"doNotRunUntil": iso(until)}));
    sim.ok(Input::TerminateJobSchedule { id: "idle".into() });
    assert_eq!(state(&sim, "idle"), JobScheduleState::Completed);
}

/// Delete: every job of the schedule is deleted (running tasks killed); the schedule is
/// `deleting` until the last job is gone, then it is gone too.
#[test]
fn delete_removes_the_schedule_with_its_jobs() {
    let mut sim = sim();
    create(&mut sim, "x", json!({"recurrenceInterval": minutes(10)}));
    run_to_completion(&mut sim, "x:job-1");
    sim.advance(10 * 60);
    sim.tick();
    keep_busy(&mut sim, "x:job-2");
    let run = sim.run_of("x:job-2", "t");
    sim.ok(Input::CreateJob(Box::new(simple_job("other", "p"))));

    sim.ok(Input::DeleteJobSchedule { id: "x".into() });
    assert_eq!(sim.last_kills(), vec![run]);
    assert_eq!(state(&sim, "x"), JobScheduleState::Deleting);
    assert_eq!(sim.schedule_jobs("x"), ["x:job-2"], "job-1 is gone at once");
    assert_eq!(sim.job_view("x:job-2").state, JobState::Deleting);
    sim.ok(Input::DeleteJobSchedule { id: "x".into() }); // idempotent
    assert_eq!(
        sim.refused(Input::CreateJobSchedule(Box::new(job_schedule(json!({
            "id": "X", "schedule": {}, "jobSpecification": {"poolInfo": {"poolId": "p"}},
        }))))),
        CoreError::JobScheduleBeingDeleted("X".into())
    );

    sim.finish(run, 137);
    assert_eq!(
        sim.core.job_schedule("x", &urls()).unwrap_err(),
        CoreError::JobScheduleNotFound("x".into())
    );
    assert!(sim.core.job("x:job-2", &urls()).is_err());
    assert_eq!(sim.job_view("other").state, JobState::Active, "untouched");
    // The id is free again.
    create(&mut sim, "x", json!({}));
    assert_eq!(sim.schedule_jobs("x"), ["x:job-1"]);
}

/// A job of the schedule deleted or terminated by the user ends it like completion does.
#[test]
fn the_user_ending_the_active_job_frees_the_schedule() {
    let mut sim = sim();
    let start = sim.now;
    create(&mut sim, "u", json!({"recurrenceInterval": minutes(10)}));
    sim.advance(11 * 60);
    sim.tick();
    assert_eq!(
        sim.schedule_jobs("u").len(),
        1,
        "job-1 has no tasks and stays active"
    );
    sim.ok(Input::TerminateJob {
        id: "u:job-1".into(),
        reason: None,
    });
    assert_eq!(sim.schedule_jobs("u"), ["u:job-1", "u:job-2"]);
    sim.ok(Input::DeleteJob {
        id: "u:job-2".into(),
    });
    assert_eq!(sim.schedule_jobs("u"), ["u:job-1"]);
    assert_eq!(next_run(&sim, "u"), Some(start + Duration::minutes(20)));
    assert_eq!(
        sim.schedule_view("u")
            .execution_info
            .recent_job
            .and_then(|r| r.id)
            .as_deref(),
        Some("u:job-2")
    );
}

/// A cron schedule in Europe/Berlin across the spring-forward night: `30 2 * * *` runs once
/// a day, at 02:30 local time, and right after the gap on the night 02:30 does not exist;
/// across fall-back it runs once, at the first 02:30.
#[test]
fn cron_in_a_named_zone_across_dst_transitions() {
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    for (start, expected) in [
        (
            "2025-03-28T12:00:00Z",
            [
                "2025-03-29T01:30:00Z", // 02:30 CET
                "2025-03-30T01:00:00Z", // 03:00 CEST: 02:30 does not exist that night
                "2025-03-31T00:30:00Z", // 02:30 CEST
            ],
        ),
        (
            "2025-10-25T12:00:00Z",
            [
                "2025-10-26T00:30:00Z", // 02:30 CEST, the first of the two 02:30s
                "2025-10-27T01:30:00Z", // 02:30 CET (not 01:30 UTC on the 26th)
                "2025-10-28T01:30:00Z",
            ],
        ),
    ] {
        let mut sim = Sim::new();
        sim.now = at(start);
        sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 2))));
        sim.connect_all();
        create(
            &mut sim,
            "nightly",
            json!({"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}),
        );
        let mut created = Vec::new();
        for n in 1..=3 {
            let due = next_run(&sim, "nightly").expect("a next run");
            assert_eq!(due, at(expected[n - 1]), "run {n} from {start}");
            // The tick before does nothing, the tick at the due time creates the job.
            sim.now = due - Duration::seconds(1);
            sim.tick();
            sim.now = due;
            sim.tick();
            let job = format!("nightly:job-{n}");
            created.push(sim.job_view(&job).creation_time);
            run_to_completion(&mut sim, &job);
        }
        assert_eq!(created, expected.map(at));
    }
}

/// Create, PATCH and PUT check the schedule and the job specification; a refused input
/// changes nothing (the harness compares the whole state).
#[test]
fn bad_schedules_are_refused_with_the_property_named() {
    let mut sim = sim();
    let refuse = |sim: &mut Sim, body: Value| {
        sim.refused(Input::CreateJobSchedule(Box::new(job_schedule(body))))
    };
    let property = |e: CoreError| match e {
        CoreError::InvalidProperty {
            property, reason, ..
        } => format!("{property}: {reason}"),
        CoreError::MissingProperty(p) => format!("missing {p}"),
        other => panic!("unexpected {other:?}"),
    };
    let spec = json!({"poolInfo": {"poolId": "p"}});
    let e = refuse(
        &mut sim,
        json!({"id": "s", "schedule": {}, "jobSpecification": {}}),
    );
    assert_eq!(property(e), "missing jobSpecification.poolInfo");
    let e = refuse(
        &mut sim,
        json!({"id": "s", "schedule": {}, "jobSpecification": {"poolInfo": {}}}),
    );
    assert_eq!(property(e), "missing jobSpecification.poolInfo.poolId");
    let e = refuse(
        &mut sim,
        json!({"id": "s", "schedule": {}, "jobSpecification": {"poolInfo": {"poolId": "p"}, "priority": 5000}}),
    );
    assert!(property(e).starts_with("jobSpecification.priority"));
    let e = refuse(&mut sim, json!({"id": "s", "jobSpecification": spec}));
    assert_eq!(property(e), "missing schedule");
    let e = refuse(
        &mut sim,
        json!({"id": "s", "schedule": {"cron": "0 3 * * *", "recurrenceInterval": "PT1H"}, "jobSpecification": spec}),
    );
    assert!(property(e).contains("mutually exclusive"));
    let e = refuse(
        &mut sim,
        json!({"id": "s", "schedule": {"cron": "0 3 * 13 *"}, "jobSpecification": spec}),
    );
    assert!(
        property(e).starts_with("schedule.cron: field 4 (month) '13' at column 7"),
        "names the field"
    );
    let e = refuse(
        &mut sim,
        json!({"id": "s", "schedule": {"cron": "0 0 30 2 *"}, "jobSpecification": spec}),
    );
    assert!(property(e).contains("matches no date"));
    let e = refuse(
        &mut sim,
        json!({"id": "s", "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Atlantis"}, "jobSpecification": spec}),
    );
    assert!(property(e).starts_with("schedule.timeZone"));
    let e = refuse(
        &mut sim,
        json!({"id": "s:1", "schedule": {}, "jobSpecification": spec}),
    );
    assert!(property(e).starts_with("id"));

    // Jobs and job schedules share their ids.
    sim.ok(Input::CreateJob(Box::new(simple_job("taken", "p"))));
    assert_eq!(
        refuse(
            &mut sim,
            json!({"id": "TAKEN", "schedule": {}, "jobSpecification": spec})
        ),
        CoreError::JobWithSameIdExists("TAKEN".into())
    );
    create(
        &mut sim,
        "s",
        json!({"doNotRunUntil": "2030-01-01T00:00:00Z"}),
    );
    assert_eq!(
        sim.refused(Input::CreateJob(Box::new(simple_job("S", "p")))),
        CoreError::JobScheduleWithSameIdExists("S".into())
    );
    assert_eq!(
        refuse(
            &mut sim,
            json!({"id": "S", "schedule": {}, "jobSpecification": spec})
        ),
        CoreError::JobScheduleExists("S".into())
    );

    // Updates are checked the same way.
    let update = |v: Value, replace: bool| Input::UpdateJobSchedule {
        id: "s".into(),
        update: Box::new(serde_json::from_value(v).unwrap()),
        replace,
    };
    let e = sim.refused(update(json!({"schedule": {"cron": "61 * * * *"}}), false));
    assert!(property(e).starts_with("schedule.cron: field 1 (minute)"));
    let e = sim.refused(update(json!({"jobSpecification": {}}), false));
    assert_eq!(property(e), "missing jobSpecification.poolInfo");
    let e = sim.refused(update(json!({"schedule": {}}), true));
    assert_eq!(property(e), "missing jobSpecification");
    assert_eq!(
        sim.refused(Input::DisableJobSchedule { id: "nope".into() }),
        CoreError::JobScheduleNotFound("nope".into())
    );
}

/// PATCH changes what it names; a new `schedule` takes effect from now. PUT replaces every
/// settable property. Conditional headers guard the change.
#[test]
fn update_and_replace() {
    let mut sim = sim();
    let far = "2030-01-01T00:00:00Z";
    sim.ok(Input::CreateJobSchedule(Box::new(job_schedule(json!({
        "id": "s",
        "schedule": {"doNotRunUntil": far},
        "jobSpecification": {"poolInfo": {"poolId": "p"}, "priority": 1},
        "metadata": [{"name": "team", "value": "render"}],
    })))));
    let etag = sim.schedule_view("s").e_tag;
    sim.advance(5);
    let patch = |v: Value| Input::UpdateJobSchedule {
        id: "s".into(),
        update: Box::new(serde_json::from_value(v).unwrap()),
        replace: false,
    };
    sim.ok(patch(
        json!({"jobSpecification": {"poolInfo": {"poolId": "p"}, "priority": 7}}),
    ));
    let s = sim.schedule_view("s");
    assert_eq!(s.job_specification.priority, Some(7));
    assert_eq!(s.metadata.len(), 1, "PATCH keeps what it does not name");
    assert_eq!(s.last_modified, sim.now);
    assert_ne!(s.e_tag, etag);

    // A stale ETag is refused.
    let guarded = Input::Conditional {
        target: Target::JobSchedule("s".into()),
        cond: Precondition {
            if_match: Some(etag),
            ..Default::default()
        },
        input: Box::new(Input::DisableJobSchedule { id: "s".into() }),
    };
    assert_eq!(sim.refused(guarded), CoreError::ConditionNotMet);

    // A new schedule counts from now: due at once here.
    sim.ok(patch(json!({"schedule": {"recurrenceInterval": "PT1H"}})));
    assert_eq!(sim.schedule_jobs("s"), ["s:job-1"]);
    assert_eq!(sim.job_view("s:job-1").priority, 7);
    assert_eq!(next_run(&sim, "s"), Some(sim.now + Duration::hours(1)));

    // PUT: metadata not given is cleared; the schedule given replaces the old one.
    sim.ok(Input::UpdateJobSchedule {
        id: "s".into(),
        update: Box::new(
            serde_json::from_value(json!({
                "schedule": {"doNotRunUntil": far},
                "jobSpecification": {"poolInfo": {"poolId": "p"}},
            }))
            .unwrap(),
        ),
        replace: true,
    });
    let s = sim.schedule_view("s");
    assert!(s.metadata.is_empty());
    assert_eq!(s.job_specification.priority, None);
    assert_eq!(
        s.execution_info.next_run_time.map(iso).as_deref(),
        Some("2030-01-01T00:00:00.0000000Z")
    );
    assert_eq!(
        sim.job_view("s:job-1").priority,
        7,
        "jobs already created keep their specification"
    );
}

/// Replaying the journal of a busy run of schedules gives the same state and the same
/// effects, and so does continuing from a snapshot.
#[test]
fn replay_of_a_journal_with_schedules_gives_the_same_state() {
    let mut sim = sim();
    create(
        &mut sim,
        "r",
        json!({"recurrenceInterval": minutes(10), "startWindow": minutes(3)}),
    );
    create(
        &mut sim,
        "c",
        json!({"cron": "*/15 * * * *", "timeZone": "America/New_York"}),
    );
    create(&mut sim, "o", json!({}));
    keep_busy(&mut sim, "r:job-1");
    for step in 0..90 {
        sim.advance(60);
        sim.tick();
        if step % 7 == 0 {
            let runs: Vec<u64> = sim.runs.keys().copied().collect();
            for r in runs {
                sim.finish(r, step % 2);
            }
        }
        for s in ["c", "r"] {
            if let Some(recent) = sim.schedule_view(s).execution_info.recent_job {
                let id = recent.id.unwrap();
                if sim.job_view(&id).state == JobState::Active && sim.tasks(&id).is_empty() {
                    sim.ok(add(&id, vec![simple_task("t")]));
                }
            }
        }
        if step == 40 {
            sim.ok(Input::DisableJobSchedule { id: "c".into() });
        }
        if step == 55 {
            sim.ok(Input::EnableJobSchedule { id: "c".into() });
        }
        if step == 70 {
            sim.ok(Input::TerminateJobSchedule { id: "r".into() });
            sim.ok(Input::DeleteJobSchedule { id: "o".into() });
        }
    }
    assert!(sim.schedule_jobs("c").len() >= 4);
    let view = |core: &Core| {
        let schedules = core
            .list_job_schedules(None, usize::MAX, &urls(), &|_| true)
            .items;
        json!({"all": render_all(core), "schedules": schedules})
    };
    let mut replayed = Core::new(Limits::default());
    replay_into(&mut replayed, &sim.entries());
    assert_eq!(view(&replayed), view(&sim.core));

    // A snapshot taken now continues exactly like the original.
    let mut restored = Sim::from_core(snapshot(&sim.core), sim.now);
    for s in [&mut sim, &mut restored] {
        s.advance(3600);
        s.ok(Input::Tick);
    }
    assert_eq!(view(&restored.core), view(&sim.core));
}
