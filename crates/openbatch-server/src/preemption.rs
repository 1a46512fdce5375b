//! Preemption of low-priority nodes on request: the operator's `POST
//! /openbatch/pools/{pool}/nodes/{node}/preempt`, and, for testing spot workloads, random
//! preemptions at a configured rate. The core decides what preemption means (see
//! `openbatch-core/src/preempt.rs`); this shell only picks when, and with what grace.

use std::sync::Arc;
use std::time::Duration;

use openbatch_core::Input;
use rand::Rng;
use tokio::sync::watch;

use crate::server::AppState;

/// How often the random preemption draws.
const DRAW_INTERVAL: Duration = Duration::from_secs(1);

/// The input that preempts `node` with the configured recovery time and `grace` (or the
/// configured grace).
pub(crate) fn input(st: &AppState, pool: String, node: String, grace: Option<Duration>) -> Input {
    Input::PreemptNode {
        pool,
        node,
        grace: grace.unwrap_or(st.config.preemption_grace),
        recovery: st.config.preemption_recovery,
    }
}

/// The chance that one node is preempted within `dt`, at `rate` preemptions per node-hour
/// (a Poisson process).
fn chance(rate: f64, dt: Duration) -> f64 {
    1.0 - (-rate * dt.as_secs_f64() / 3600.0).exp()
}

/// Preempt each low-priority node at random, `preemption_rate` times per hour on average.
pub(crate) async fn random_preemptions(st: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let p = chance(st.config.preemption_rate, DRAW_INTERVAL);
    tracing::warn!(
        rate_per_hour = st.config.preemption_rate,
        "random preemption of low-priority nodes is on (for testing)"
    );
    let mut interval = tokio::time::interval(DRAW_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let candidates = st.engine.read().preemptible_nodes();
        let chosen: Vec<(String, String)> = {
            let mut rng = rand::thread_rng();
            candidates
                .into_iter()
                .filter(|_| rng.gen_bool(p.clamp(0.0, 1.0)))
                .collect()
        };
        for (pool, node) in chosen {
            tracing::info!(pool_id = %pool, node_id = %node, "random preemption");
            if let Err(e) = st.engine.submit(input(&st, pool, node, None)).await {
                tracing::debug!(error = ?e, "a random preemption was refused");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chance_per_draw_follows_the_hourly_rate() {
        assert_eq!(chance(0.0, DRAW_INTERVAL), 0.0);
        // 3600 per hour is about one per second: 1 - 1/e per one-second draw.
        let c = chance(3600.0, Duration::from_secs(1));
        assert!((c - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert!(chance(1e9, DRAW_INTERVAL) <= 1.0);
    }
}
