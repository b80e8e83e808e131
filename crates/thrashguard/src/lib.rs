//! thrashguard, the binary: every side effect of the guardian lives here.
//!
//! Modules follow the data flow: [`sample`] reads the kernel's pressure files, the pure
//! `thrashguard_core::policy` decides, [`scan`] lists and ranks victims, [`act`] signals,
//! [`daemon`] ties them into the guard loop, [`hooks`] runs notifications after an action
//! on a thread of its own, [`metrics`] serves what it
//! measured to Prometheus, [`record`] and [`replay`] move traces in and
//! out, [`store`] keeps the event history ([`history`] lists it), [`top`] is the live
//! terminal view, [`wss`] measures working sets and dirty rates, [`cli`] is the command line.
//! Decisions are never made here: only in the core crate.

pub mod act;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod doctor_mem;
pub mod doctor_net;
pub mod doctor_procs;
pub mod generate;
pub mod history;
pub mod hooks;
pub mod lifeline;
pub mod logging;
pub mod metrics;
pub mod numa;
pub mod procdir;
pub mod record;
pub mod replay;
pub mod report;
pub mod sample;
pub mod scan;
pub mod sockdiag;
pub mod status;
pub mod store;
pub mod systemd;
pub mod top;
pub mod wss;
