//! The coordination barrier of a multi-instance task's attempt.
//!
//! Azure runs the coordination command on every instance (the primary and the subtasks) and
//! the application command (the task's `commandLine`) on the primary only once the
//! coordination commands of *all* instances have completed. Each agent reports its instance's
//! coordination success (`Input::InstanceCoordinated`); the task notes it
//! (`Task::coordinated`, journaled, so a restart mid-barrier loses nothing), and the report
//! that completes the set emits `Effect::RunPrimaryCommand` for the primary. A coordination
//! command that fails ends its instance's run with that failure, which fails the attempt as
//! any failed subtask does (`gang.rs`); the primary then never runs its command line.
//!
//! Agents report again after reconnecting (a report the crash lost, a release the primary's
//! agent missed): a subtask's repeated report changes nothing, and the primary's, once the
//! barrier is complete, emits the release again.

use crate::input::Effect;
use crate::state::{Core, RunId, Task};

/// Whether every instance still in flight has coordinated (a subtask that ended with success
/// has left the gang).
fn complete(t: &Task) -> bool {
    !t.gang.is_empty() && t.gang.iter().all(|(r, _)| t.coordinated.contains(r))
}

/// The release of the attempt's primary.
fn release(t: &Task) -> Option<Effect> {
    let primary = t.current_run?;
    let (_, node) = t.gang.iter().find(|(r, _)| *r == primary)?;
    Some(Effect::RunPrimaryCommand {
        node: node.clone(),
        run: primary,
    })
}

impl Core {
    /// `run`, an instance of a running gang on `node_id`, ran its coordination command.
    /// Returns whether anything changed or was asked for.
    pub(crate) fn instance_coordinated(
        &mut self,
        node_id: &str,
        run: RunId,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some((jk, tk)) = self.gang_of(run) else {
            return false;
        };
        if self.runs.get(&run).map(|(_, _, n)| n.as_str()) != Some(node_id) {
            return false;
        }
        let Some(t) = self.jobs.get_mut(&jk).and_then(|j| j.tasks.get_mut(&tk)) else {
            return false;
        };
        let added = t.coordinated.insert(run);
        if complete(t) && (added || t.current_run == Some(run)) {
            if let Some(effect) = release(t) {
                fx.push(effect);
                return true;
            }
        }
        added
    }

    /// Subtask `run` ended with success before the attempt's end and leaves the gang: if the
    /// barrier only waited for it, the primary goes on.
    pub(crate) fn instance_left_barrier(&mut self, jk: &str, tk: &str, run: RunId) {
        let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) else {
            return;
        };
        let was_complete = complete(t);
        t.gang.retain(|(r, _)| *r != run);
        t.coordinated.remove(&run);
        if !was_complete && complete(t) {
            if let Some(effect) = release(t) {
                self.deferred.push(effect);
            }
        }
    }
}
