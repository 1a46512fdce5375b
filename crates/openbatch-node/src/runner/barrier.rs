//! The coordination barrier between an instance's run and its agent (see [`Barrier`]).

use std::sync::Arc;

use tokio::sync::watch;

/// Shared by an instance's run and the agent: the run marks its coordination command done,
/// which the agent reports to the server; the agent releases the primary when the server says
/// every instance has coordinated, and the primary's run waits for that before its command
/// line (Azure runs the application command only after the coordination commands of all
/// instances have completed).
#[derive(Debug, Clone, Default)]
pub struct Barrier(Arc<State>);

#[derive(Debug, Default)]
struct State {
    coordinated: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl PartialEq for Barrier {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Barrier {}

impl Barrier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns `true` when the coordination command has completed successfully. Ends (errors)
    /// when the run and every [`Barrier`] handle are gone.
    pub fn watch_coordinated(&self) -> watch::Receiver<bool> {
        self.0.coordinated.subscribe()
    }

    pub fn is_coordinated(&self) -> bool {
        *self.0.coordinated.borrow()
    }

    /// Every instance has coordinated: the primary goes on.
    pub fn release(&self) {
        self.0.released.send_replace(true);
    }

    pub fn is_released(&self) -> bool {
        *self.0.released.borrow()
    }

    pub(super) fn mark_coordinated(&self) {
        self.0.coordinated.send_replace(true);
    }

    /// Waits until [`Barrier::release`]; never returns when that cannot happen any more.
    pub(super) async fn released(&self) {
        let mut rx = self.0.released.subscribe();
        if rx.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
