//! Integration tests: the real `git` and, where marked, a real Docker engine.
//!
//! Docker tests skip (with a SKIPPED line on stderr) when no engine answers, unless
//! `GIT_AGENT_REQUIRE_DOCKER=1` is set (as `.ci/run` does), in which case they fail.

mod common;

mod agents;
mod build_attack;
mod cache;
mod claude;
mod cli;
mod codex;
#[cfg(feature = "local-runtime")]
mod completion;
mod conformance;
mod core_loop;
mod current;
mod dashboard;
mod egress;
mod engines;
mod errors;
mod fake_anthropic;
mod fake_gemini;
mod fake_openai;
mod follow;
mod followups;
mod gateway_attack;
mod gemini;
mod guard;
mod hooks;
mod hostile;
mod images;
mod integrate;
mod lifecycle;
mod listing;
mod manual;
mod networks;
mod oci_runtime;
mod offline;
mod opencode;
mod orchestration;
mod podman;
mod preview;
mod progress;
mod promotion;
mod purge;
mod queue;
mod races;
mod reader_attack;
mod recovery;
mod remote;
mod repo_formats;
mod review_attack;
mod runtime_changes;
mod scripting;
mod servers;
mod share;
mod snapshots;
mod spares;
mod state;
mod sync_races;
mod trust;
mod workspace;
