//! thrashguard-core: everything thrashguard decides, parsed and rendered as pure functions.
//!
//! This crate owns the parsers of kernel files (`parse`), the policy's single input
//! (`snapshot`), the decision itself (`policy`), victim ranking (`policy::rank`),
//! configuration (`config`), the pressure trace format (`trace`), the lifeline protocol
//! (`lifeline`: wire format, keys, the daemon's checks), `doctor`'s findings, what a
//! notification after an action says (`notify`), the `top` screen (`top_view`), the pressure
//! timeline and stored events (`history`) and their drawing as PNG, SVG or HTML (`report`),
//! and the working-set, dirty-rate and growth arithmetic of `wss`.
//!
//! It must never touch the operating system: no files, sockets, clocks, sleeping or
//! signals, and no `unsafe`. Time arrives as a value inside a [`snapshot::Snapshot`];
//! bytes arrive as slices. The `thrashguard` binary does every side effect. The boundary
//! is enforced by `#![forbid(unsafe_code)]`, by having no libc/rustix dependency and by
//! the `disallowed-methods` list in this crate's `clippy.toml`.
#![forbid(unsafe_code)]

pub mod config;
pub mod config_file;
pub mod doctor;
pub mod history;
pub mod lifeline;
pub mod notify;
pub mod parse;
pub mod policy;
pub mod report;
pub mod snapshot;
pub mod top_view;
pub mod trace;
pub mod units;
pub mod wss;
