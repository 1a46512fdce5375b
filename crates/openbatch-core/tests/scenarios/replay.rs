//! Determinism: the core is a pure function of its inputs and their times. Replaying the journal
//! gives the same state and asks for the same effects (same node ids, same run ids, same
//! placements); a snapshot taken anywhere and loaded again continues exactly like the original.

use std::time::Duration;

use openbatch_api::models::{JobState, TaskState};
use openbatch_core::{Core, Effect, Input, Limits};
use serde_json::json;

use crate::common::*;

fn limits() -> Limits {
    Limits {
        node_lost_after: Duration::from_secs(60),
        ..Limits::default()
    }
}

/// Connect a node's agent and, if the core asks for a start task, complete it with `code`.
fn boot(sim: &mut Sim, node: &str, code: i32) {
    sim.connect(node);
    if sim
        .last
        .iter()
        .any(|fx| matches!(fx, Effect::RunStartTask { .. }))
    {
        sim.advance(2);
        sim.start_task_done(node, code);
    }
}

fn boot_pending(sim: &mut Sim) {
    for n in sim.pending() {
        boot(sim, &n, 0);
    }
}

/// Finish the oldest `n` executing runs, with exit codes cycling through `codes`.
fn finish_some(sim: &mut Sim, n: usize, codes: &[i32]) {
    let runs: Vec<u64> = sim.runs.keys().copied().take(n).collect();
    for (i, r) in runs.into_iter().enumerate() {
        sim.advance(1);
        sim.finish(r, codes[i % codes.len()]);
    }
}

/// Two pools, three jobs of different priorities, start tasks with a retry, failures and
/// retries, a lost node, a reconnect, a node that times out, a terminated task, a resize with
/// `taskcompletion`, a terminated job, a deleted task and job.
fn busy(sim: &mut Sim) {
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 3, "taskSlotsPerNode": 2,
        "startTask": {"commandLine": "setup", "waitForSuccess": true, "maxTaskRetryCount": 1},
    })))));
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "q", "vmSize": "small", "targetDedicatedNodes": 1,
        "taskSchedulingPolicy": {"nodeFillType": "pack"},
    })))));
    sim.ok(Input::CreateJob(Box::new(job(json!({
        "id": "a", "poolInfo": {"poolId": "p"}, "constraints": {"maxTaskRetryCount": 1},
        "onAllTasksComplete": "terminatejob",
    })))));
    sim.ok(Input::CreateJob(Box::new(job(
        json!({"id": "b", "poolInfo": {"poolId": "p"}, "priority": 10}),
    ))));
    sim.ok(Input::CreateJob(Box::new(simple_job("c", "q"))));
    let mut a_tasks = simple_tasks("a", 6);
    a_tasks.push(task(
        json!({"id": "wide", "commandLine": "x", "requiredSlots": 2}),
    ));
    sim.ok(add("a", a_tasks));

    let p_nodes: Vec<String> = sim.pending().into_iter().take(3).collect();
    sim.advance(5);
    boot(sim, &p_nodes[0], 0);
    boot(sim, &p_nodes[1], 1); // fails once, retried...
    sim.advance(1);
    sim.start_task_done(&p_nodes[1], 0); // ...and succeeds
    boot(sim, &p_nodes[2], 0);
    sim.ok(add("b", simple_tasks("b", 3)));
    sim.ok(add("c", simple_tasks("c", 2)));
    boot_pending(sim); // q's node

    finish_some(sim, 3, &[1, 0]);
    sim.advance(3);
    sim.tick(); // nothing to do: not journaled by a shell
    let doomed = sim.runs_on(&p_nodes[0]);
    sim.lose(&p_nodes[0]);
    if let Some(&run) = doomed.first() {
        // The lost node's late word about its run: ignored.
        let result = sim.result(sim.now, 0);
        sim.ok(Input::TaskCompleted {
            node: p_nodes[0].clone(),
            run,
            result,
        });
    }
    boot_pending(sim); // the replacement
    finish_some(sim, 2, &[0]);

    // p_nodes[1] blinks; p_nodes[2] goes away for good.
    sim.disconnect(&p_nodes[1]);
    sim.disconnect(&p_nodes[2]);
    sim.advance(30);
    sim.connect(&p_nodes[1]);
    sim.advance(31);
    sim.tick();
    boot_pending(sim);

    sim.ok(Input::TerminateTask {
        job: "a".into(),
        task: "a5".into(),
    });
    sim.ok(Input::ResizePool {
        id: "p".into(),
        resize: serde_json::from_value(
            json!({"targetDedicatedNodes": 2, "nodeDeallocationOption": "taskcompletion"}),
        )
        .unwrap(),
    });
    finish_some(sim, 4, &[0, 2]);
    for n in sim.remove_requested.clone() {
        if !sim.gone.contains(&n) {
            sim.removed(&n);
        }
    }
    sim.ok(add("b", simple_tasks("late", 2)));
    sim.ok(Input::DeleteTask {
        job: "b".into(),
        task: "late2".into(),
    });
    sim.ok(Input::TerminateJob {
        id: "c".into(),
        reason: None,
    });
    sim.advance(10);
    boot_pending(sim);
    finish_some(sim, 2, &[0]);
    sim.ok(Input::DeleteJob { id: "b".into() });
    settle(sim);
    sim.ok(Input::ServerRestarted);
    sim.connected.clear();
    sim.advance(5);
    for (n, _) in sim.core.node_ids() {
        sim.connect(&n);
    }
}

/// Play agents and provider until nothing is left to do: boot new nodes, answer removals,
/// finish every run with success.
fn settle(sim: &mut Sim) {
    for _ in 0..100 {
        boot_pending(sim);
        let removals: Vec<String> = sim
            .remove_requested
            .iter()
            .filter(|n| !sim.gone.contains(*n))
            .cloned()
            .collect();
        for n in &removals {
            sim.removed(n);
        }
        if sim.runs.is_empty() && removals.is_empty() && sim.pending().is_empty() {
            return;
        }
        sim.advance(1);
        sim.finish_all(0);
    }
    panic!("the simulation does not settle");
}

#[test]
fn the_busy_scenario_ends_where_azure_would() {
    let mut sim = Sim::with_limits(limits());
    busy(&mut sim);
    // Job `a` completed on its own once all its tasks had; `b` is gone; `c` was terminated.
    let a = sim.job_view("a");
    assert_eq!(a.state, openbatch_api::models::JobState::Completed);
    assert_eq!(
        a.execution_info.unwrap().terminate_reason.as_deref(),
        Some("AllTasksComplete")
    );
    assert!(sim.core.job("b", &urls()).is_err());
    assert_eq!(
        sim.job_view("c")
            .execution_info
            .unwrap()
            .terminate_reason
            .as_deref(),
        Some("UserTerminate")
    );
    assert!(sim.runs.is_empty());
    assert_eq!(sim.nodes("p").len(), 2);
    // The scenario is meant to exercise every kind of effect.
    assert!(sim.journal.len() > 40, "{} inputs", sim.journal.len());
    for kind in [
        "ProvisionNode",
        "RunStartTask",
        "RunTask",
        "KillTask",
        "RemoveNode",
    ] {
        assert!(
            sim.effects
                .iter()
                .any(|fx| serde_json::to_value(fx).unwrap().get(kind).is_some()),
            "no {kind}"
        );
    }
}

/// Replaying every accepted input into a fresh core asks for the same effects and ends in the
/// same state; so does replaying only the inputs that reported `changed`, as the shell journals.
#[test]
fn journal_replay_rebuilds_the_same_state() {
    let mut sim = Sim::with_limits(limits());
    busy(&mut sim);
    let entries = sim.entries();
    let want_views = render_all(&sim.core);
    let want_state = serde_json::to_value(&sim.core).unwrap();

    let mut all = Core::new(limits());
    replay_into(&mut all, &entries);
    assert_eq!(render_all(&all), want_views);
    assert_eq!(serde_json::to_value(&all).unwrap(), want_state);

    let changed: Vec<Entry> = entries.iter().filter(|e| e.changed).cloned().collect();
    assert!(changed.len() < entries.len(), "some inputs changed nothing");
    let mut journaled = Core::new(limits());
    replay_into(&mut journaled, &changed);
    assert_eq!(render_all(&journaled), want_views);
    assert_eq!(serde_json::to_value(&journaled).unwrap(), want_state);
}

/// A snapshot (serialize, load, `rebuild_indexes`) taken after any prefix of the journal
/// continues exactly like the original: same effects for every later input, same end state.
#[test]
fn snapshot_then_continue_matches_the_original() {
    let mut sim = Sim::with_limits(limits());
    busy(&mut sim);
    let entries = sim.entries();
    let want_views = render_all(&sim.core);
    let want_state = serde_json::to_value(&sim.core).unwrap();

    for k in (0..=entries.len()).step_by(3) {
        let mut core = Core::new(limits());
        replay_into(&mut core, &entries[..k]);
        let mut restored = snapshot(&core);
        assert_eq!(
            render_all(&restored),
            render_all(&core),
            "snapshot after entry {k} renders differently"
        );
        replay_into(&mut restored, &entries[k..]);
        assert_eq!(
            render_all(&restored),
            want_views,
            "continued from entry {k}"
        );
        assert_eq!(
            serde_json::to_value(&restored).unwrap(),
            want_state,
            "continued from entry {k}"
        );
    }
}

/// The journal is plain JSON, one entry per accepted input.
#[test]
fn journal_entries_are_json() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    let v: serde_json::Value = serde_json::from_str(&sim.journal[0]).unwrap();
    assert_eq!(v["input"]["CreatePool"]["id"], "p");
    assert_eq!(v["changed"], true);
}

/// A snapshot taken while a deleted task's kill is still to be reported must continue like the
/// original: when the report frees the slot, the next task starts.
#[test]
fn snapshot_keeps_scheduling_after_a_deleted_tasks_kill_report() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 2)));
    let run = sim.run_of("j", "t1");
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t1".into(),
    });
    let mut restored = snapshot(&sim.core);
    let node = sim.provisioned[0].clone();
    sim.advance(1);
    let report = Input::TaskCompleted {
        node: node.clone(),
        run,
        result: sim.result(sim.now, 137),
    };
    let original = sim.core.apply(report.clone(), sim.now).unwrap();
    let after_restore = restored.apply(report, sim.now).unwrap();
    assert!(
        original
            .effects
            .iter()
            .any(|fx| matches!(fx, Effect::RunTask { spec, .. } if spec.task_id == "t2")),
        "t2 starts in the original"
    );
    assert_eq!(after_restore.effects, original.effects);
}

/// Crash recovery with runs started before durability: the shell starts a run as soon as the
/// core asks for it, before the input that placed it is journaled. If the server dies in
/// between, the replayed core never heard of that run. The reconnecting agent reports it and is
/// told to kill it, and the task is placed again under a run id that cannot be the orphan's (run
/// ids carry the restart epoch), so the orphan's late report cannot complete the new attempt.
#[test]
fn a_run_started_before_its_input_was_journaled_is_killed_after_a_crash() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.connect_all();
    let node = sim.provisioned[0].clone();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 2)));
    let r1 = sim.run_of("j", "t1");
    let durable = sim.entries();

    // t1 ends; the core places t2 at once and the shell starts it early...
    sim.advance(1);
    let t1_result = sim.result(sim.now, 0);
    sim.finish(r1, 0);
    let orphan = sim.run_of("j", "t2");
    // ...and the server dies before that report is durable.
    let mut core = Core::new(Limits::default());
    replay_into(&mut core, &durable);
    let mut after = Sim::from_core(core, sim.now + chrono::Duration::seconds(5));
    after.provisioned = sim.provisioned.clone();
    after.ok(Input::ServerRestarted);

    // The agent dials in: t1 finished while the server was away, the orphan still runs.
    after.hello(&node, vec![orphan], vec![(r1, t1_result)]);
    assert!(after.last.contains(&Effect::KillTask {
        node: node.clone(),
        run: orphan
    }));
    assert_eq!(
        after.task_state("j", "t1"),
        openbatch_api::models::TaskState::Completed
    );
    let again = after.run_of("j", "t2");
    assert_ne!(again, orphan, "the new attempt reuses the orphan's run id");
    assert!(again > orphan);

    // The orphan's kill is reported: news of a run the core does not know.
    let killed = after.result(after.now, 137);
    let late = after.ok(Input::TaskCompleted {
        node: node.clone(),
        run: orphan,
        result: killed,
    });
    assert!(!late.changed);
    assert_eq!(
        after.task_state("j", "t2"),
        openbatch_api::models::TaskState::Running
    );
    after.finish(again, 0);
    assert_eq!(after.counts("j").succeeded, 2);
}

/// Dependencies and exit conditions in every shape: ids and ranges (leading zeros, tasks added
/// after their dependents), a retried parent that blocks, a deleted and a reactivated
/// dependency, a job action, and a job switched to `terminatejob`.
fn with_dependencies(sim: &mut Sim) {
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 6, 1))));
    boot_pending(sim);
    sim.ok(Input::CreateJob(Box::new(job(json!({
        "id": "d", "poolInfo": {"poolId": "p"}, "usesTaskDependencies": true,
        "constraints": {"maxTaskRetryCount": 1},
    })))));
    sim.ok(Input::CreateJob(Box::new(job(json!({
        "id": "e", "poolInfo": {"poolId": "p"}, "usesTaskDependencies": true,
        "onTaskFailure": "performexitoptionsjobaction",
    })))));
    let dep = |id: &str, deps: serde_json::Value| {
        task(json!({"id": id, "commandLine": "x", "dependsOn": deps}))
    };
    sim.ok(add(
        "d",
        vec![
            dep(
                "merge",
                json!({"taskIdRanges": [{"start": 1, "end": 4}], "taskIds": ["prep"]}),
            ),
            dep("after-merge", json!({"taskIds": ["merge"]})),
            dep("blocked", json!({"taskIds": ["bad"]})),
            task(json!({"id": "bad", "commandLine": "x", "exitConditions": {
                "exitCodes": [{"code": 3, "exitOptions": {"dependencyAction": "block"}}],
                "default": {"dependencyAction": "satisfy"}}})),
            simple_task("prep"),
            simple_task("1"),
            simple_task("02"),
        ],
    ));
    sim.ok(add(
        "e",
        vec![simple_task("e1"), dep("e2", json!({"taskIds": ["e1"]}))],
    ));
    let step = |sim: &mut Sim, job: &str, task: &str, code: i32| {
        sim.advance(1);
        sim.finish_task(job, task, code);
    };
    step(sim, "d", "bad", 3); // retried
    step(sim, "d", "bad", 3); // blocks `blocked`
    step(sim, "e", "e1", 1); // terminates job e
    for t in ["prep", "1", "02"] {
        step(sim, "d", t, 0);
    }
    sim.ok(add("d", vec![simple_task("3"), simple_task("0004")]));
    step(sim, "d", "3", 0);
    sim.ok(Input::DeleteTask {
        job: "d".into(),
        task: "02".into(),
    });
    sim.ok(add("d", vec![simple_task("2")]));
    step(sim, "d", "0004", 0);
    assert_eq!(sim.task_state("d", "merge"), TaskState::Active);
    step(sim, "d", "2", 0);
    sim.ok(Input::ReactivateTask {
        job: "d".into(),
        task: "bad".into(),
    });
    step(sim, "d", "bad", 3);
    step(sim, "d", "bad", 3);
    step(sim, "d", "merge", 0);
    step(sim, "d", "after-merge", 0);
    sim.ok(Input::UpdateJob {
        id: "d".into(),
        update: Box::new(
            serde_json::from_value(json!({"onAllTasksComplete": "terminatejob"})).unwrap(),
        ),
        replace: false,
    });
    settle(sim);
}

/// The dependency scenario replays to the same state, and a snapshot taken after any prefix
/// (the dependency index is rebuilt from the tasks) continues exactly like the original.
#[test]
fn a_journal_with_dependencies_replays_and_snapshots_to_the_same_state() {
    let mut sim = Sim::with_limits(limits());
    with_dependencies(&mut sim);
    assert_eq!(sim.task_state("d", "blocked"), TaskState::Active);
    assert_eq!(sim.task_state("e", "e2"), TaskState::Active);
    assert_eq!(sim.job_view("d").state, JobState::Active);
    assert_eq!(sim.job_view("e").state, JobState::Completed);
    assert_eq!(sim.counts("d").succeeded, 7);
    let entries = sim.entries();
    let want_views = render_all(&sim.core);
    let want_state = serde_json::to_value(&sim.core).unwrap();

    let mut replayed = Core::new(limits());
    replay_into(&mut replayed, &entries);
    assert_eq!(render_all(&replayed), want_views);
    assert_eq!(serde_json::to_value(&replayed).unwrap(), want_state);

    for k in 0..=entries.len() {
        let mut core = Core::new(limits());
        replay_into(&mut core, &entries[..k]);
        let mut restored = snapshot(&core);
        replay_into(&mut restored, &entries[k..]);
        assert_eq!(
            render_all(&restored),
            want_views,
            "continued from entry {k}"
        );
        assert_eq!(
            serde_json::to_value(&restored).unwrap(),
            want_state,
            "continued from entry {k}"
        );
    }
}
