//! thrashguard, the binary: every side effect of the guardian lives here.
//!
//! Modules follow the data flow: [`sample`] reads the kernel's pressure files, the pure
//! `thrashguard_core::policy` decides, [`scan`] lists and ranks victims, [`act`] signals,
//! [`daemon`] ties them into the guard loop, [`metrics`] serves what it
//! measured to Prometheus, [`record`] and [`replay`] move traces in and
//! out, [`cli`] is the command line. Decisions are never made here: only in the core crate.

pub mod act;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod doctor_mem;
pub mod doctor_net;
pub mod generate;
pub mod lifeline;
pub mod logging;
pub mod metrics;
pub mod systemd;
pub mod numa;
pub mod procdir;
pub mod record;
pub mod replay;
pub mod sample;
pub mod scan;
pub mod sockdiag;
pub mod status;
