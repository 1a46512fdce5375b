//! Server configuration: defaults, a TOML file, then environment overrides (`OPENBATCH_*`),
//! then command-line flags (applied by the binary).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::vmsizes::VmSize;

/// The default listen address: loopback, so a fresh install is not exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8771";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the database, credentials and local node roots live.
    pub data_dir: PathBuf,
    /// `host:port` to listen on; port 0 picks a free port.
    pub listen: String,
    /// The URL clients and nodes use to reach this server, if not `http://<listen>`.
    pub public_url: Option<String>,
    /// The account created on first start.
    pub account_name: String,
    /// How long a node may be out of contact before its tasks are requeued and it is replaced.
    #[serde(with = "secs")]
    pub node_lost_after: Duration,
    /// How often agents say they are alive.
    #[serde(with = "secs")]
    pub heartbeat_interval: Duration,
    /// The program run for local nodes (default: this executable, as `openbatch node run`).
    pub agent_program: Option<PathBuf>,
    /// Extra or overriding VM sizes, by name.
    pub vm_sizes: Vec<VmSize>,
    /// How often each pool's metrics are sampled for autoscale formulas (Azure: 30 s).
    #[serde(with = "secs")]
    pub autoscale_sample_interval: Duration,
    /// The shortest autoscale evaluation interval accepted (Azure: 5 minutes). Lower it for
    /// development and tests.
    #[serde(with = "secs")]
    pub autoscale_min_interval: Duration,
    /// How long the tasks of a low-priority node that is being preempted get between SIGTERM
    /// and SIGKILL (an operator's preemption may ask for another value).
    #[serde(with = "secs")]
    pub preemption_grace: Duration,
    /// How long a preempted node's capacity stays away before it boots again.
    #[serde(with = "secs")]
    pub preemption_recovery: Duration,
    /// For testing spot workloads: the chance per hour that each low-priority local node is
    /// preempted (0, the default, never; 60 about once a minute).
    pub preemption_rate: f64,
    /// The shortest `recurrenceInterval` and `startWindow` of a job schedule accepted (Azure:
    /// 1 minute). Lower it for development and tests.
    #[serde(with = "secs")]
    pub job_schedule_min_recurrence: Duration,
    /// The account's auto-storage (`[storage]`): a local directory by default.
    pub storage: openbatch_storage::StorageConfig,
    /// The local provider (`[local]`): what it does with the host's GPUs (see `gpus.rs`).
    pub local: crate::gpus::LocalConfig,
    /// `/metrics` (`[metrics]`): who may read it (see `metrics/mod.rs`).
    pub metrics: crate::metrics::MetricsConfig,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v < 0.0 {
            return Err(serde::de::Error::custom(
                "expected a number of seconds >= 0",
            ));
        }
        Ok(Duration::from_secs_f64(v))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("openbatch-data"),
            listen: DEFAULT_LISTEN.into(),
            public_url: None,
            account_name: "openbatch".into(),
            node_lost_after: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(5),
            agent_program: None,
            vm_sizes: Vec::new(),
            autoscale_sample_interval: Duration::from_secs(30),
            autoscale_min_interval: Duration::from_secs(5 * 60),
            preemption_grace: Duration::from_secs(30),
            preemption_recovery: Duration::from_secs(60),
            preemption_rate: 0.0,
            job_schedule_min_recurrence: Duration::from_secs(60),
            storage: openbatch_storage::StorageConfig::default(),
            local: crate::gpus::LocalConfig::default(),
            metrics: crate::metrics::MetricsConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Defaults, then the TOML file if given, then `OPENBATCH_*` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = get("OPENBATCH_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("OPENBATCH_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("OPENBATCH_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("OPENBATCH_ACCOUNT_NAME") {
            self.account_name = v;
        }
        for (name, field) in [
            (
                "OPENBATCH_AUTOSCALE_SAMPLE_INTERVAL",
                &mut self.autoscale_sample_interval,
            ),
            (
                "OPENBATCH_AUTOSCALE_MIN_INTERVAL",
                &mut self.autoscale_min_interval,
            ),
            (
                "OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE",
                &mut self.job_schedule_min_recurrence,
            ),
        ] {
            if let Some(v) = get(name) {
                let secs: f64 = v
                    .parse()
                    .with_context(|| format!("{name}={v} is not a number of seconds"))?;
                *field = Duration::from_secs_f64(secs.max(0.05));
            }
        }
        for (name, field) in [
            ("OPENBATCH_PREEMPTION_GRACE", &mut self.preemption_grace),
            (
                "OPENBATCH_PREEMPTION_RECOVERY",
                &mut self.preemption_recovery,
            ),
        ] {
            if let Some(v) = get(name) {
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .with_context(|| format!("{name}={v} is not a number of seconds"))?;
                *field = Duration::from_secs_f64(secs);
            }
        }
        if let Some(v) = get("OPENBATCH_PREEMPTION_RATE") {
            self.preemption_rate = v
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .with_context(|| {
                    format!("OPENBATCH_PREEMPTION_RATE={v} is not a rate per hour >= 0")
                })?;
        }
        if !self.preemption_rate.is_finite() || self.preemption_rate < 0.0 {
            anyhow::bail!(
                "preemption_rate must be a number >= 0 (preemptions per node per hour), got {}",
                self.preemption_rate
            );
        }
        if let Some(v) = get("OPENBATCH_NODE_LOST_AFTER") {
            let secs: f64 = v.parse().with_context(|| {
                format!("OPENBATCH_NODE_LOST_AFTER={v} is not a number of seconds")
            })?;
            self.node_lost_after = Duration::from_secs_f64(secs.max(0.0));
        }
        if let Some(v) = get("OPENBATCH_LOCAL_GPUS") {
            self.local.gpus = v
                .parse()
                .map_err(|e| anyhow::anyhow!("OPENBATCH_LOCAL_GPUS: {e}"))?;
        }
        self.storage.apply_env(&get)?;
        self.metrics.apply_env(&get)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_then_env() {
        let mut cfg: ServerConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nnode_lost_after = 5\n[[vm_sizes]]\nname = \"Lab_Box\"\ncores = 3\nmemory_mib = 1024\n",
        )
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9000");
        assert_eq!(cfg.node_lost_after, Duration::from_secs(5));
        assert_eq!(cfg.vm_sizes[0].cores, 3);
        cfg.apply_env(|k| (k == "OPENBATCH_LISTEN").then(|| "0.0.0.0:1".to_string()))
            .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:1");
    }

    #[test]
    fn storage_table_and_env() {
        let mut cfg: ServerConfig =
            toml::from_str("[storage]\nbackend = \"azure\"\naccount = \"acct\"\nkey = \"a2V5\"\n")
                .unwrap();
        assert_eq!(cfg.storage.backend, openbatch_storage::BackendKind::Azure);
        assert_eq!(cfg.storage.account.as_deref(), Some("acct"));
        cfg.apply_env(|k| (k == "OPENBATCH_STORAGE_BACKEND").then(|| "local".to_string()))
            .unwrap();
        assert_eq!(cfg.storage.backend, openbatch_storage::BackendKind::Local);
        assert!(toml::from_str::<ServerConfig>("[storage]\nbackend = \"ftp\"").is_err());
    }

    #[test]
    fn job_schedule_minimum_from_toml_and_env() {
        assert_eq!(
            ServerConfig::default().job_schedule_min_recurrence,
            Duration::from_secs(60)
        );
        let mut cfg: ServerConfig = toml::from_str("job_schedule_min_recurrence = 5").unwrap();
        assert_eq!(cfg.job_schedule_min_recurrence, Duration::from_secs(5));
        cfg.apply_env(|k| (k == "OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE").then(|| "1".into()))
            .unwrap();
        assert_eq!(cfg.job_schedule_min_recurrence, Duration::from_secs(1));
    }

    #[test]
    fn local_gpu_mode_from_toml_and_env() {
        assert_eq!(ServerConfig::default().local.gpus, crate::GpuMode::Assign);
        let mut cfg: ServerConfig = toml::from_str("[local]\ngpus = \"ignore\"").unwrap();
        assert_eq!(cfg.local.gpus, crate::GpuMode::Ignore);
        cfg.apply_env(|k| (k == "OPENBATCH_LOCAL_GPUS").then(|| "assign".into()))
            .unwrap();
        assert_eq!(cfg.local.gpus, crate::GpuMode::Assign);
        assert!(cfg
            .apply_env(|k| (k == "OPENBATCH_LOCAL_GPUS").then(|| "some".into()))
            .is_err());
        assert!(toml::from_str::<ServerConfig>("[local]\ngpus = \"some\"").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<ServerConfig>("lisen = \"x\"").is_err());
    }
}
