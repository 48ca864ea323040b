//! Bosun's core: the resource model, validation of definitions read from git, and (later) the upgrade
//! planner. Nothing here does I/O: no client, no clock, no files. The `bosun` crate feeds it and acts.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod diff;
pub mod engine;
pub mod model;
pub mod names;
pub mod preview;
pub mod report;
pub mod rollout;
pub mod routing;
pub mod shown;
pub mod sync;
pub mod validate;
pub mod window;
pub mod writeback;
pub mod yaml;
