//! What every request handler shares: the store, the addresses and documents the server
//! publishes, and the signals that end open watches.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::{self, Store};

pub struct AppState {
    pub store: Arc<Mutex<Store>>,
    /// The service-account issuer served in `/.well-known/openid-configuration`.
    pub issuer: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Bumped to end every open watch (shutdown, or a simulated etcd compaction).
    pub stop_watches: tokio::sync::watch::Sender<u64>,
    /// Set once shutdown starts: watches opened from then on end right after their snapshot.
    pub closing: AtomicBool,
}

impl AppState {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        store::lock(&self.store)
    }
}
