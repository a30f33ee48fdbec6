//! kube-rs against the emulator: the same client, runtime and semantics an operator uses.

mod common;

mod binary;
mod controller;
mod crd;
mod crud;
mod events;
mod leader;
mod lifecycle;
mod metrics;
mod outage;
mod project_crd;
mod routing;
mod ssa;
mod token;
mod uid_precondition;
mod watch;
