//! The autoscaler: samples each pool's metrics on an interval, keeps the history formulas can
//! ask for, evaluates formulas when they are due, and hands the outcome to the core as
//! `Input::AutoScaleEvaluated` (journaled, so the targets a formula chose survive a restart).
//!
//! The history is in memory: after a restart formulas that need samples report
//! `InsufficientSampleData` until enough have been collected again, as a new pool would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    AutoScaleRun, AutoScaleRunError, NameValuePair, NodeDeallocationOption,
};
use openbatch_autoscale::{MetricHistory, Metrics, Outcome, PoolState, Sample};
use openbatch_core::{Input, PoolSample};
use tokio::sync::watch;

use crate::agents::Agents;
use crate::engine::Engine;

/// Evaluations kept per pool for `openbatch autoscale history`.
const RUNS_KEPT: usize = 50;
/// An event (work appearing on or draining from a pool) triggers an evaluation at most this
/// often, so a burst of submissions costs one evaluation.
const EVENT_DEBOUNCE: chrono::Duration = chrono::Duration::seconds(1);

/// One evaluation with what it saw: for `GET /openbatch/pools/{id}/autoscalehistory`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryEntry {
    /// `interval`, `event` (work appeared or drained) or `evaluate` (the REST operation).
    pub(crate) trigger: &'static str,
    pub(crate) pool: PoolState,
    /// The newest sample of each metric, and how many samples the history held.
    pub(crate) latest_metrics: BTreeMap<String, f64>,
    pub(crate) samples: usize,
    pub(crate) run: AutoScaleRun,
    /// Whether the outcome was applied to the pool.
    pub(crate) applied: bool,
}

/// How much history is kept per metric: 24 hours of 30-second samples, enough for any
/// window the Azure documentation shows.
const HISTORY: chrono::Duration = chrono::Duration::hours(24);
/// Most samples kept per metric, whatever the sample interval.
const MAX_SAMPLES: usize = 2880;

type History = BTreeMap<String, VecDeque<(DateTime<Utc>, f64)>>;

pub(crate) struct Autoscaler {
    engine: Arc<Engine>,
    /// Where the nodes' resource metrics arrive.
    agents: Arc<Agents>,
    history: Mutex<BTreeMap<String, History>>,
    runs: Mutex<BTreeMap<String, VecDeque<HistoryEntry>>>,
    /// Whether each pool had work waiting at its last evaluation (for event triggers).
    had_work: Mutex<BTreeMap<String, bool>>,
    sample_interval: Duration,
    min_interval: Duration,
}

impl Autoscaler {
    pub(crate) fn new(
        engine: Arc<Engine>,
        agents: Arc<Agents>,
        sample_interval: Duration,
        min_interval: Duration,
    ) -> Self {
        Self {
            engine,
            agents,
            history: Mutex::new(BTreeMap::new()),
            runs: Mutex::new(BTreeMap::new()),
            had_work: Mutex::new(BTreeMap::new()),
            sample_interval,
            min_interval,
        }
    }

    pub(crate) fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// Sample on the sample interval; evaluate what is due every second (and at once after a
    /// formula was set, since the core forgets the last run then).
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut sample = tokio::time::interval(self.sample_interval);
        let mut check = tokio::time::interval(Duration::from_millis(250).min(self.sample_interval));
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sample.tick() => self.sample(Utc::now()),
                _ = check.tick() => self.evaluate_due(Utc::now()).await,
                // The guard `wait_for` returns must not live across the awaits above.
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
        }
    }

    fn sample(&self, now: DateTime<Utc>) {
        let samples: Vec<(String, PoolSample)> = {
            let core = self.engine.read();
            core.pool_ids()
                .into_iter()
                .filter_map(|p| core.pool_sample(&p).map(|s| (p, s)))
                .collect()
        };
        {
            let keep = |pool: &String| samples.iter().any(|(p, _)| p == pool);
            self.history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|pool, _| keep(pool));
            self.runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|pool, _| keep(pool));
        }
        self.record(samples, now);
    }

    fn record(&self, samples: Vec<(String, PoolSample)>, now: DateTime<Utc>) {
        let node_ids = self.engine.read().node_ids();
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        for (pool, s) in samples {
            let nodes = node_ids
                .iter()
                .filter(|(_, p)| *p == pool)
                .map(|(n, _)| n.as_str());
            let resources = resource_samples(&self.agents.latest_metrics(nodes));
            let h = history.entry(pool).or_default();
            let pending = (s.active_tasks + s.running_tasks) as f64;
            for (name, value) in resources.into_iter().chain([
                ("$ActiveTasks", s.active_tasks as f64),
                ("$RunningTasks", s.running_tasks as f64),
                ("$PendingTasks", pending),
                ("$SucceededTasks", s.succeeded_tasks as f64),
                ("$FailedTasks", s.failed_tasks as f64),
                (
                    "$SampleNodeCount",
                    f64::from(s.current_dedicated + s.current_low_priority),
                ),
                ("$UsableNodeCount", f64::from(s.usable_nodes)),
                ("$PreemptedNodeCount", f64::from(s.preempted_nodes)),
            ]) {
                let series = h.entry(name.to_string()).or_default();
                series.push_back((now, value));
                while series.len() > MAX_SAMPLES
                    || series.front().is_some_and(|(t, _)| now - *t > HISTORY)
                {
                    series.pop_front();
                }
            }
        }
    }

    fn metrics(&self, pool: &str, now: DateTime<Utc>) -> Metrics {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = Metrics::new();
        if let Some(h) = history.get(&openbatch_core::id_key(pool)) {
            for (name, series) in h {
                let samples = series
                    .iter()
                    .map(|(t, v)| Sample::new((now - *t).num_milliseconds() as f64 / 1000.0, *v))
                    .collect();
                m.insert(name.clone(), MetricHistory::new(samples));
            }
        }
        m
    }

    /// Evaluate a formula against a pool's current state and history, without applying it.
    pub(crate) fn evaluate(
        &self,
        pool: &str,
        formula: &str,
        now: DateTime<Utc>,
    ) -> Option<(AutoScaleRun, Outcome)> {
        let (entry, outcome) = self.evaluate_entry(pool, formula, now, "evaluate")?;
        let run = entry.run.clone();
        self.remember(pool, entry);
        Some((run, outcome))
    }

    fn evaluate_entry(
        &self,
        pool: &str,
        formula: &str,
        now: DateTime<Utc>,
        trigger: &'static str,
    ) -> Option<(HistoryEntry, Outcome)> {
        let s = self.engine.read().pool_sample(pool)?;
        let state = PoolState {
            target_dedicated_nodes: s.target_dedicated,
            target_low_priority_nodes: s.target_low_priority,
            current_dedicated_nodes: s.current_dedicated,
            current_low_priority_nodes: s.current_low_priority,
            task_slots_per_node: s.slots_per_node,
            enable_auto_scale: true,
        };
        let metrics = self.metrics(pool, now);
        let outcome = openbatch_autoscale::evaluate(formula, &state, &metrics, now);
        let (latest_metrics, samples) = {
            let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            let h = history.get(&openbatch_core::id_key(pool));
            (
                h.map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| v.back().map(|(_, x)| (k.clone(), *x)))
                        .collect()
                })
                .unwrap_or_default(),
                h.and_then(|h| h.values().map(VecDeque::len).max())
                    .unwrap_or(0),
            )
        };
        let entry = HistoryEntry {
            trigger,
            pool: state,
            latest_metrics,
            samples,
            run: to_run(&outcome, now),
            applied: false,
        };
        Some((entry, outcome))
    }

    fn remember(&self, pool: &str, entry: HistoryEntry) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let list = runs.entry(openbatch_core::id_key(pool)).or_default();
        list.push_back(entry);
        while list.len() > RUNS_KEPT {
            list.pop_front();
        }
    }

    /// The pool's last evaluations, newest first.
    pub(crate) fn history(&self, pool: &str) -> Vec<HistoryEntry> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.get(&openbatch_core::id_key(pool))
            .map(|l| l.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    async fn evaluate_due(&self, now: DateTime<Utc>) {
        let pools = self.engine.read().autoscale_pools(now, self.min_interval);
        for p in pools {
            let key = openbatch_core::id_key(&p.id);
            let has_work = self
                .engine
                .read()
                .pool_sample(&p.id)
                .is_some_and(|s| s.active_tasks + s.running_tasks > 0);
            let changed = self
                .had_work
                .lock()
                .unwrap_or_else(|x| x.into_inner())
                .get(&key)
                .is_some_and(|had| *had != has_work);
            let settled = p.last.is_none_or(|t| now - t >= EVENT_DEBOUNCE);
            let trigger = if p.due {
                "interval"
            } else if p.on_events && changed && settled {
                "event"
            } else {
                continue;
            };
            // A first evaluation (a new pool, a new formula) and an event look at the pool as
            // it is now: take a fresh sample so the formula does not run on no history, or on
            // history from before the work arrived.
            if p.last.is_none() || trigger == "event" {
                let fresh: Vec<(String, PoolSample)> = {
                    let core = self.engine.read();
                    core.pool_sample(&p.id)
                        .map(|s| (key.clone(), s))
                        .into_iter()
                        .collect()
                };
                self.record(fresh, now);
            }
            let Some((mut entry, outcome)) = self.evaluate_entry(&p.id, &p.formula, now, trigger)
            else {
                continue;
            };
            self.had_work
                .lock()
                .unwrap_or_else(|x| x.into_inner())
                .insert(key, has_work);
            let targets = match &outcome {
                Outcome::Success { applied, .. } => Some((
                    applied.target_dedicated_nodes,
                    applied.target_low_priority_nodes,
                    dealloc(applied.node_deallocation_option),
                )),
                Outcome::Error { .. } => None,
            };
            if let Some(e) = &entry.run.error {
                tracing::info!(pool_id = %p.id, code = ?e.code, message = ?e.message, trigger, "autoscale evaluation failed; the pool keeps its targets");
            }
            entry.applied = targets.is_some();
            let run = entry.run.clone();
            self.remember(&p.id, entry);
            let _ = self
                .engine
                .submit(Input::AutoScaleEvaluated {
                    id: p.id,
                    run,
                    targets,
                })
                .await;
        }
    }
}

fn dealloc(o: Option<openbatch_autoscale::NodeDeallocationOption>) -> NodeDeallocationOption {
    use openbatch_autoscale::NodeDeallocationOption as F;
    match o.unwrap_or_default() {
        F::Requeue => NodeDeallocationOption::Requeue,
        F::Terminate => NodeDeallocationOption::Terminate,
        F::TaskCompletion => NodeDeallocationOption::TaskCompletion,
        F::RetainedData => NodeDeallocationOption::RetainedData,
    }
}

/// The wire `AutoScaleRun` of an outcome.
pub(crate) fn to_run(outcome: &Outcome, now: DateTime<Utc>) -> AutoScaleRun {
    AutoScaleRun {
        timestamp: now,
        results: Some(outcome.results().to_string()),
        error: outcome.error().map(|e| AutoScaleRunError {
            code: serde_json::to_value(e.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string)),
            message: Some(e.message.clone()),
            values: e
                .values
                .iter()
                .map(|v| NameValuePair {
                    name: Some(v.name.clone()),
                    value: Some(v.value.clone()),
                })
                .collect(),
        }),
    }
}
/// The resource metrics of a pool's nodes as formulas read them: `$CPUPercent` (the mean over
/// the nodes), `$MemoryBytes` (mean megabytes in use) and `$DiskBytes` (mean gigabytes in use),
/// as the Azure documentation defines them, and the disk and network traffic since the nodes'
/// previous reports, summed over the nodes. None when no node has reported: formulas then see
/// no samples, as on Azure since these metrics were retired.
fn resource_samples(nodes: &[openbatch_api::agent::NodeMetrics]) -> Vec<(&'static str, f64)> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let n = nodes.len() as f64;
    let mean = |f: &dyn Fn(&openbatch_api::agent::NodeMetrics) -> f64| {
        nodes.iter().map(f).sum::<f64>() / n
    };
    let sum = |f: &dyn Fn(&openbatch_api::agent::NodeMetrics) -> u64| {
        nodes.iter().map(f).sum::<u64>() as f64
    };
    vec![
        ("$CPUPercent", mean(&|m| m.cpu_percent)),
        (
            "$MemoryBytes",
            mean(&|m| m.memory_used_bytes as f64 / (1024.0 * 1024.0)),
        ),
        (
            "$DiskBytes",
            mean(&|m| m.disk_used_bytes as f64 / (1024.0 * 1024.0 * 1024.0)),
        ),
        ("$DiskReadBytes", sum(&|m| m.disk_read_bytes)),
        ("$DiskWriteBytes", sum(&|m| m.disk_write_bytes)),
        ("$DiskReadOps", sum(&|m| m.disk_read_ops)),
        ("$DiskWriteOps", sum(&|m| m.disk_write_ops)),
        ("$NetworkInBytes", sum(&|m| m.network_in_bytes)),
        ("$NetworkOutBytes", sum(&|m| m.network_out_bytes)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use openbatch_api::agent::NodeMetrics;

    #[test]
    fn resource_metrics_average_gauges_and_sum_traffic() {
        assert!(resource_samples(&[]).is_empty());
        let a = NodeMetrics {
            cpu_percent: 20.0,
            memory_used_bytes: 1024 * 1024 * 100,
            disk_used_bytes: 1024 * 1024 * 1024 * 4,
            network_in_bytes: 10,
            disk_write_ops: 3,
            ..Default::default()
        };
        let b = NodeMetrics {
            cpu_percent: 60.0,
            memory_used_bytes: 1024 * 1024 * 300,
            disk_used_bytes: 1024 * 1024 * 1024 * 2,
            network_in_bytes: 5,
            disk_write_ops: 4,
            ..Default::default()
        };
        let s: BTreeMap<&str, f64> = resource_samples(&[a, b]).into_iter().collect();
        assert_eq!(s["$CPUPercent"], 40.0);
        assert_eq!(s["$MemoryBytes"], 200.0);
        assert_eq!(s["$DiskBytes"], 3.0);
        assert_eq!(s["$NetworkInBytes"], 15.0);
        assert_eq!(s["$DiskWriteOps"], 7.0);
    }
}
