//! Applications and their packages (openbatch's own management operations, and the records
//! that `applicationPackageReferences` of pools and tasks are checked and resolved against).
//!
//! The package bytes live in the auto-storage (the shell streams an upload there first, then
//! applies [`Input::PutApplicationPackage`] with the blob's name and digest), so the core only
//! keeps metadata. A reference without a version means the application's default version,
//! resolved each time a run or start task is dispatched: switching the default (or a pool's
//! references) reaches the nodes already in the pool with their next task.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use openbatch_api::agent::AppPackage;
use openbatch_api::models::{
    Application as WireApplication, ApplicationDetails, ApplicationPackageInfo,
    ApplicationPackageReference, ApplicationUpdate, PoolState,
};
use serde::{Deserialize, Serialize};

use crate::input::{Effect, Reply};
use crate::{id_key, valid_id, Core, CoreError};

/// Most versions one application keeps.
pub const MAX_VERSIONS: usize = 40;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Application {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) display_name: Option<String>,
    #[serde(default)]
    pub(crate) default_version: Option<String>,
    /// By version, exactly as uploaded.
    pub(crate) packages: BTreeMap<String, Package>,
    pub(crate) last_modified: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Package {
    pub(crate) blob: String,
    pub(crate) sha256: String,
    pub(crate) size: u64,
    pub(crate) last_modified: DateTime<Utc>,
}

/// Azure's rule for a package version: 1 to 64 letters, digits, hyphens, underscores and
/// periods.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A package the shell has stored, to record as a version of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageUpload {
    pub application_id: String,
    pub version: String,
    /// Sets the application's display name when given.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The zip file's blob in the auto-storage's application container.
    pub blob: String,
    /// Hex SHA-256 of the zip file.
    pub sha256: String,
    pub size: u64,
}

impl Core {
    /// Record an uploaded package (a new version, or a new upload of an existing one). The
    /// reply names the blob a replaced upload leaves behind, for the shell to delete.
    pub(crate) fn put_application_package(
        &mut self,
        upload: PackageUpload,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let PackageUpload {
            application_id,
            version,
            display_name,
            blob,
            sha256,
            size,
        } = upload;
        let (application_id, version) = (application_id.as_str(), version.as_str());
        if !valid_id(application_id) {
            return Err(CoreError::invalid(
                "applicationId",
                application_id,
                "an application id has 1 to 64 letters, digits, hyphens and underscores",
            ));
        }
        if !valid_version(version) {
            return Err(CoreError::invalid(
                "version",
                version,
                "a version has 1 to 64 letters, digits, hyphens, underscores and periods",
            ));
        }
        if blob.is_empty() || sha256.len() != 64 {
            return Err(CoreError::invalid(
                "blob",
                &blob,
                "a package needs its blob name and SHA-256",
            ));
        }
        let key = id_key(application_id);
        if let Some(app) = self.applications.get(&key) {
            if !app.packages.contains_key(version) && app.packages.len() >= MAX_VERSIONS {
                return Err(CoreError::invalid(
                    "version",
                    version,
                    format!(
                        "application '{}' already has {MAX_VERSIONS} versions; delete one first",
                        app.id
                    ),
                ));
            }
        }
        let app = self.applications.entry(key).or_insert_with(|| Application {
            id: application_id.to_string(),
            display_name: None,
            default_version: None,
            packages: BTreeMap::new(),
            last_modified: now,
        });
        if display_name.is_some() {
            app.display_name = display_name;
        }
        app.last_modified = now;
        let old = app.packages.insert(
            version.to_string(),
            Package {
                blob: blob.clone(),
                sha256,
                size,
                last_modified: now,
            },
        );
        Ok(Reply::BlobsReleased(
            old.map(|p| p.blob)
                .filter(|b| *b != blob)
                .into_iter()
                .collect(),
        ))
    }

    pub(crate) fn update_application(
        &mut self,
        application_id: &str,
        update: ApplicationUpdate,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = id_key(application_id);
        let app = self
            .applications
            .get(&key)
            .ok_or_else(|| CoreError::ApplicationNotFound(application_id.into()))?;
        let default = match update.default_version.as_deref() {
            None => app.default_version.clone(),
            Some("") => {
                if let Some(pool) = self.pool_using(&key, None) {
                    return Err(CoreError::ApplicationPackageInUse(format!(
                        "Pool '{pool}' references application '{}' without a version, so it needs a default version.",
                        app.id
                    )));
                }
                None
            }
            Some(v) => {
                if !app.packages.contains_key(v) {
                    return Err(CoreError::ApplicationPackageNotFound(
                        app.id.clone(),
                        v.into(),
                    ));
                }
                Some(v.to_string())
            }
        };
        let app = self.applications.get_mut(&key).expect("checked");
        let switched = app.default_version != default;
        app.default_version = default;
        if let Some(name) = update.display_name {
            app.display_name = Some(name).filter(|n| !n.is_empty());
        }
        app.last_modified = now;
        if switched {
            // Pools that take the default get the new version on their nodes now.
            let pools: Vec<String> = self
                .pools
                .values()
                .filter(|p| p.state != PoolState::Deleting)
                .filter(|p| {
                    p.spec
                        .application_package_references
                        .iter()
                        .any(|r| id_key(&r.application_id) == key && r.version.is_none())
                })
                .map(|p| p.spec.id.clone())
                .collect();
            for pool in pools {
                self.prefetch_pool_packages(&pool, fx);
            }
        }
        Ok(Reply::Done)
    }

    /// Ask every node of the pool that is up to install the pool's packages as they are now.
    pub(crate) fn prefetch_pool_packages(&self, pool_id: &str, fx: &mut Vec<Effect>) {
        let Some(pool) = self.pools.get(&id_key(pool_id)) else {
            return;
        };
        for node in &pool.nodes {
            self.prefetch_node_packages(node, fx);
        }
    }

    /// Ask one node (if it is up and staying) to install its pool's packages now.
    pub(crate) fn prefetch_node_packages(&self, node_id: &str, fx: &mut Vec<Effect>) {
        let Some(node) = self.nodes.get(node_id) else {
            return;
        };
        if !node.connected || node.leaving.is_some() || node.preemption.is_some() {
            return;
        }
        let app_packages: Vec<AppPackage> = self
            .pool_packages(&node.pool)
            .into_iter()
            .filter(|p| p.unresolved.is_none())
            .collect();
        if !app_packages.is_empty() {
            fx.push(Effect::InstallPackages {
                node: node_id.to_string(),
                app_packages,
            });
        }
    }

    /// Delete one version, or (without `version`) the whole application. A package that a
    /// pool references (by version, or as the default of a reference without one) cannot be
    /// deleted: nodes joining that pool would have nothing to install. Tasks are not checked:
    /// one that references a deleted package fails when it is dispatched, as a pre-processing
    /// error.
    pub(crate) fn delete_application_package(
        &mut self,
        application_id: &str,
        version: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = id_key(application_id);
        let app = self
            .applications
            .get(&key)
            .ok_or_else(|| CoreError::ApplicationNotFound(application_id.into()))?;
        match version {
            None => {
                if let Some(pool) = self.pool_using(&key, None).or_else(|| {
                    app.packages
                        .keys()
                        .find_map(|v| self.pool_using(&key, Some(v)))
                }) {
                    return Err(CoreError::ApplicationPackageInUse(format!(
                        "Pool '{pool}' references application '{}'; change the pool's applicationPackageReferences first.",
                        app.id
                    )));
                }
                let app = self.applications.remove(&key).expect("checked");
                Ok(Reply::BlobsReleased(
                    app.packages.into_values().map(|p| p.blob).collect(),
                ))
            }
            Some(v) => {
                if !app.packages.contains_key(v) {
                    return Err(CoreError::ApplicationPackageNotFound(
                        app.id.clone(),
                        v.into(),
                    ));
                }
                let is_default = app.default_version.as_deref() == Some(v);
                let pool = self
                    .pool_using(&key, Some(v))
                    .or_else(|| is_default.then(|| self.pool_using(&key, None)).flatten());
                if let Some(pool) = pool {
                    return Err(CoreError::ApplicationPackageInUse(format!(
                        "Pool '{pool}' uses version '{v}' of application '{}'; change the pool's applicationPackageReferences (or the default version) first.",
                        app.id
                    )));
                }
                let app = self.applications.get_mut(&key).expect("checked");
                let package = app.packages.remove(v).expect("checked");
                if is_default {
                    app.default_version = None;
                }
                app.last_modified = now;
                Ok(Reply::BlobsReleased(vec![package.blob]))
            }
        }
    }

    /// A pool (not being deleted) whose references name this application with this version
    /// (`None`: with no version).
    fn pool_using(&self, app_key: &str, version: Option<&str>) -> Option<String> {
        self.pools
            .values()
            .filter(|p| p.state != PoolState::Deleting)
            .find(|p| {
                p.spec.application_package_references.iter().any(|r| {
                    id_key(&r.application_id) == app_key && r.version.as_deref() == version
                })
            })
            .map(|p| p.spec.id.clone())
    }

    /// Check a pool's or a task's references, as Azure does when they are set: the
    /// application and an explicit version must exist. A pool's reference without a version
    /// needs a default version; a task's is resolved when it runs (and fails then without one).
    pub(crate) fn check_package_refs(
        &self,
        refs: &[ApplicationPackageReference],
        pool: bool,
    ) -> Result<(), CoreError> {
        for r in refs {
            let Some(app) = self.applications.get(&id_key(&r.application_id)) else {
                return Err(CoreError::InvalidApplicationPackageReferences(format!(
                    "The application '{}' does not exist.",
                    r.application_id
                )));
            };
            match &r.version {
                Some(v) if !app.packages.contains_key(v) => {
                    return Err(CoreError::InvalidApplicationPackageReferences(format!(
                        "The application '{}' has no version '{v}'.",
                        app.id
                    )))
                }
                None if pool && app.default_version.is_none() => {
                    return Err(CoreError::InvalidApplicationPackageReferences(format!(
                        "The application '{}' has no default version; name a version in the reference.",
                        app.id
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The packages behind `refs` as they are now, for a run or start task. Duplicates
    /// (the pool's and the task's) appear once; what cannot be resolved is marked so the run
    /// fails as a pre-processing error.
    pub(crate) fn resolve_packages<'a>(
        &self,
        refs: impl IntoIterator<Item = &'a ApplicationPackageReference>,
    ) -> Vec<AppPackage> {
        let mut out: Vec<AppPackage> = Vec::new();
        for r in refs {
            let app = self.applications.get(&id_key(&r.application_id));
            let is_default = r.version.is_none();
            let version = r
                .version
                .clone()
                .or_else(|| app.and_then(|a| a.default_version.clone()));
            let package = app
                .zip(version.as_ref())
                .and_then(|(a, v)| a.packages.get(v));
            let resolved = match (app, &version, package) {
                (Some(a), Some(v), Some(p)) => AppPackage {
                    application_id: a.id.clone(),
                    version: v.clone(),
                    is_default,
                    sha256: p.sha256.clone(),
                    blob: p.blob.clone(),
                    url: String::new(),
                    unresolved: None,
                },
                _ => AppPackage {
                    application_id: app.map_or(r.application_id.clone(), |a| a.id.clone()),
                    version: version.clone().unwrap_or_default(),
                    is_default,
                    sha256: String::new(),
                    blob: String::new(),
                    url: String::new(),
                    unresolved: Some(match (app, &version) {
                        (None, _) => {
                            format!("The application '{}' does not exist.", r.application_id)
                        }
                        (Some(a), None) => format!(
                            "The application '{}' has no default version, and the reference names none.",
                            a.id
                        ),
                        (Some(a), Some(v)) => {
                            format!("The application '{}' has no version '{v}'.", a.id)
                        }
                    }),
                },
            };
            if let Some(same) = out.iter_mut().find(|p| {
                id_key(&p.application_id) == id_key(&resolved.application_id)
                    && p.version == resolved.version
            }) {
                same.is_default |= resolved.is_default;
            } else {
                out.push(resolved);
            }
        }
        out
    }

    /// The packages a pool's start task and tasks need from the pool's own references.
    pub(crate) fn pool_packages(&self, pool_key: &str) -> Vec<AppPackage> {
        self.pools
            .get(pool_key)
            .map(|p| self.resolve_packages(&p.spec.application_package_references))
            .unwrap_or_default()
    }

    /// `GET /applications`: every application with at least one version, in id order.
    pub fn applications(&self) -> Vec<WireApplication> {
        self.applications
            .values()
            .filter(|a| !a.packages.is_empty())
            .map(wire_application)
            .collect()
    }

    /// `GET /applications/{id}`.
    pub fn application(&self, id: &str) -> Option<WireApplication> {
        self.applications
            .get(&id_key(id))
            .filter(|a| !a.packages.is_empty())
            .map(wire_application)
    }

    /// The extension's view of every application (versions with sizes and digests).
    pub fn application_details(&self) -> Vec<ApplicationDetails> {
        self.applications.values().map(details).collect()
    }

    /// The extension's view of one application.
    pub fn application_detail(&self, id: &str) -> Option<ApplicationDetails> {
        self.applications.get(&id_key(id)).map(details)
    }
}

fn wire_application(a: &Application) -> WireApplication {
    WireApplication {
        id: a.id.clone(),
        display_name: a.display_name.clone().unwrap_or_else(|| a.id.clone()),
        versions: a.packages.keys().cloned().collect(),
    }
}

fn details(a: &Application) -> ApplicationDetails {
    ApplicationDetails {
        id: a.id.clone(),
        display_name: a.display_name.clone().unwrap_or_else(|| a.id.clone()),
        default_version: a.default_version.clone(),
        packages: a
            .packages
            .iter()
            .map(|(v, p)| ApplicationPackageInfo {
                version: v.clone(),
                size: p.size,
                sha256: p.sha256.clone(),
                last_modified: p.last_modified,
            })
            .collect(),
        last_modified: a.last_modified,
    }
}
