//! Task directories on the nodes: `constraints.retentionTime` ("the minimum time to retain the
//! Task directory on the Compute Node where it ran, from the time it completes execution ...
//! The default is 7 days, i.e. the Task directory will be retained for 7 days unless the
//! Compute Node is removed or the Job is deleted"), and task and job deletion.

use openbatch_api::models::{JobState, TaskState};
use openbatch_core::{Core, Input, Limits};
use serde_json::{json, Value};

use crate::common::*;

/// Pool `p` of `nodes` connected one-slot nodes, and job `j` on it.
fn setup(nodes: i32, job_extra: Value) -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", nodes, 1))));
    sim.connect_all();
    let mut body = json!({"id": "j", "poolInfo": {"poolId": "p"}});
    body.as_object_mut()
        .unwrap()
        .extend(job_extra.as_object().unwrap().clone());
    sim.ok(Input::CreateJob(Box::new(job(body))));
    sim
}

fn with_retention(id: &str, retention: &str) -> openbatch_api::models::TaskCreate {
    task(json!({"id": id, "commandLine": "/bin/true", "constraints": {"retentionTime": retention}}))
}

fn dir(job: &str, task: Option<&str>) -> TaskDirRef {
    TaskDirRef {
        job_id: job.into(),
        task_id: task.map(Into::into),
    }
}

fn path(node: &str, p: &str) -> (String, String) {
    (node.to_string(), p.to_string())
}

/// The directory goes when the retention time has passed since the task completed, and not a
/// second before; with no retention time set, after 7 days. The agent's answer ends the
/// obligation: later ticks ask for nothing.
#[test]
fn retention_expiry_deletes_the_directory_then_and_not_before() {
    let mut sim = setup(1, json!({}));
    sim.ok(add(
        "j",
        vec![with_retention("short", "PT1H"), simple_task("default")],
    ));
    let node = sim.node_of("j", "short");
    sim.advance(10);
    sim.finish_task("j", "short", 0);
    sim.advance(5);
    sim.finish_task("j", "default", 1);
    let done = sim.now;

    sim.advance(3600 - 5 - 1);
    sim.tick();
    assert!(sim.last_dir_deletes().is_empty(), "one second early");
    sim.advance(1);
    sim.tick();
    assert_eq!(
        sim.last_dir_deletes(),
        vec![path(&node, "workitems/j/job-1/short")]
    );
    assert!(sim.last.len() == 1, "nothing else: {:?}", sim.last);
    // The task itself stays, completed; only its directory goes.
    assert_eq!(sim.task_state("j", "short"), TaskState::Completed);
    sim.dirs_deleted(&node, vec![dir("j", Some("short"))]);
    sim.advance(60);
    let quiet = sim.core.clone().apply(Input::Tick, sim.now).unwrap();
    assert!(!quiet.changed && quiet.effects.is_empty());

    // The default: 7 days after completion.
    sim.now = done + chrono::Duration::days(7) - chrono::Duration::seconds(1);
    sim.tick();
    assert!(sim.last_dir_deletes().is_empty());
    sim.advance(1);
    sim.tick();
    assert_eq!(
        sim.last_dir_deletes(),
        vec![path(&node, "workitems/j/job-1/default")]
    );
}

/// Deleting a completed task deletes its directory at once; deleting a running task kills it
/// first, and the directory goes once the node reports the kill, never under the run.
#[test]
fn task_delete_deletes_the_directory_on_the_node_it_ran_on() {
    let mut sim = setup(2, json!({}));
    sim.ok(add("j", simple_tasks("t", 2)));
    let n1 = sim.node_of("j", "t1");
    let n2 = sim.node_of("j", "t2");
    assert_ne!(n1, n2);
    sim.advance(1);
    sim.finish_task("j", "t1", 0);
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t1".into(),
    });
    assert_eq!(
        sim.last_dir_deletes(),
        vec![path(&n1, "workitems/j/job-1/t1")]
    );

    let run = sim.run_of("j", "t2");
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "T2".into(),
    });
    assert_eq!(sim.last_kills(), vec![run]);
    assert!(sim.last_dir_deletes().is_empty(), "not under the run");
    sim.advance(1);
    sim.finish(run, 137);
    assert_eq!(
        sim.last_dir_deletes(),
        vec![path(&n2, "workitems/j/job-1/t2")]
    );
}

/// A task retried on another node has a directory on each node it ran on: all of them go.
#[test]
fn every_node_an_attempt_ran_on_is_cleaned() {
    let mut sim = setup(2, json!({}));
    sim.ok(add(
        "j",
        vec![task(json!({"id": "t", "commandLine": "x",
            "constraints": {"maxTaskRetryCount": 1, "retentionTime": "PT10M"}}))],
    ));
    let first = sim.node_of("j", "t");
    // The first node takes no new work, so the retry runs on the other one.
    sim.ok(Input::SetNodeScheduling {
        pool: "p".into(),
        node: first.clone(),
        enabled: false,
        option: Some(openbatch_api::models::DisableSchedulingOption::TaskCompletion),
    });
    sim.finish_task("j", "t", 1);
    let second = sim.node_of("j", "t");
    assert_ne!(first, second, "the retry ran elsewhere");
    sim.finish_task("j", "t", 0);
    sim.advance(600);
    sim.tick();
    let mut got = sim.last_dir_deletes();
    got.sort();
    let mut want = vec![
        path(&first, "workitems/j/job-1/t"),
        path(&second, "workitems/j/job-1/t"),
    ];
    want.sort();
    assert_eq!(got, want);
}

/// Deleting a job deletes its whole directory on every node that ran anything of it, after
/// its release tasks have run there (they run in `workitems/<job>/job-1/jobrelease`).
#[test]
fn job_delete_deletes_the_job_directory_after_the_release_tasks() {
    let mut sim = setup(
        2,
        json!({
            "jobPreparationTask": {"commandLine": "prep"},
            "jobReleaseTask": {"commandLine": "release"}
        }),
    );
    sim.ok(add("j", simple_tasks("t", 2)));
    let nodes: Vec<String> = sim.provisioned.clone();
    for n in &nodes {
        let prep = sim
            .runs
            .iter()
            .find(|(_, r)| &r.node == n && r.task == "jobpreparation")
            .map(|(id, _)| *id)
            .unwrap();
        sim.finish(prep, 0);
    }
    sim.finish_task("j", "t1", 0);
    sim.ok(Input::DeleteJob { id: "j".into() });
    assert!(sim.last_dir_deletes().is_empty());
    sim.finish_all(137);
    assert_eq!(sim.job_view("j").state, JobState::Deleting);
    assert!(sim.last_dir_deletes().is_empty(), "release runs first");
    let releases: Vec<u64> = sim.runs.keys().copied().collect();
    assert_eq!(releases.len(), 2);
    sim.finish(releases[0], 0);
    assert!(sim.last_dir_deletes().is_empty(), "one release still runs");
    sim.finish(releases[1], 0);
    assert!(sim.core.job("j", &urls()).is_err(), "the job is gone");
    let mut got = sim.last_dir_deletes();
    got.sort();
    assert_eq!(
        got,
        nodes
            .iter()
            .map(|n| path(n, "workitems/j"))
            .collect::<Vec<_>>()
    );
}

/// A job a job schedule created lives in `workitems/<schedule>/job-<n>`: only that goes.
#[test]
fn a_scheduled_jobs_directory_is_its_own() {
    let mut sim = setup(1, json!({}));
    sim.ok(Input::CreateJobSchedule(Box::new(job_schedule(json!({
        "id": "nightly",
        "schedule": {"recurrenceInterval": "PT1H"},
        "jobSpecification": {"poolInfo": {"poolId": "p"}}
    })))));
    sim.tick();
    sim.ok(add("nightly:job-1", simple_tasks("t", 1)));
    let node = sim.node_of("nightly:job-1", "t1");
    sim.finish_task("nightly:job-1", "t1", 0);
    sim.ok(Input::DeleteJob {
        id: "nightly:job-1".into(),
    });
    assert_eq!(
        sim.last_dir_deletes(),
        vec![path(&node, "workitems/nightly/job-1")]
    );
}

/// Only the latest completion starts the clock: a task reactivated before its retention time
/// passed runs again in the same directory, which is not deleted under the new run, and goes
/// only once the new completion's retention time has passed.
#[test]
fn a_reactivated_task_keeps_its_directory() {
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", vec![with_retention("t", "PT1H")]));
    let node = sim.node_of("j", "t");
    sim.finish_task("j", "t", 2);
    sim.advance(1800);
    sim.ok(Input::ReactivateTask {
        job: "j".into(),
        task: "t".into(),
    });
    assert_eq!(sim.task_state("j", "t"), TaskState::Running);
    sim.advance(1800);
    sim.tick();
    assert!(sim.last_dir_deletes().is_empty(), "the new run uses it");
    sim.advance(1800);
    sim.finish_task("j", "t", 0);
    sim.advance(3599);
    sim.tick();
    assert!(sim.last_dir_deletes().is_empty());
    sim.advance(1);
    sim.tick();
    assert_eq!(
        sim.last_dir_deletes(),
        vec![path(&node, "workitems/j/job-1/t")]
    );
}

/// A task deleted and added again under the same id before its node heard of the deletion:
/// the new run takes the directory over, and the old obligation is dropped rather than
/// deleting the new run's files when it ends.
#[test]
fn a_new_run_of_the_same_task_takes_the_directory_over() {
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", simple_tasks("t", 1)));
    let node = sim.node_of("j", "t1");
    sim.finish_task("j", "t1", 0);
    sim.disconnect(&node);
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t1".into(),
    });
    assert!(sim.last_dir_deletes().is_empty(), "the node is away");
    sim.ok(add("j", simple_tasks("t", 1)));
    // Back: the new run starts there at once, in the old directory, and the deletion of the
    // old task's directory is dropped rather than sent after the run (its agent would refuse
    // it, or worse, delete the new run's files).
    sim.connect(&node);
    assert_eq!(sim.last_run_tasks(), vec![(node.clone(), "t1".to_string())]);
    assert!(sim.last_dir_deletes().is_empty());
    sim.settle(|_| {});
    assert_eq!(sim.task_state("j", "t1"), TaskState::Completed);
    sim.disconnect(&node);
    sim.connect(&node);
    assert!(sim.last_dir_deletes().is_empty());
    assert!(sim.deleted_dirs.is_empty());
}

/// A node that is away when a directory expires gets the deletion when it reconnects, again
/// after every reconnect until its agent answers, and never once it has.
#[test]
fn an_offline_node_gets_its_deletions_when_it_reconnects() {
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", vec![with_retention("t", "PT30S")]));
    let node = sim.node_of("j", "t");
    sim.finish_task("j", "t", 0);
    // Away for less than the lost-node timeout (60 s here).
    sim.disconnect(&node);
    sim.advance(30);
    let a = sim.tick();
    assert!(a.changed, "the expiry is recorded");
    assert!(sim.last_dir_deletes().is_empty(), "nobody to tell");
    sim.connect(&node);
    assert_eq!(
        sim.last_dir_deletes(),
        vec![path(&node, "workitems/j/job-1/t")]
    );
    // The message was lost with the connection: asked again.
    sim.disconnect(&node);
    sim.connect(&node);
    assert_eq!(
        sim.last_dir_deletes(),
        vec![path(&node, "workitems/j/job-1/t")]
    );
    sim.dirs_deleted(&node, vec![dir("j", Some("t"))]);
    sim.disconnect(&node);
    sim.connect(&node);
    assert!(sim.last_dir_deletes().is_empty());
    // An answer for something not owed changes nothing.
    let again = sim
        .core
        .clone()
        .apply(
            Input::TaskDirsDeleted {
                node: node.clone(),
                dirs: vec![dir("j", Some("t"))],
            },
            sim.now,
        )
        .unwrap();
    assert!(!again.changed);
}

/// After a restart (a snapshot, or the journal replayed), pending expiries still happen at
/// their time, and deletions owed by a node are sent when it reconnects.
#[test]
fn retention_survives_a_restart() {
    let mut sim = setup(2, json!({}));
    sim.ok(add(
        "j",
        vec![with_retention("a", "PT30S"), with_retention("b", "PT20M")],
    ));
    let na = sim.node_of("j", "a");
    let nb = sim.node_of("j", "b");
    sim.finish_task("j", "a", 0);
    sim.finish_task("j", "b", 0);
    sim.disconnect(&na);
    sim.advance(30);
    sim.tick();
    assert!(sim.last_dir_deletes().is_empty());
    let entries = sim.entries();

    // From a snapshot, and from the journal alone.
    let mut replayed = Core::new(Limits::default());
    replay_into(&mut replayed, &entries);
    for core in [snapshot(&sim.core), replayed] {
        let mut after = Sim::from_core(core, sim.now + chrono::Duration::seconds(5));
        after.provisioned = sim.provisioned.clone();
        after.ok(Input::ServerRestarted);
        after.connect(&nb);
        assert!(after.last_dir_deletes().is_empty(), "b has time left");
        after.connect(&na);
        assert_eq!(
            after.last_dir_deletes(),
            vec![path(&na, "workitems/j/job-1/a")]
        );
        after.now = sim.now + chrono::Duration::seconds(1200 - 30);
        after.tick();
        assert_eq!(
            after.last_dir_deletes(),
            vec![path(&nb, "workitems/j/job-1/b")]
        );
    }
}

/// A node removed from the pool takes its disk with it: nothing is owed any more, and an
/// expiry later asks nothing of it.
#[test]
fn a_removed_node_drops_the_obligation() {
    let mut sim = setup(2, json!({}));
    sim.ok(add(
        "j",
        vec![with_retention("a", "PT10M"), with_retention("b", "PT10M")],
    ));
    let na = sim.node_of("j", "a");
    let nb = sim.node_of("j", "b");
    sim.finish_task("j", "a", 0);
    sim.finish_task("j", "b", 0);
    // `a`'s node is away when its task is deleted, then removed before it returns.
    sim.disconnect(&na);
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "a".into(),
    });
    sim.ok(Input::RemoveNodes {
        pool: "p".into(),
        nodes: vec![na.clone(), nb.clone()],
        option: None,
    });
    for n in sim.outstanding_removals() {
        sim.removed(&n);
    }
    assert!(!sim.known_nodes().contains(&na) && !sim.known_nodes().contains(&nb));
    sim.advance(600);
    sim.tick();
    assert!(sim.last_dir_deletes().is_empty());
    sim.connect_all();
    assert!(sim.deleted_dirs.is_empty(), "{:?}", sim.deleted_dirs);
}
