//! The local provider's GPUs: which of the host's GPUs each local node holds.
//!
//! With `[local] gpus = "assign"` (the default), the server lists the host's NVIDIA GPUs once at
//! start (`openbatch_node::gpu::discover`). A local node whose VM size has `gpus = N` gets N GPUs
//! that no other live local node holds (across all pools), lowest index first; its agent shows
//! exactly those to its tasks. A node of a size without GPUs gets none (its tasks see no GPU).
//! When too few are free, the node is not allocated: the core drops it and records an
//! `AllocationFailed` resize error on the pool (`Input::NodeAllocationFailed`).
//!
//! The assignment is written to `DATA_DIR/nodes/<node>/gpus.json` before the agent starts, and
//! read back for every node the core still has when the server restarts, before anything new is
//! provisioned, so a restart never hands one GPU out twice. A node's GPUs are released when the
//! provider has removed it (its agent and tasks are gone).
//!
//! With `gpus = "ignore"` nothing is checked or restricted: each local agent shows its tasks
//! every GPU it finds, as a joined node does (for developing GPU pools on a machine without
//! enough GPUs).

use std::collections::BTreeMap;
use std::path::Path;

use openbatch_api::agent::GpuInfo;
use serde::{Deserialize, Serialize};

/// The name of a node's assignment file, in its directory under `DATA_DIR/nodes`.
pub(crate) const ASSIGNMENT_FILE: &str = "gpus.json";

/// `[local]` in the server config: the local provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// What the local provider does with the host's GPUs (`OPENBATCH_LOCAL_GPUS`).
    pub gpus: GpuMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuMode {
    /// Each local node gets its size's number of the host's GPUs, its own; a node that cannot
    /// get them is not allocated.
    #[default]
    Assign,
    /// No check and no restriction: every local node's tasks see every GPU.
    Ignore,
}

impl std::str::FromStr for GpuMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "assign" => Ok(GpuMode::Assign),
            "ignore" => Ok(GpuMode::Ignore),
            _ => Err(format!("'{s}' is not a GPU mode (assign or ignore)")),
        }
    }
}

/// Too few free GPUs for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shortage {
    pub(crate) needed: u32,
    pub(crate) free: u32,
    pub(crate) total: u32,
}

/// The host's GPUs and which node holds which.
#[derive(Debug, Default)]
pub(crate) struct GpuAllocator {
    gpus: Vec<GpuInfo>,
    /// Node id -> the UUIDs it holds.
    held: BTreeMap<String, Vec<String>>,
}

impl GpuAllocator {
    pub(crate) fn new(mut gpus: Vec<GpuInfo>) -> Self {
        gpus.sort_by_key(|g| g.index);
        Self {
            gpus,
            held: BTreeMap::new(),
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.gpus.len()
    }

    fn holder(&self, uuid: &str) -> Option<&str> {
        self.held
            .iter()
            .find(|(_, u)| u.iter().any(|x| x == uuid))
            .map(|(n, _)| n.as_str())
    }

    /// The GPUs no node holds, lowest index first.
    pub(crate) fn free(&self) -> Vec<&GpuInfo> {
        self.gpus
            .iter()
            .filter(|g| self.holder(&g.uuid).is_none())
            .collect()
    }

    /// What `node` holds.
    pub(crate) fn held_by(&self, node: &str) -> Vec<GpuInfo> {
        let Some(uuids) = self.held.get(node) else {
            return Vec::new();
        };
        self.gpus
            .iter()
            .filter(|g| uuids.contains(&g.uuid))
            .cloned()
            .collect()
    }

    /// Give `node` `n` GPUs of its own. A node that already holds GPUs keeps them (and gets
    /// what is missing, if it can).
    pub(crate) fn assign(&mut self, node: &str, n: u32) -> Result<Vec<GpuInfo>, Shortage> {
        let have = self.held.get(node).map_or(0, |h| h.len());
        let missing = (n as usize).saturating_sub(have);
        let free: Vec<String> = self.free().iter().map(|g| g.uuid.clone()).collect();
        if free.len() < missing {
            return Err(Shortage {
                needed: n,
                free: free.len() as u32,
                total: self.gpus.len() as u32,
            });
        }
        if n > 0 {
            self.held
                .entry(node.to_string())
                .or_default()
                .extend(free.into_iter().take(missing));
        }
        Ok(self.held_by(node))
    }

    /// After a restart: `node` holds these again (as its assignment file says). A UUID this
    /// machine no longer has, or that another node holds already, is left out with a warning.
    pub(crate) fn restore(&mut self, node: &str, uuids: &[String]) -> Vec<GpuInfo> {
        for uuid in uuids {
            if !self.gpus.iter().any(|g| &g.uuid == uuid) {
                tracing::warn!(node_id = %node, gpu = %uuid, "a GPU assigned to a local node before the restart is gone from this machine");
                continue;
            }
            if let Some(other) = self.holder(uuid) {
                if other != node {
                    tracing::warn!(node_id = %node, gpu = %uuid, holder = %other, "a GPU assigned to two local nodes; the first keeps it");
                }
                continue;
            }
            self.held
                .entry(node.to_string())
                .or_default()
                .push(uuid.clone());
        }
        self.held_by(node)
    }

    /// `node` is gone: its GPUs are free again.
    pub(crate) fn release(&mut self, node: &str) -> Vec<String> {
        self.held.remove(node).unwrap_or_default()
    }
}

/// Write a node's assignment into its directory (a temporary file, then a rename).
pub(crate) fn save(dir: &Path, gpus: &[GpuInfo]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{ASSIGNMENT_FILE}.tmp"));
    let text = serde_json::to_vec(gpus).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(ASSIGNMENT_FILE))
}

/// A node's assignment file: the UUIDs it lists (none when it has none, or it is unreadable).
pub(crate) fn load(dir: &Path) -> Vec<String> {
    let path = dir.join(ASSIGNMENT_FILE);
    let Ok(text) = std::fs::read(&path) else {
        return Vec::new();
    };
    match serde_json::from_slice::<Vec<GpuInfo>>(&text) {
        Ok(gpus) => gpus.into_iter().map(|g| g.uuid).collect(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "an unreadable GPU assignment; the node holds no GPU");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: u32) -> Vec<GpuInfo> {
        (0..n)
            .rev()
            .map(|i| GpuInfo {
                index: i,
                uuid: format!("GPU-{i}"),
                name: "Fake".into(),
                memory_mib: 1024,
            })
            .collect()
    }

    fn uuids(g: &[GpuInfo]) -> Vec<&str> {
        g.iter().map(|g| g.uuid.as_str()).collect()
    }

    #[test]
    fn assigns_distinct_gpus_lowest_first_and_releases_them() {
        let mut a = GpuAllocator::new(host(4));
        assert_eq!(uuids(&a.assign("n1", 1).unwrap()), ["GPU-0"]);
        assert_eq!(uuids(&a.assign("n2", 2).unwrap()), ["GPU-1", "GPU-2"]);
        assert!(a.assign("n3", 0).unwrap().is_empty());
        // Asking again for a node that holds its GPUs gives the same ones.
        assert_eq!(uuids(&a.assign("n1", 1).unwrap()), ["GPU-0"]);
        assert_eq!(
            uuids(&a.free().into_iter().cloned().collect::<Vec<_>>()),
            ["GPU-3"]
        );
        assert_eq!(a.release("n2"), ["GPU-1", "GPU-2"]);
        assert!(a.release("n2").is_empty());
        assert_eq!(
            uuids(&a.assign("n4", 3).unwrap()),
            ["GPU-1", "GPU-2", "GPU-3"]
        );
    }

    #[test]
    fn exhaustion_is_a_shortage_and_changes_nothing() {
        let mut a = GpuAllocator::new(host(2));
        a.assign("n1", 1).unwrap();
        let e = a.assign("n2", 2).unwrap_err();
        assert_eq!(
            e,
            Shortage {
                needed: 2,
                free: 1,
                total: 2
            }
        );
        assert!(a.held_by("n2").is_empty());
        assert_eq!(a.free().len(), 1);
        let none = GpuAllocator::new(Vec::new()).assign("n", 1).unwrap_err();
        assert_eq!((none.needed, none.free, none.total), (1, 0, 0));
    }

    #[test]
    fn restart_restores_from_the_files_and_never_gives_a_gpu_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (d1, d2, d3) = (
            dir.path().join("n1"),
            dir.path().join("n2"),
            dir.path().join("n3"),
        );
        for d in [&d1, &d2, &d3] {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut before = GpuAllocator::new(host(3));
        save(&d1, &before.assign("n1", 1).unwrap()).unwrap();
        save(&d2, &before.assign("n2", 1).unwrap()).unwrap();
        // n3's file names a GPU n1 holds (a hand-edited or stale file) and one that is gone.
        std::fs::write(d3.join(ASSIGNMENT_FILE), r#"[{"index":0,"uuid":"GPU-0","name":"Fake","memoryMib":1},{"index":9,"uuid":"GPU-9","name":"Gone","memoryMib":1}]"#).unwrap();

        let mut after = GpuAllocator::new(host(3));
        assert_eq!(uuids(&after.restore("n1", &load(&d1))), ["GPU-0"]);
        assert_eq!(uuids(&after.restore("n2", &load(&d2))), ["GPU-1"]);
        assert!(after.restore("n3", &load(&d3)).is_empty());
        // The one free GPU is the one nobody held before the restart.
        assert_eq!(uuids(&after.assign("n4", 1).unwrap()), ["GPU-2"]);
        assert!(after.assign("n5", 1).is_err());
        // A missing or broken file holds nothing.
        assert!(load(&dir.path().join("nope")).is_empty());
        std::fs::write(d3.join(ASSIGNMENT_FILE), "{not json").unwrap();
        assert!(load(&d3).is_empty());
    }

    #[test]
    fn modes_parse() {
        assert_eq!("Assign".parse::<GpuMode>().unwrap(), GpuMode::Assign);
        assert_eq!(" ignore ".parse::<GpuMode>().unwrap(), GpuMode::Ignore);
        assert!("maybe".parse::<GpuMode>().is_err());
        let cfg: LocalConfig = toml::from_str("gpus = \"ignore\"").unwrap();
        assert_eq!(cfg.gpus, GpuMode::Ignore);
        assert!(toml::from_str::<LocalConfig>("gpus = \"all\"").is_err());
        assert_eq!(LocalConfig::default().gpus, GpuMode::Assign);
    }
}
