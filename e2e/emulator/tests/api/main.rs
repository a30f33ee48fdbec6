//! kube-rs against the emulator: the same client, runtime and semantics an operator uses.

mod common;

mod binary;
mod crd;
mod crud;
mod lifecycle;
mod ssa;
mod watch;
