//! Bosun: a GitOps upgrade daemon for Kubernetes.
//!
//! The flow: fetch (git) → parse and validate (`bosun_core::validate`) → observe (cluster) → plan
//! (`bosun_core`) → apply → report (status, git, pull request). This crate holds the edges: the command
//! line, and one module per outside system; the decisions live in `bosun-core`.
#![deny(unsafe_code)] // allowed in one function: git::bound_sockets

pub mod backoff;
pub mod bestie;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod crds;
pub mod dashboard;
pub mod engine;
pub mod files;
pub mod forge;
pub mod git;
pub mod http_client;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod preview;
pub mod prometheus;
pub mod report;
pub mod run;
pub mod watch;
pub mod webhook;
