//! git-agent: delegate coding tasks to AI agents in sandboxed containers and get their work
//! back as ordinary git branches.
//!
//! Modules by responsibility: [`task`] (the state model in refs), [`git`] (host git: refs,
//! bundles, promotion), [`runtime`] (the container engine seam), [`image`] (composing the
//! sandbox image), [`sandbox`] (driving a task's container), [`ops`] (the operations the
//! commands call: typed results and events, never printing), [`cli`] (commands and output).

pub mod agent;
pub mod cli;
pub mod crash;
pub mod data;
pub mod detach;
pub mod duration;
pub mod egress;
pub mod error;
pub mod event_hooks;
pub mod git;
pub mod guard;
pub mod hookfile;
pub mod image;
pub mod interrupt;
pub mod ops;
pub mod registry;
pub mod runtime;
pub mod sandbox;
pub mod stack;
pub mod task;
pub mod template;
pub mod transfer;
pub mod trust;
