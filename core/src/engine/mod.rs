//! The upgrade engine's decisions (issue [D]), pure: from (the app's spec, its status, what was observed,
//! now) to actions. Executors that carry the actions out live in the `bosun` crate.

pub mod app;
pub mod bestie;
pub mod health;
pub mod replicas;
pub mod revision;
