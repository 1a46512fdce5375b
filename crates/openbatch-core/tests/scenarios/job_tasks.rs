//! The job's own tasks, as the Azure Batch docs describe them ("Job manager task", "Run job
//! preparation and job release tasks on Batch compute nodes", and the REST reference of
//! `BatchJobManagerTask`, `BatchJobPreparationTask`, `BatchJobReleaseTask`):
//!
//! - the job manager task is a task of the job, started with the job ahead of its other tasks;
//!   `killJobOnCompletion` ends the job (`JMComplete`); `runExclusive` keeps its node to itself;
//! - the preparation task runs on a node before the job's first task there (the task is
//!   `preparing` meanwhile), once per node; with `waitForSuccess` a failure keeps the job's tasks
//!   off that node; a reboot reruns it unless `rerunOnNodeRebootAfterSuccess` is false;
//! - the release task runs, when the job ends, on each node that ran the preparation task, and
//!   the job stays `terminating` until they are done;
//! - node loss, agent reconnects, journal replay and snapshots in the middle of all this.

use openbatch_api::models::{
    ExecutionResult, JobPreparationAndReleaseTaskStatus, JobPreparationTaskState,
    JobReleaseTaskState, JobState, NodeDeallocationOption, NodeState, TaskState,
};
use openbatch_core::{CoreError, Input, RunId};
use serde_json::{json, Value};

use crate::common::*;

/// Pool `p` of `nodes` connected nodes with `slots` slots each.
fn pool_of(nodes: i32, slots: i32) -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", nodes, slots))));
    sim.connect_all();
    sim
}

/// Job `id` on pool `p`, with the body's extras merged in.
fn create_job(sim: &mut Sim, id: &str, extra: Value) -> openbatch_core::Applied {
    let mut body = json!({"id": id, "poolInfo": {"poolId": "p"}});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    sim.ok(Input::CreateJob(Box::new(job(body))))
}

fn prep_and_release() -> Value {
    json!({
        "jobPreparationTask": {"commandLine": "/bin/sh -c 'echo prep'"},
        "jobReleaseTask": {"commandLine": "/bin/sh -c 'echo release'"}
    })
}

fn node(sim: &Sim, i: usize) -> String {
    sim.provisioned[i].clone()
}

/// The live run of `task` of `job` on `node` (preparation and release run once per node).
fn run_on(sim: &Sim, job: &str, task: &str, node: &str) -> RunId {
    sim.runs
        .iter()
        .find(|(_, r)| r.job == job && r.task == task && r.node == node && !r.killed)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("{job}/{task} does not run on {node}"))
}

fn status(sim: &Sim, job: &str) -> Vec<JobPreparationAndReleaseTaskStatus> {
    sim.core
        .list_job_prep_release_status(job, None, usize::MAX, &urls(), &|_| true)
        .expect("job exists")
        .items
}

fn status_of(sim: &Sim, job: &str, node: &str) -> JobPreparationAndReleaseTaskStatus {
    status(sim, job)
        .into_iter()
        .find(|s| s.node_id.as_deref() == Some(node))
        .unwrap_or_else(|| panic!("no preparation status for {node}"))
}

/// The agent reports the kill of the run of `task` (the core asked for it).
trait KilledExt {
    fn finish_task_killed(&mut self, job: &str, task: &str);
}

impl KilledExt for Sim {
    fn finish_task_killed(&mut self, job: &str, task: &str) {
        let run = self
            .runs
            .iter()
            .find(|(_, r)| r.job == job && r.task == task && r.killed)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("{job}/{task} was not killed"));
        self.finish(run, 137);
    }
}

fn terminate_reason(sim: &Sim, job: &str) -> Option<String> {
    sim.job_view(job).execution_info.unwrap().terminate_reason
}

// --- job manager --------------------------------------------------------------------------------

/// "The Job Manager Task is automatically started when the Job is created", ahead of the job's
/// other tasks, and with `killJobOnCompletion` (default true) "when the Job Manager Task
/// completes, the Batch service marks the Job as complete. If any Tasks are still running at
/// this time (other than Job Release), those Tasks are terminated."
#[test]
fn the_job_manager_runs_first_and_its_completion_ends_the_job() {
    let mut sim = pool_of(2, 2);
    create_job(
        &mut sim,
        "j",
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true", "runExclusive": false}}),
    );
    assert_eq!(
        sim.last_run_tasks(),
        vec![(node(&sim, 0), "jm".to_string())]
    );
    // It is a task of the job: listed and counted.
    assert_eq!(sim.task_state("j", "jm"), TaskState::Running);
    assert_eq!(sim.counts("j").running, 1);
    sim.ok(add("j", simple_tasks("t", 4)));
    assert_eq!(sim.counts("j").running, 4);
    sim.finish_task("j", "jm", 0);
    assert_eq!(sim.job_view("j").state, JobState::Terminating);
    assert_eq!(terminate_reason(&sim, "j").as_deref(), Some("JMComplete"));
    assert_eq!(
        sim.last_kills().len(),
        3,
        "the other running tasks are terminated"
    );
    sim.finish_all(137);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(sim.task_state("j", "t4"), TaskState::Active);
}

/// A failed job manager task is retried like any task; its final completion, failed or not,
/// ends the job. With `killJobOnCompletion: false` its completion changes nothing.
#[test]
fn a_job_manager_is_retried_and_kill_job_on_completion_false_leaves_the_job() {
    let mut sim = pool_of(1, 1);
    create_job(
        &mut sim,
        "j",
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/false",
                                  "constraints": {"maxTaskRetryCount": 1}}}),
    );
    sim.finish_task("j", "jm", 1);
    assert_eq!(sim.task_view("j", "jm").execution_info.retry_count, 1);
    assert_eq!(sim.job_view("j").state, JobState::Active);
    sim.finish_task("j", "jm", 1);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(terminate_reason(&sim, "j").as_deref(), Some("JMComplete"));

    create_job(
        &mut sim,
        "k",
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true",
                                  "killJobOnCompletion": false}}),
    );
    sim.finish_task("k", "jm", 0);
    assert_eq!(sim.job_view("k").state, JobState::Active);
    sim.ok(add("k", simple_tasks("t", 1)));
    assert_eq!(sim.task_state("k", "t1"), TaskState::Running);
}

/// `runExclusive` (default true): "no other Tasks will run on the same Node for as long as the
/// Job Manager is running". It goes to a node that runs nothing, takes all of its slots, and
/// waits while every node is busy.
#[test]
fn an_exclusive_job_manager_has_its_node_to_itself() {
    let mut sim = pool_of(2, 2);
    create_job(&mut sim, "other", json!({}));
    sim.ok(add("other", simple_tasks("o", 1)));
    let busy = sim.node_of("other", "o1");
    create_job(
        &mut sim,
        "j",
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true",
                                  "killJobOnCompletion": false}}),
    );
    let jm_node = sim.node_of("j", "jm");
    assert_ne!(jm_node, busy, "it waits for no one: the idle node");
    assert_eq!(sim.node_view(&jm_node).running_task_slots_count, 2);
    // Its own job's tasks go elsewhere (one slot is left on the other node).
    sim.ok(add("j", simple_tasks("t", 2)));
    assert_eq!(sim.node_of("j", "t1"), busy);
    assert_eq!(sim.task_state("j", "t2"), TaskState::Active);
    sim.finish_task("j", "jm", 0);
    assert_eq!(sim.node_of("j", "t2"), jm_node);

    // With every node busy, a new exclusive job manager waits for an idle one.
    create_job(
        &mut sim,
        "k",
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true"}}),
    );
    assert_eq!(sim.task_state("k", "jm"), TaskState::Active);
    sim.finish_task("j", "t2", 0);
    assert_eq!(sim.task_state("k", "jm"), TaskState::Running);
    assert_eq!(sim.node_of("k", "jm"), jm_node);
}

/// `allowLowPriorityNode: false` keeps the job manager on dedicated nodes.
#[test]
fn a_job_manager_that_may_not_use_spot_nodes_waits_for_a_dedicated_one() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetLowPriorityNodes": 1
    })))));
    sim.connect_all();
    create_job(
        &mut sim,
        "j",
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true",
                                  "allowLowPriorityNode": false}}),
    );
    assert_eq!(sim.task_state("j", "jm"), TaskState::Active);
    create_job(
        &mut sim,
        "k",
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true"}}),
    );
    assert_eq!(sim.task_state("k", "jm"), TaskState::Running);
}

// --- job preparation ----------------------------------------------------------------------------

/// "Before a job's tasks run, the job preparation task runs on all compute nodes scheduled to
/// run at least one task": once per node, while the task waits in `preparing` ("The Task has
/// been assigned to a Compute Node, but is waiting for a required Job Preparation Task to
/// complete on the Compute Node").
#[test]
fn preparation_runs_once_per_node_before_the_jobs_first_task_there() {
    let mut sim = pool_of(2, 2);
    create_job(&mut sim, "j", prep_and_release());
    assert!(
        sim.last_run_tasks().is_empty(),
        "nothing runs before a task"
    );
    sim.ok(add("j", simple_tasks("t", 4)));
    let (n0, n1) = (node(&sim, 0), node(&sim, 1));
    let mut started = sim.last_run_tasks();
    started.sort();
    assert_eq!(
        started,
        vec![
            (n0.clone(), "jobpreparation".to_string()),
            (n1.clone(), "jobpreparation".to_string())
        ],
        "only the preparation tasks start"
    );
    assert_eq!(sim.tasks_in("j", TaskState::Preparing).len(), 4);
    assert_eq!(sim.counts("j").running, 4, "preparing counts as running");
    assert_eq!(sim.node_state(&n0), NodeState::Running);
    assert_eq!(
        status_of(&sim, "j", &n0)
            .job_preparation_task_execution_info
            .unwrap()
            .state,
        JobPreparationTaskState::Running
    );

    let prep = run_on(&sim, "j", "jobpreparation", &n0);
    sim.finish(prep, 0);
    let mut now_running: Vec<String> = sim.last_run_tasks().into_iter().map(|(_, t)| t).collect();
    now_running.sort();
    assert_eq!(now_running.len(), 2, "the tasks on that node start");
    for t in &now_running {
        assert_eq!(sim.task_state("j", t), TaskState::Running);
        assert_eq!(sim.node_of("j", t), n0);
    }
    let info = status_of(&sim, "j", &n0)
        .job_preparation_task_execution_info
        .unwrap();
    assert_eq!(info.state, JobPreparationTaskState::Completed);
    assert_eq!(info.result, Some(ExecutionResult::Success));
    assert_eq!(
        info.task_root_directory.as_deref(),
        Some("workitems/j/job-1/jobpreparation")
    );

    // The next task on that node does not wait: preparation ran there.
    sim.finish_task("j", &now_running[0], 0);
    sim.ok(add("j", simple_tasks("u", 1)));
    assert_eq!(sim.task_state("j", "u1"), TaskState::Running);
    assert_eq!(sim.last_run_tasks(), vec![(n0.clone(), "u1".to_string())]);
}

/// `waitForSuccess` (default true): "If the Task has still not completed successfully after all
/// retries, then the Batch service will not schedule Tasks of the Job to the Node. The Node
/// remains active and eligible to run Tasks of other Jobs"; the waiting task "will return to
/// active and will be eligible to be assigned to a different Compute Node".
#[test]
fn a_failed_preparation_keeps_the_jobs_tasks_off_that_node() {
    let mut sim = pool_of(2, 1);
    create_job(
        &mut sim,
        "j",
        json!({"jobPreparationTask": {"commandLine": "/bin/false",
                                      "constraints": {"maxTaskRetryCount": 1}}}),
    );
    sim.ok(add("j", simple_tasks("t", 2)));
    let (n0, n1) = (node(&sim, 0), node(&sim, 1));
    let on_n0 = if sim.node_of("j", "t1") == n0 {
        "t1"
    } else {
        "t2"
    };
    sim.finish(run_on(&sim, "j", "jobpreparation", &n0), 1);
    let info = status_of(&sim, "j", &n0)
        .job_preparation_task_execution_info
        .unwrap();
    assert_eq!(
        (info.state, info.retry_count),
        (JobPreparationTaskState::Running, 1),
        "retried"
    );
    assert_eq!(sim.task_state("j", on_n0), TaskState::Preparing);
    sim.finish(run_on(&sim, "j", "jobpreparation", &n0), 1);
    let info = status_of(&sim, "j", &n0)
        .job_preparation_task_execution_info
        .unwrap();
    assert_eq!(info.state, JobPreparationTaskState::Completed);
    assert_eq!(info.result, Some(ExecutionResult::Failure));
    assert_eq!(info.exit_code, Some(1));
    let t = sim.task_view("j", on_n0);
    assert_eq!(t.state, TaskState::Active);
    assert_eq!(t.execution_info.requeue_count, 1);
    assert_eq!(sim.node_state(&n0), NodeState::Idle);

    // The other node's preparation succeeds: both tasks run there, one after the other.
    sim.finish(run_on(&sim, "j", "jobpreparation", &n1), 0);
    let other = if on_n0 == "t1" { "t2" } else { "t1" };
    assert_eq!(sim.task_state("j", other), TaskState::Running);
    sim.finish_task("j", other, 0);
    assert_eq!(sim.task_state("j", on_n0), TaskState::Running);
    assert_eq!(sim.node_of("j", on_n0), n1);
    // Other jobs still use the node.
    create_job(&mut sim, "k", json!({}));
    sim.ok(add("k", simple_tasks("x", 1)));
    assert_eq!(sim.node_of("k", "x1"), n0);
}

/// `waitForSuccess: false`: "other Tasks of the Job can start executing on the Compute Node
/// while the Job Preparation Task is still running; and even if the Job Preparation Task
/// fails, new Tasks will continue to be scheduled on the Compute Node."
#[test]
fn without_wait_for_success_tasks_start_beside_the_preparation() {
    let mut sim = pool_of(1, 2);
    create_job(
        &mut sim,
        "j",
        json!({"jobPreparationTask": {"commandLine": "/bin/false", "waitForSuccess": false}}),
    );
    sim.ok(add("j", simple_tasks("t", 1)));
    let mut started: Vec<String> = sim.last_run_tasks().into_iter().map(|(_, t)| t).collect();
    started.sort();
    assert_eq!(started, vec!["jobpreparation", "t1"]);
    sim.finish_task("j", "jobpreparation", 1);
    sim.finish_task("j", "t1", 0);
    sim.ok(add("j", simple_tasks("u", 1)));
    assert_eq!(sim.task_state("j", "u1"), TaskState::Running);
    assert_eq!(
        sim.last_run_tasks().len(),
        1,
        "preparation does not run again"
    );
}

fn reboot(sim: &mut Sim, node: &str, reimage: bool) {
    sim.ok(Input::RestartNode {
        pool: "p".into(),
        node: node.into(),
        option: None,
        reimage,
    });
    sim.connect(node);
    assert_eq!(sim.node_state(node), NodeState::Idle);
}

/// "If the Node is rebooted, the Job Preparation Task is run again on the Compute Node before
/// scheduling any other Task of the Job, if rerunOnNodeRebootAfterSuccess is true or if the Job
/// Preparation Task did not previously complete. If the Node is reimaged, the Job Preparation
/// Task is run again before scheduling any Task of the Job."
#[test]
fn reboots_and_reimages_rerun_preparation_as_documented() {
    let mut sim = pool_of(1, 2);
    create_job(
        &mut sim,
        "a",
        json!({"jobPreparationTask": {"commandLine": "/bin/true"}}),
    );
    create_job(
        &mut sim,
        "b",
        json!({"jobPreparationTask": {"commandLine": "/bin/true",
                                      "rerunOnNodeRebootAfterSuccess": false}}),
    );
    let n0 = node(&sim, 0);
    for j in ["a", "b"] {
        sim.ok(add(j, simple_tasks("t", 1)));
        sim.finish_task(j, "jobpreparation", 0);
        sim.finish_task(j, "t1", 0);
    }
    reboot(&mut sim, &n0, false);
    sim.ok(add("a", simple_tasks("u", 1)));
    assert_eq!(sim.task_state("a", "u1"), TaskState::Preparing);
    sim.ok(add("b", simple_tasks("u", 1)));
    assert_eq!(sim.task_state("b", "u1"), TaskState::Running);
    sim.finish_task("a", "jobpreparation", 0);
    sim.finish_all(0);

    reboot(&mut sim, &n0, true);
    sim.ok(add("b", simple_tasks("v", 1)));
    assert_eq!(sim.task_state("b", "v1"), TaskState::Preparing);
}

// --- job release --------------------------------------------------------------------------------

/// "A job release task runs once the job is completed, on each node in the pool that ran a job
/// preparation task", and the job is `terminating` ("the terminate operation is still in
/// progress (for example, because Job Release Tasks are running)") until they are done.
#[test]
fn release_runs_on_each_node_that_ran_preparation_and_the_job_waits_for_it() {
    let mut sim = pool_of(3, 1);
    create_job(&mut sim, "j", prep_and_release());
    sim.ok(add("j", simple_tasks("t", 2)));
    let nodes_used: Vec<String> = ["t1", "t2"].iter().map(|t| sim.node_of("j", t)).collect();
    for n in &nodes_used {
        sim.finish(run_on(&sim, "j", "jobpreparation", n), 0);
    }
    sim.ok(Input::TerminateJob {
        id: "j".into(),
        reason: None,
    });
    assert_eq!(sim.last_kills().len(), 2);
    assert!(
        sim.last_run_tasks().is_empty(),
        "release waits for the tasks"
    );
    sim.finish_all(137);
    assert_eq!(sim.job_view("j").state, JobState::Terminating);
    let mut released: Vec<String> = sim
        .last_run_tasks()
        .into_iter()
        .inspect(|(_, t)| assert_eq!(t, "jobrelease"))
        .map(|(n, _)| n)
        .collect();
    released.sort();
    let mut want = nodes_used.clone();
    want.sort();
    assert_eq!(released, want, "only the nodes that ran preparation");
    sim.finish(run_on(&sim, "j", "jobrelease", &want[0]), 0);
    assert_eq!(sim.job_view("j").state, JobState::Terminating);
    sim.finish(run_on(&sim, "j", "jobrelease", &want[1]), 3);
    let j = sim.job_view("j");
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(
        terminate_reason(&sim, "j").as_deref(),
        Some("UserTerminate")
    );
    let list = status(&sim, "j");
    assert_eq!(list.len(), 2);
    let rel = status_of(&sim, "j", &want[1])
        .job_release_task_execution_info
        .unwrap();
    assert_eq!(rel.state, JobReleaseTaskState::Completed);
    assert_eq!(
        (rel.exit_code, rel.result),
        (Some(3), Some(ExecutionResult::Failure))
    );
    assert_eq!(
        rel.task_root_directory.as_deref(),
        Some("workitems/j/job-1/jobrelease")
    );
}

/// `onAllTasksComplete: terminatejob` and deletion end a job through its release tasks too; a
/// preparation still running when the job ends is killed first.
#[test]
fn all_tasks_complete_and_delete_go_through_release() {
    let mut sim = pool_of(1, 1);
    let mut extra = prep_and_release();
    extra["onAllTasksComplete"] = json!("terminatejob");
    create_job(&mut sim, "j", extra);
    sim.ok(add("j", simple_tasks("t", 1)));
    sim.finish_task("j", "jobpreparation", 0);
    sim.finish_task("j", "t1", 0);
    assert_eq!(sim.job_view("j").state, JobState::Terminating);
    assert_eq!(
        terminate_reason(&sim, "j").as_deref(),
        Some("AllTasksComplete")
    );
    sim.finish_task("j", "jobrelease", 0);
    assert_eq!(sim.job_view("j").state, JobState::Completed);

    // Deleted while preparation runs: it is killed, then release runs, then the job goes.
    create_job(&mut sim, "k", prep_and_release());
    sim.ok(add("k", simple_tasks("t", 1)));
    let prep = sim.run_of("k", "jobpreparation");
    sim.ok(Input::DeleteJob { id: "k".into() });
    assert!(sim.last_kills().contains(&prep));
    assert_eq!(sim.job_view("k").state, JobState::Deleting);
    sim.finish(prep, 137);
    assert_eq!(
        sim.last_run_tasks(),
        vec![(node(&sim, 0), "jobrelease".into())]
    );
    sim.finish_task("k", "jobrelease", 0);
    assert!(sim.core.job("k", &urls()).is_err(), "the job is gone");
}

// --- what happens to a waiting task -------------------------------------------------------------

/// A task waiting for preparation was never sent to the agent: terminating or deleting it, or
/// terminating or disabling its job, ends it at once, without a report from the node.
#[test]
fn waiting_tasks_end_without_the_agent() {
    let mut sim = pool_of(1, 3);
    create_job(
        &mut sim,
        "j",
        json!({"jobPreparationTask": {"commandLine": "/bin/sleep 100"}}),
    );
    sim.ok(add("j", simple_tasks("t", 3)));
    assert_eq!(sim.tasks_in("j", TaskState::Preparing).len(), 3);
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "t1".into(),
    });
    let t1 = sim.task_view("j", "t1");
    assert_eq!(t1.state, TaskState::Completed);
    assert_eq!(
        t1.execution_info.failure_info.unwrap().code.as_deref(),
        Some("TaskEnded")
    );
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t2".into(),
    });
    let n0 = node(&sim, 0);
    assert_eq!(sim.node_view(&n0).running_task_slots_count, 1);
    sim.ok(Input::DisableJob {
        id: "j".into(),
        option: openbatch_api::models::DisableJobOption::Requeue,
    });
    assert_eq!(sim.task_state("j", "t3"), TaskState::Active);
    sim.ok(Input::EnableJob { id: "j".into() });
    assert_eq!(sim.task_state("j", "t3"), TaskState::Preparing);
    sim.ok(Input::TerminateJob {
        id: "j".into(),
        reason: Some("stop".into()),
    });
    assert_eq!(sim.task_state("j", "t3"), TaskState::Completed);
    assert_eq!(
        sim.job_view("j").state,
        JobState::Terminating,
        "prep is killed"
    );
    sim.finish_all(137);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(sim.node_state(&n0), NodeState::Idle);
}

// --- nodes and restarts -------------------------------------------------------------------------

/// A node lost while preparing: its waiting tasks are requeued (not retried) and prepared again
/// elsewhere.
#[test]
fn a_node_lost_during_preparation_requeues_its_waiting_tasks() {
    let mut sim = pool_of(2, 1);
    create_job(&mut sim, "j", prep_and_release());
    sim.ok(add("j", simple_tasks("t", 1)));
    let first = sim.node_of("j", "t1");
    sim.lose(&first);
    let t = sim.task_view("j", "t1");
    assert_eq!(t.execution_info.requeue_count, 1);
    assert_eq!(t.execution_info.retry_count, 0);
    assert_eq!(t.state, TaskState::Preparing);
    let second = sim.node_of("j", "t1");
    assert_ne!(first, second);
    sim.finish_task("j", "jobpreparation", 0);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);
}

/// An agent that reconnects still running the preparation keeps its waiting tasks waiting; one
/// that lost it (restarted) runs it again.
#[test]
fn an_agent_reconnecting_with_or_without_the_preparation() {
    let mut sim = pool_of(1, 1);
    create_job(&mut sim, "j", prep_and_release());
    sim.ok(add("j", simple_tasks("t", 1)));
    let n0 = node(&sim, 0);
    let prep = sim.run_of("j", "jobpreparation");
    sim.disconnect(&n0);
    sim.connect(&n0);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Preparing);
    assert!(sim.last_run_tasks().is_empty());
    sim.disconnect(&n0);
    sim.hello(&n0, Vec::new(), Vec::new());
    assert_ne!(
        sim.run_of("j", "jobpreparation"),
        prep,
        "a new preparation run"
    );
    assert_eq!(sim.task_state("j", "t1"), TaskState::Preparing);
    assert_eq!(sim.task_view("j", "t1").execution_info.requeue_count, 1);
    // A preparation that finished while the agent was away is reported on reconnect.
    let prep = sim.run_of("j", "jobpreparation");
    sim.disconnect(&n0);
    let result = sim.result(sim.now, 0);
    sim.runs.remove(&prep);
    sim.hello(&n0, Vec::new(), vec![(prep, result)]);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);
}

fn busy_with_job_tasks(sim: &mut Sim) {
    let mut extra = prep_and_release();
    extra["jobManagerTask"] =
        json!({"id": "jm", "commandLine": "/bin/true", "runExclusive": false});
    extra["jobPreparationTask"]["constraints"] = json!({"maxTaskRetryCount": 1});
    create_job(sim, "j", extra);
    sim.ok(add("j", simple_tasks("t", 5)));
    let n0 = node(sim, 0);
    sim.finish(run_on(sim, "j", "jobpreparation", &n0), 0);
    sim.advance(5);
    let n1 = node(sim, 1);
    sim.finish(run_on(sim, "j", "jobpreparation", &n1), 1);
    sim.finish(run_on(sim, "j", "jobpreparation", &n1), 0);
    sim.advance(5);
    sim.finish_task("j", "t1", 0);
    sim.disconnect(&n1);
    sim.connect(&n1);
    sim.finish_task("j", "jm", 0);
    sim.advance(5);
}

/// The journal replays to the same state, preparation and release included, and a snapshot
/// taken at any point continues to the same place.
#[test]
fn journal_and_snapshots_carry_preparation_and_release() {
    let mut sim = pool_of(2, 2);
    create_job(&mut sim, "j0", json!({})); // shifts run ids and seqs a little
    busy_with_job_tasks(&mut sim);
    sim.finish_all(137);
    assert_eq!(sim.job_view("j").state, JobState::Terminating);
    let n0 = node(&sim, 0);
    sim.finish(run_on(&sim, "j", "jobrelease", &n0), 0);
    let entries = sim.entries();
    let mut replayed = openbatch_core::Core::new(Default::default());
    replay_into(&mut replayed, &entries);
    assert_eq!(render_all(&replayed), render_all(&sim.core));
    let page = |c: &openbatch_core::Core| {
        serde_json::to_value(
            c.list_job_prep_release_status("j", None, usize::MAX, &urls(), &|_| true)
                .unwrap()
                .items,
        )
        .unwrap()
    };
    assert_eq!(page(&replayed), page(&sim.core));
    for k in 1..entries.len() {
        let mut core = openbatch_core::Core::new(Default::default());
        replay_into(&mut core, &entries[..k]);
        let mut restored = snapshot(&core);
        replay_into(&mut restored, &entries[k..]);
        assert_eq!(
            render_all(&restored),
            render_all(&sim.core),
            "snapshot at {k}"
        );
        assert_eq!(page(&restored), page(&sim.core), "snapshot at {k}");
    }
}

// --- validation ---------------------------------------------------------------------------------

#[test]
fn job_task_settings_are_checked() {
    let mut sim = pool_of(1, 1);
    let bad = [
        json!({"jobReleaseTask": {"commandLine": "/bin/true"}}),
        json!({"jobPreparationTask": {"commandLine": "  "}}),
        json!({"jobPreparationTask": {"id": "bad id", "commandLine": "/bin/true"}}),
        json!({"jobPreparationTask": {"commandLine": "/bin/true"},
               "jobReleaseTask": {"commandLine": "/bin/true", "maxWallClockTime": "PT16M"}}),
        json!({"jobPreparationTask": {"id": "x", "commandLine": "/bin/true"},
               "jobReleaseTask": {"id": "X", "commandLine": "/bin/true"}}),
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true", "requiredSlots": 0}}),
        json!({"jobManagerTask": {"id": "jobpreparation", "commandLine": "/bin/true"},
               "jobPreparationTask": {"commandLine": "/bin/true"}}),
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true",
                                  "resourceFiles": [{"filePath": "x"}]}}),
    ];
    for extra in bad {
        let mut body = json!({"id": "j", "poolInfo": {"poolId": "p"}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let err = sim.refused(Input::CreateJob(Box::new(job(body.clone()))));
        assert!(
            matches!(
                err,
                CoreError::InvalidProperty { .. } | CoreError::MissingProperty(_)
            ),
            "{body}: {err:?}"
        );
    }
    create_job(&mut sim, "j", prep_and_release());
    let applied = sim.ok(add("j", vec![simple_task("JobRelease"), simple_task("t")]));
    let openbatch_core::Reply::TaskResults(results) = applied.reply else {
        panic!("task results")
    };
    let error = results[0].error.as_ref().expect("refused");
    assert_eq!(error.code.as_deref(), Some("TaskIdSameAsJobReleaseTask"));
    assert!(results[1].error.is_none());
}

/// A job schedule's `jobSpecification` carries the same tasks to every job it creates.
#[test]
fn job_schedules_create_jobs_with_their_job_tasks() {
    let mut sim = pool_of(1, 1);
    sim.ok(Input::CreateJobSchedule(Box::new(job_schedule(json!({
        "id": "s",
        "schedule": {},
        "jobSpecification": {
            "poolInfo": {"poolId": "p"},
            "jobManagerTask": {"id": "jm", "commandLine": "/bin/true"},
            "jobPreparationTask": {"commandLine": "/bin/true"},
            "jobReleaseTask": {"commandLine": "/bin/true"}
        }
    })))));
    sim.tick();
    let jobs = sim.schedule_jobs("s");
    assert_eq!(jobs.len(), 1);
    let j = jobs[0].clone();
    assert_eq!(sim.task_state(&j, "jm"), TaskState::Preparing);
    sim.finish_task(&j, "jobpreparation", 0);
    sim.finish_task(&j, "jm", 0);
    assert_eq!(sim.job_view(&j).state, JobState::Terminating);
    sim.finish_task(&j, "jobrelease", 0);
    assert_eq!(sim.job_view(&j).state, JobState::Completed);
    let _ = NodeDeallocationOption::Requeue;
}

/// "If this API is invoked on a Job which has no Job Preparation or Job Release Task, the Batch
/// service returns HTTP status code 409 (Conflict) with an error code of
/// JobPreparationTaskNotSpecified."
#[test]
fn the_status_of_a_job_without_preparation_is_a_conflict() {
    let mut sim = pool_of(1, 1);
    create_job(&mut sim, "j", json!({}));
    let err = sim
        .core
        .list_job_prep_release_status("j", None, 10, &urls(), &|_| true)
        .unwrap_err();
    assert_eq!(err, CoreError::JobPreparationTaskNotSpecified("j".into()));
    let api: openbatch_api::error::ApiError = err.into();
    assert_eq!(api.status, 409);
}

/// A spot node preempted while its tasks wait for preparation: they go back to the queue at
/// once (they never started); the preparation's end during the notice is not a success, and
/// the recovered node runs it again before the job's next task there.
#[test]
fn preemption_during_preparation() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetLowPriorityNodes": 1
    })))));
    sim.connect_all();
    create_job(&mut sim, "j", prep_and_release());
    sim.ok(add("j", simple_tasks("t", 1)));
    let n0 = node(&sim, 0);
    let prep = sim.run_of("j", "jobpreparation");
    sim.ok(Input::PreemptNode {
        pool: "p".into(),
        node: n0.clone(),
        grace: std::time::Duration::from_secs(30),
        recovery: std::time::Duration::from_secs(60),
    });
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Active);
    assert_eq!(t.execution_info.requeue_count, 1);
    sim.finish(prep, 0);
    assert!(
        status(&sim, "j").is_empty(),
        "a preparation ended by a preemption does not count"
    );
    assert_eq!(sim.node_state(&n0), NodeState::Preempted);
}

/// "If a Node reboots while the Job Release Task is still running, the Job Release Task runs
/// again when the Compute Node starts up. The Job is not marked as complete until all Job
/// Release Tasks have completed." A node lost for good runs none, and the job completes.
#[test]
fn a_release_interrupted_by_a_reboot_runs_again_and_a_lost_node_is_not_waited_for() {
    let mut sim = pool_of(2, 1);
    create_job(&mut sim, "j", prep_and_release());
    sim.ok(add("j", simple_tasks("t", 2)));
    let (n0, n1) = (node(&sim, 0), node(&sim, 1));
    for n in [&n0, &n1] {
        sim.finish(run_on(&sim, "j", "jobpreparation", n), 0);
    }
    sim.finish_all(0);
    sim.ok(Input::TerminateJob {
        id: "j".into(),
        reason: None,
    });
    assert_eq!(sim.last_run_tasks().len(), 2);
    sim.ok(Input::RestartNode {
        pool: "p".into(),
        node: n0.clone(),
        option: Some(NodeDeallocationOption::Requeue),
        reimage: false,
    });
    assert_eq!(sim.job_view("j").state, JobState::Terminating);
    assert!(status_of(&sim, "j", &n0)
        .job_release_task_execution_info
        .is_none());
    sim.connect(&n0);
    assert_eq!(
        sim.last_run_tasks(),
        vec![(n0.clone(), "jobrelease".into())]
    );
    sim.finish(run_on(&sim, "j", "jobrelease", &n0), 0);
    assert_eq!(
        sim.job_view("j").state,
        JobState::Terminating,
        "n1 still runs it"
    );
    sim.lose(&n1);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    let rel = status_of(&sim, "j", &n0)
        .job_release_task_execution_info
        .unwrap();
    assert_eq!(rel.result, Some(ExecutionResult::Success));
}

// --- disable, enable, terminate -----------------------------------------------------------------

/// Disable Job: "The Batch Service immediately moves the Job to the disabling state. Batch then
/// uses the disableTasks parameter to determine what to do with the currently running Tasks of
/// the Job. The Job remains in the disabling state until the disable operation is completed and
/// all Tasks have been dealt with according to the disableTasks option; the Job then moves to
/// the disabled state." `requeue` kills and requeues at once; `terminate` completes the running
/// tasks as terminated; `wait` lets them finish. Queued tasks wait in every case.
#[test]
fn disabling_lasts_until_the_running_tasks_are_dealt_with() {
    use openbatch_api::models::DisableJobOption;
    for option in [
        DisableJobOption::Requeue,
        DisableJobOption::Terminate,
        DisableJobOption::Wait,
    ] {
        let mut sim = pool_of(1, 2);
        create_job(&mut sim, "j", json!({}));
        sim.ok(add("j", simple_tasks("t", 3)));
        sim.ok(Input::DisableJob {
            id: "j".into(),
            option,
        });
        let want = if option == DisableJobOption::Requeue {
            JobState::Disabled
        } else {
            JobState::Disabling
        };
        assert_eq!(sim.job_view("j").state, want, "{option}");
        assert_eq!(sim.task_state("j", "t3"), TaskState::Active);
        match option {
            DisableJobOption::Requeue => {
                assert_eq!(sim.counts("j").active, 3);
                assert_eq!(sim.task_view("j", "t1").execution_info.requeue_count, 1);
                // Their slots are free once the killed processes are gone.
                assert_eq!(sim.last_kills().len(), 2);
                sim.report_kills();
            }
            DisableJobOption::Terminate => {
                assert_eq!(sim.last_kills().len(), 2);
                sim.finish_task_killed("j", "t1");
                assert_eq!(sim.job_view("j").state, JobState::Disabling);
                sim.finish_task_killed("j", "t2");
                let t = sim.task_view("j", "t2");
                assert_eq!(t.state, TaskState::Completed);
                assert_eq!(
                    t.execution_info.failure_info.unwrap().code.as_deref(),
                    Some("TaskEnded")
                );
            }
            DisableJobOption::Wait => {
                assert!(sim.last_kills().is_empty());
                sim.finish_task("j", "t1", 0);
                // A retry would go back to the queue and wait too.
                sim.finish_task("j", "t2", 0);
                assert_eq!(sim.task_state("j", "t2"), TaskState::Completed);
            }
        }
        assert_eq!(sim.job_view("j").state, JobState::Disabled, "{option}");
        assert_eq!(sim.task_state("j", "t3"), TaskState::Active);
        sim.ok(Input::EnableJob { id: "j".into() });
        assert_eq!(sim.job_view("j").state, JobState::Active);
        let waiting = if option == DisableJobOption::Requeue {
            2
        } else {
            1
        };
        assert_eq!(sim.counts("j").running, waiting, "the waiting tasks start");
    }
}

/// A disabling job whose running task fails with retries left: the retry waits in the queue,
/// and the job is disabled once nothing runs.
#[test]
fn a_retry_in_a_disabling_job_waits() {
    let mut sim = pool_of(1, 1);
    create_job(
        &mut sim,
        "j",
        json!({"constraints": {"maxTaskRetryCount": 2}}),
    );
    sim.ok(add("j", simple_tasks("t", 1)));
    sim.ok(Input::DisableJob {
        id: "j".into(),
        option: openbatch_api::models::DisableJobOption::Wait,
    });
    assert_eq!(sim.job_view("j").state, JobState::Disabling);
    sim.finish_task("j", "t1", 1);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Active);
    assert_eq!(sim.job_view("j").state, JobState::Disabled);
}

/// An exclusive job manager in a busy pool is not starved by younger jobs: when a slot frees
/// and no node is idle, a node is held for it (nothing new starts there), and it starts once
/// that node has drained.
#[test]
fn an_exclusive_job_manager_is_not_starved_by_younger_work() {
    let mut sim = pool_of(2, 2);
    create_job(&mut sim, "other", json!({}));
    sim.ok(add("other", simple_tasks("o", 4)));
    create_job(
        &mut sim,
        "j",
        json!({"jobManagerTask": {"id": "jm", "commandLine": "/bin/true",
                                  "killJobOnCompletion": false}}),
    );
    create_job(&mut sim, "late", json!({}));
    sim.ok(add("late", simple_tasks("l", 10)));
    assert_eq!(sim.task_state("j", "jm"), TaskState::Active);
    let n0 = node(&sim, 0);
    let on_n0: Vec<RunId> = sim.runs_on(&n0);
    assert_eq!(on_n0.len(), 2);
    sim.finish(on_n0[0], 0);
    assert_eq!(
        sim.node_view(&n0).running_tasks_count,
        1,
        "the freed slot is held for the job manager"
    );
    assert_eq!(sim.counts("late").running, 0);
    sim.finish(on_n0[1], 0);
    assert_eq!(sim.task_state("j", "jm"), TaskState::Running);
    assert_eq!(sim.node_of("j", "jm"), n0);
    assert_eq!(sim.node_view(&n0).running_task_slots_count, 2);
}
