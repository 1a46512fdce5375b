//! Application packages: the records, the checks of `applicationPackageReferences` on pools
//! and tasks, and the packages each run and start task is given.

use openbatch_api::agent::AppPackage;
use openbatch_api::error::ApiError;
use openbatch_api::models::{ApplicationUpdate, PoolReplace, PoolUpdate, TaskAddStatus};
use openbatch_core::{CoreError, Effect, Input, PackageUpload, Reply};
use serde_json::json;

use crate::common::*;

fn sha(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn put(app: &str, version: &str) -> Input {
    Input::PutApplicationPackage(PackageUpload {
        application_id: app.into(),
        version: version.into(),
        display_name: None,
        blob: format!("{}/{version}/blob", app.to_lowercase()),
        sha256: sha(version.chars().next().unwrap_or('0')),
        size: 10,
    })
}

fn set_default(app: &str, version: &str) -> Input {
    Input::UpdateApplication {
        application_id: app.into(),
        update: ApplicationUpdate {
            display_name: None,
            default_version: Some(version.into()),
        },
    }
}

fn code(e: CoreError) -> (u16, String) {
    let api: ApiError = e.into();
    (api.status, api.code.to_string())
}

fn packages_of_last_run(sim: &Sim) -> Vec<AppPackage> {
    sim.last
        .iter()
        .find_map(|fx| match fx {
            Effect::RunTask { spec, .. } => Some(spec.app_packages.clone()),
            _ => None,
        })
        .expect("a run was started")
}

/// (application id, version, is the default) of each package.
type Versions = Vec<(String, String, bool)>;

/// The packages each node was asked to install ahead of its runs by the last input.
fn prefetched(sim: &Sim) -> Vec<(String, Versions)> {
    sim.last
        .iter()
        .filter_map(|fx| match fx {
            Effect::InstallPackages { node, app_packages } => {
                Some((node.clone(), versions(app_packages)))
            }
            _ => None,
        })
        .collect()
}

fn versions(p: &[AppPackage]) -> Versions {
    p.iter()
        .map(|p| (p.application_id.clone(), p.version.clone(), p.is_default))
        .collect()
}

/// Azure: a pool that references an application that does not exist, a version that does
/// not exist, or an application without a default version and names no version, is refused
/// with 409 `InvalidApplicationPackageReferences`; so are such updates.
#[test]
fn pool_references_are_checked_when_set() {
    let mut sim = Sim::new();
    let with_refs = |refs: serde_json::Value| {
        Input::CreatePool(Box::new(pool(json!({
            "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1,
            "applicationPackageReferences": refs
        }))))
    };
    let refused = sim.refused(with_refs(json!([{"applicationId": "Blender"}])));
    assert_eq!(
        code(refused),
        (409, "InvalidApplicationPackageReferences".into())
    );
    sim.ok(put("Blender", "1.0"));
    // No default version yet, and none named.
    let refused = sim.refused(with_refs(json!([{"applicationId": "blender"}])));
    assert_eq!(
        code(refused),
        (409, "InvalidApplicationPackageReferences".into())
    );
    let refused = sim.refused(with_refs(
        json!([{"applicationId": "blender", "version": "2.0"}]),
    ));
    assert!(refused.to_string().contains("no version '2.0'"));
    sim.ok(with_refs(
        json!([{"applicationId": "blender", "version": "1.0"}]),
    ));
    // Updates and replaces are checked the same way, and change nothing when refused.
    let patch: PoolUpdate = serde_json::from_value(
        json!({"applicationPackageReferences": [{"applicationId": "nope"}]}),
    )
    .unwrap();
    sim.refused(Input::UpdatePool {
        id: "p".into(),
        patch: Box::new(patch),
    });
    let replace: PoolReplace = serde_json::from_value(json!({
        "applicationPackageReferences": [{"applicationId": "blender"}], "metadata": []
    }))
    .unwrap();
    sim.refused(Input::ReplacePoolProperties {
        id: "p".into(),
        props: replace.clone(),
    });
    assert_eq!(
        sim.pool_view("p").application_package_references[0]
            .version
            .as_deref(),
        Some("1.0")
    );
    sim.ok(set_default("BLENDER", "1.0"));
    sim.ok(Input::ReplacePoolProperties {
        id: "p".into(),
        props: replace,
    });
}

/// A task's reference to an unknown application or version is a client error of that task;
/// one without a version is accepted and resolved when it runs (Azure: it fails then, as a
/// pre-processing error, if there is no default version).
#[test]
fn task_references_are_checked_and_resolved_at_dispatch() {
    let mut sim = Sim::new();
    sim.ok(put("tool", "1"));
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    let applied = sim.ok(add(
        "j",
        vec![
            task(json!({"id": "bad", "commandLine": "/bin/true",
                "applicationPackageReferences": [{"applicationId": "tool", "version": "9"}]})),
            task(json!({"id": "t1", "commandLine": "/bin/true",
                "applicationPackageReferences": [{"applicationId": "tool"}]})),
        ],
    ));
    let Reply::TaskResults(results) = applied.reply else {
        panic!("task results expected")
    };
    assert_eq!(results[0].status, TaskAddStatus::ClientError);
    assert_eq!(
        results[0].error.as_ref().unwrap().code,
        Some("InvalidApplicationPackageReferences".to_string())
    );
    assert_eq!(results[1].status, TaskAddStatus::Success);
    let p = packages_of_last_run(&sim);
    assert_eq!(p.len(), 1);
    assert!(p[0]
        .unresolved
        .as_deref()
        .unwrap()
        .contains("no default version"));
}

/// Each run carries the pool's packages as they are when it is dispatched, then the task's;
/// a change of the default version or of the pool's references reaches the next run on the
/// nodes already in the pool, and the start task gets the pool's packages.
#[test]
fn runs_carry_the_pool_and_task_packages_as_they_are_now() {
    let mut sim = Sim::new();
    sim.ok(put("Tool", "1"));
    sim.ok(put("Tool", "2"));
    sim.ok(put("other", "a"));
    sim.ok(set_default("tool", "1"));
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1,
        "startTask": {"commandLine": "/bin/true", "waitForSuccess": true},
        "applicationPackageReferences": [{"applicationId": "tool"}]
    })))));
    let node = sim.pending()[0].clone();
    let applied = sim.connect(&node);
    let start = applied
        .effects
        .iter()
        .find_map(|fx| match fx {
            Effect::RunStartTask { app_packages, .. } => Some(app_packages.clone()),
            _ => None,
        })
        .expect("the start task runs");
    assert_eq!(versions(&start), [("Tool".into(), "1".into(), true)]);
    assert_eq!(start[0].sha256, sha('1'));
    assert_eq!(start[0].blob, "tool/1/blob");
    sim.start_task_done(&node, 0);
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add(
        "j",
        vec![task(json!({"id": "t1", "commandLine": "/bin/true",
        "applicationPackageReferences": [
            {"applicationId": "other", "version": "a"},
            {"applicationId": "tool", "version": "1"}
        ]}))],
    ));
    assert_eq!(
        versions(&packages_of_last_run(&sim)),
        [
            ("Tool".into(), "1".into(), true),
            ("other".into(), "a".into(), false)
        ]
    );
    sim.finish_task("j", "t1", 0);
    // Switch the default: the node is asked to install version 2 at once, and the next task
    // on it gets version 2.
    sim.ok(set_default("tool", "2"));
    assert_eq!(
        prefetched(&sim),
        [(node.clone(), vec![("Tool".into(), "2".into(), true)])]
    );
    sim.ok(add("j", vec![simple_task("t2")]));
    assert_eq!(
        versions(&packages_of_last_run(&sim)),
        [("Tool".into(), "2".into(), true)]
    );
    sim.finish_task("j", "t2", 0);
    // Switch the pool's reference to an explicit version.
    let patch: PoolUpdate = serde_json::from_value(json!({
        "applicationPackageReferences": [{"applicationId": "tool", "version": "1"}]
    }))
    .unwrap();
    sim.ok(Input::UpdatePool {
        id: "p".into(),
        patch: Box::new(patch),
    });
    assert_eq!(
        prefetched(&sim),
        [(node.clone(), vec![("Tool".into(), "1".into(), false)])]
    );
    sim.ok(add("j", vec![simple_task("t3")]));
    assert_eq!(
        versions(&packages_of_last_run(&sim)),
        [("Tool".into(), "1".into(), false)]
    );
}

/// Packages a pool uses cannot be deleted; others can, and the reply names the blobs to
/// delete. A new upload of a version releases the old blob.
#[test]
fn deletes_refuse_packages_in_use_and_release_blobs() {
    let mut sim = Sim::new();
    sim.ok(put("tool", "1"));
    sim.ok(put("tool", "2"));
    sim.ok(set_default("tool", "2"));
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3",
        "applicationPackageReferences": [{"applicationId": "tool"}]
    })))));
    let del = |v: Option<&str>| Input::DeleteApplicationPackage {
        application_id: "tool".into(),
        version: v.map(Into::into),
    };
    assert_eq!(
        code(sim.refused(del(Some("2")))),
        (409, "ApplicationPackageInUse".into())
    );
    assert_eq!(
        code(sim.refused(del(None))),
        (409, "ApplicationPackageInUse".into())
    );
    // Clearing the default the pool relies on is refused too.
    sim.refused(Input::UpdateApplication {
        application_id: "tool".into(),
        update: ApplicationUpdate {
            display_name: None,
            default_version: Some(String::new()),
        },
    });
    assert_eq!(
        code(sim.refused(set_default("tool", "7"))),
        (404, "ApplicationPackageNotFound".into())
    );
    let applied = sim.ok(del(Some("1")));
    assert_eq!(
        applied.reply,
        Reply::BlobsReleased(vec!["tool/1/blob".into()])
    );
    // A new upload of version 2 under another blob releases the old one.
    let applied = sim.ok(Input::PutApplicationPackage(PackageUpload {
        application_id: "tool".into(),
        version: "2".into(),
        display_name: Some("The Tool".into()),
        blob: "tool/2/other".into(),
        sha256: sha('f'),
        size: 3,
    }));
    assert_eq!(
        applied.reply,
        Reply::BlobsReleased(vec!["tool/2/blob".into()])
    );
    let app = sim.core.application("TOOL").unwrap();
    assert_eq!(
        (app.id.as_str(), app.display_name.as_str()),
        ("tool", "The Tool")
    );
    assert_eq!(app.versions, ["2"]);
    sim.ok(Input::DeletePool { id: "p".into() });
    // The pool is deleting; its references no longer hold the package.
    let applied = sim.ok(del(None));
    assert_eq!(
        applied.reply,
        Reply::BlobsReleased(vec!["tool/2/other".into()])
    );
    assert!(sim.core.applications().is_empty());
    assert_eq!(
        code(sim.refused(del(None))),
        (404, "ApplicationNotFound".into())
    );
}

#[test]
fn bad_ids_and_versions_are_refused() {
    let mut sim = Sim::new();
    for (app, version) in [("has space", "1"), ("ok", "1/2"), ("", "1"), ("ok", "a b")] {
        let e = sim.refused(put(app, version));
        assert_eq!(code(e).0, 400, "{app:?} {version:?}");
    }
    assert!(openbatch_core::valid_version("1.2.3-beta_4"));
    assert!(!openbatch_core::valid_version("1/3"));
    assert!(!openbatch_core::valid_version(""));
}

/// Applications are part of the state: a replay of the journal, and a snapshot, give the same
/// applications and the same packages in each run's effects.
#[test]
fn applications_survive_replay_and_snapshot() {
    let mut sim = Sim::new();
    sim.ok(put("tool", "1"));
    sim.ok(put("tool", "2"));
    sim.ok(set_default("tool", "2"));
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1,
        "applicationPackageReferences": [{"applicationId": "tool"}]
    })))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", vec![simple_task("t")]));
    sim.ok(Input::DeleteApplicationPackage {
        application_id: "tool".into(),
        version: Some("1".into()),
    });
    let mut replayed = openbatch_core::Core::new(Default::default());
    replay_into(&mut replayed, &sim.entries());
    assert_eq!(
        replayed.application_details(),
        sim.core.application_details()
    );
    let restored = snapshot(&sim.core);
    assert_eq!(
        restored.application_details(),
        sim.core.application_details()
    );
    assert_eq!(restored.applications()[0].versions, ["2"]);
}

/// A node that joins a pool without a start task is asked to install the pool's packages at
/// once; one with a start task gets them with it.
#[test]
fn nodes_install_the_pool_packages_when_they_join() {
    let mut sim = Sim::new();
    sim.ok(put("tool", "1"));
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 2,
        "applicationPackageReferences": [{"applicationId": "tool", "version": "1"}]
    })))));
    let nodes = sim.pending();
    sim.connect(&nodes[0]);
    assert_eq!(
        prefetched(&sim),
        [(nodes[0].clone(), vec![("tool".into(), "1".into(), false)])]
    );
    // A node that only reconnects is not asked again.
    sim.disconnect(&nodes[0]);
    sim.connect(&nodes[0]);
    assert!(prefetched(&sim).is_empty());
}
