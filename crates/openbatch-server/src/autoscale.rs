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

use crate::engine::Engine;

/// How much history is kept per metric: 24 hours of 30-second samples, enough for any
/// window the Azure documentation shows.
const HISTORY: chrono::Duration = chrono::Duration::hours(24);
/// Most samples kept per metric, whatever the sample interval.
const MAX_SAMPLES: usize = 2880;

type History = BTreeMap<String, VecDeque<(DateTime<Utc>, f64)>>;

pub(crate) struct Autoscaler {
    engine: Arc<Engine>,
    history: Mutex<BTreeMap<String, History>>,
    sample_interval: Duration,
    min_interval: Duration,
}

impl Autoscaler {
    pub(crate) fn new(
        engine: Arc<Engine>,
        sample_interval: Duration,
        min_interval: Duration,
    ) -> Self {
        Self {
            engine,
            history: Mutex::new(BTreeMap::new()),
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
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.retain(|pool, _| samples.iter().any(|(p, _)| p == pool));
        for (pool, s) in samples {
            let h = history.entry(pool).or_default();
            let pending = (s.active_tasks + s.running_tasks) as f64;
            for (name, value) in [
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
            ] {
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
        let s = self.engine.read().pool_sample(pool)?;
        let state = PoolState {
            target_dedicated_nodes: s.target_dedicated,
            target_low_priority_nodes: s.target_low_priority,
            current_dedicated_nodes: s.current_dedicated,
            current_low_priority_nodes: s.current_low_priority,
            task_slots_per_node: s.slots_per_node,
            enable_auto_scale: true,
        };
        let outcome = openbatch_autoscale::evaluate(formula, &state, &self.metrics(pool, now), now);
        Some((to_run(&outcome, now), outcome))
    }

    async fn evaluate_due(&self, now: DateTime<Utc>) {
        let due = self.engine.read().autoscale_due(now, self.min_interval);
        for (pool, formula) in due {
            let Some((run, outcome)) = self.evaluate(&pool, &formula, now) else {
                continue;
            };
            let targets = match &outcome {
                Outcome::Success { applied, .. } => Some((
                    applied.target_dedicated_nodes,
                    applied.target_low_priority_nodes,
                    dealloc(applied.node_deallocation_option),
                )),
                Outcome::Error { .. } => None,
            };
            if let Some(e) = &run.error {
                tracing::info!(pool_id = %pool, code = ?e.code, message = ?e.message, "autoscale evaluation failed; the pool keeps its targets");
            }
            let _ = self
                .engine
                .submit(Input::AutoScaleEvaluated {
                    id: pool,
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
