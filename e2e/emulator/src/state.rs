//! What every request handler shares: the store, the addresses and documents the server
//! publishes, the signals that end open watches, the request counters and the audit record.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::audit::AuditLog;
use crate::error::ApiError;
use crate::metrics::RequestCounter;
use crate::store::{self, Store};
use crate::tokens::SigningKey;

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
    /// `apiserver_request_total` of the current server "process"; replaced on restart, so a
    /// request that started before records into the counters of the process that served it.
    pub requests: Mutex<Arc<RequestCounter>>,
    /// The service-account issuer's key, made on first use and kept across restarts.
    pub signing_key: tokio::sync::OnceCell<Arc<SigningKey>>,
    /// The audit-style request record, when one is kept; it outlives restarts, as an audit
    /// log file outlives the API server process writing it.
    pub audit: Option<AuditLog>,
    /// Injected failures (`Emulator::inject_fault`).
    pub faults: crate::faults::Faults,
}

impl AppState {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        store::lock(&self.store)
    }

    /// The request counters of the current server "process".
    pub fn requests(&self) -> Arc<RequestCounter> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The issuer's signing key, generated (off the async workers) on first use.
    pub async fn signing_key(&self) -> Result<Arc<SigningKey>, ApiError> {
        self.signing_key
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(SigningKey::generate)
                    .await
                    .map_err(|e| ApiError::internal(format!("signing key generation: {e}")))?
                    .map(Arc::new)
                    .map_err(|e| ApiError::internal(format!("signing key generation: {e}")))
            })
            .await
            .cloned()
    }

    /// What a restart of the API server process loses: its watch cache (rebuilt from the
    /// store at the current resourceVersion) and its metrics.
    pub fn restart(&self) {
        self.lock().restart_watch_cache();
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()) = Arc::default();
    }
}
