//! Scenario tests of the core. Each drives the state machine through one Azure Batch behaviour,
//! named in the comment above it, with [`common::Sim`], which plays the nodes and checks the
//! core's invariants (slots, counts, runs, completed is terminal) after every step.
//!
//! A test marked `#[ignore = "BUG: ..."]` encodes behaviour the core gets wrong today; it is the
//! regression test of the fix.

#[path = "../common/mod.rs"]
mod common;

mod allocation;
mod apps;
mod cleanup;
mod dependencies;
mod exit_conditions;
mod explain;
mod gang_prep;
mod gangs;
mod job_rules;
mod job_tasks;
mod jobs;
mod nodes;
mod pools;
mod preemption;
mod priority;
mod replay;
mod schedules;
mod scheduling;
mod tally;
mod tasks;
mod validation;
