//! `openbatch task explain JOB TASK`: why a task is not running.

use openbatch_api::models::TaskExplanation;

use super::output::{time, write_stdout, Fields};

/// The explanation for people: the reason and its sentence, then the details that apply.
pub(crate) fn print(x: &TaskExplanation) -> anyhow::Result<()> {
    write_stdout(
        format!(
            "task '{}' of job '{}' is {}: {}\n{}\n\n",
            x.task_id, x.job_id, x.state, x.reason, x.message
        )
        .as_bytes(),
    )?;
    let mut f = Fields::new();
    f.add("required slots", x.required_slots)
        .opt("job state", x.job_state)
        .opt("node", x.node_id.as_deref())
        .opt("start time", x.start_time.map(time))
        .opt("result", x.result)
        .opt("exit code", x.exit_code)
        .opt(
            "failure",
            x.failure_info.as_ref().map(|fi| {
                format!(
                    "{} {}",
                    fi.code.as_deref().unwrap_or(""),
                    fi.message.as_deref().unwrap_or("")
                )
            }),
        )
        .opt("max parallel tasks", x.max_parallel_tasks)
        .opt("running tasks", x.running_tasks)
        .opt("tasks ahead", x.tasks_ahead)
        .opt("instances (nodes)", x.instances)
        .opt("nodes held", x.held_nodes)
        .opt("held nodes empty", x.held_nodes_empty)
        .opt("nodes prepared", x.prepared_nodes);
    if let Some(d) = &x.dependencies {
        f.add(
            "unmet task ids",
            format!(
                "{} ({} in all)",
                d.unmet_task_ids.join(", "),
                d.unmet_task_id_count
            ),
        );
        if !d.blocking_task_ids.is_empty() {
            f.add("blocked by", d.blocking_task_ids.join(", "));
        }
        for r in &d.unmet_ranges {
            f.add(
                "unmet range",
                format!("{}-{} (first unmet: {})", r.start, r.end, r.first_unmet),
            );
        }
    }
    if let Some(p) = &x.pool {
        f.add("pool", &p.pool_id)
            .add("task slots per node", p.task_slots_per_node)
            .add(
                "allocation",
                format!(
                    "{} (target {} dedicated, {} low-priority)",
                    p.allocation_state, p.target_dedicated_nodes, p.target_low_priority_nodes
                ),
            )
            .add(
                "nodes",
                format!("{} ({} schedulable)", p.nodes, p.schedulable_nodes),
            )
            .add(
                "free slots",
                format!("{} of {}", p.free_slots, p.total_slots),
            )
            .add(
                "nodes that fit",
                format!(
                    "{} now, {} when free",
                    p.nodes_that_fit_now, p.nodes_that_could_fit
                ),
            );
    }
    f.print()
}
