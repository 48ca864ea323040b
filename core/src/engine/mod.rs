//! The upgrade engine's decisions, pure: from (the app's spec, its status, what was observed, now) to
//! actions. The ManagedApplication planner is [`crate::rollout`]; Bestie's is [`bestie`]. Executors
//! that carry the actions out live in the `bosun` crate.

pub mod bestie;
pub mod health;
pub mod replicas;

/// The ManagedApplication planner under its first name.
pub use crate::rollout as app;
/// Revisions, under their first path.
pub use crate::rollout::revision;
