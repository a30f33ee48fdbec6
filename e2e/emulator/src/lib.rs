//! `kube-emulator`: a Kubernetes API emulator for tests.
//!
//! An HTTP server on 127.0.0.1 that serves the Kubernetes API with the semantics an operator and
//! its end-to-end tests rely on (CRUD, list and watch with resourceVersions and bookmarks,
//! server-side apply with managedFields, status subresources, generation, finalizers, owner
//! reference garbage collection, CRD registration with schema and CEL validation, TokenRequest
//! and the issuer's JWKS, `apiserver_request_total`, an audit-style record of every request
//! with its RBAC attributes), so that the real operator binary and a
//! kube-rs test suite can run where no cluster can, and can be made to live through
//! control-plane outages (restart, dropped connections, refused connections). See README.md.

mod audit;
mod builtin;
mod crd;
mod discovery;
mod error;
mod faults;
mod fieldpath;
mod gc;
mod managed;
mod metrics;
mod object;
mod ops;
mod patch;
mod request;
mod resource_path;
mod resources;
mod response;
mod routes;
mod selectors;
mod server;
mod state;
mod store;
mod tokens;
mod validation;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::task::JoinHandle;

pub use crate::audit::AUDIT_DIR_ENV;
pub use crate::faults::Fault;
pub use crate::metrics::{REQUEST_TOTAL, RequestCounts, RequestLabels};
use crate::server::Server;
use crate::state::AppState;
use crate::store::Store;

/// Events kept for watches resuming from an older resourceVersion.
const HISTORY_CAPACITY: usize = 20_000;

/// How the emulator is started.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The service-account issuer served in `/.well-known/openid-configuration`.
    pub issuer: String,
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// A directory to record every request into, audit-style (one JSON-lines file per
    /// emulator, see `audit`); by default the one [`AUDIT_DIR_ENV`] names, if any.
    pub audit_dir: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            issuer: "https://oidc.emulator.local/".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            audit_dir: std::env::var_os(AUDIT_DIR_ENV)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// A running emulator. Dropping it stops accepting connections and stops the controllers;
/// [`Emulator::shutdown`] also ends open watches and waits for in-flight requests.
///
/// Control-plane outages, for testing clients' recovery ([`Emulator::restart`],
/// [`Emulator::drop_connections`], [`Emulator::refuse_for`]) keep the address, so clients
/// reconnect to the same URL. They are meant to be driven from one task at a time.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<AppState>,
    server: Server,
    controllers: JoinHandle<()>,
    /// `true` (or dropping it) stops the controllers.
    stop_controllers: tokio::sync::watch::Sender<bool>,
}

fn seed(store: &mut Store) -> anyhow::Result<()> {
    let res = store
        .registry
        .lookup("", "v1", "namespaces")
        .context("namespaces are not registered")?;
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let t = ops::Target {
            res: res.clone(),
            version: "v1".into(),
            namespace: None,
            name: None,
            subresource: None,
        };
        let opts = ops::WriteOptions {
            manager: "kube-apiserver".into(),
            manager_explicit: true,
            ..Default::default()
        };
        ops::create(store, &t, json!({"metadata": {"name": name}}), &opts)
            .map_err(|e| anyhow::anyhow!("seeding namespace {name}: {e}"))?;
    }
    Ok(())
}

impl Emulator {
    /// Binds, spawns the server, and returns once it is listening.
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let listener =
            server::bind(config.bind).with_context(|| format!("binding {}", config.bind))?;
        let addr = listener.local_addr()?;
        let mut store = Store::new(resources::builtin_registry(), HISTORY_CAPACITY);
        seed(&mut store)?;
        let store = Arc::new(Mutex::new(store));
        let (stop_watches, _) = tokio::sync::watch::channel(0u64);
        let audit = match &config.audit_dir {
            Some(dir) => Some(
                audit::AuditLog::create(dir)
                    .with_context(|| format!("creating an audit log in {}", dir.display()))?,
            ),
            None => None,
        };
        let state = Arc::new(AppState {
            store: store.clone(),
            issuer: config.issuer,
            url: format!("http://{addr}"),
            stop_watches,
            closing: AtomicBool::new(false),
            requests: Mutex::default(),
            signing_key: tokio::sync::OnceCell::new(),
            audit,
            faults: faults::Faults::default(),
        });
        let server = Server::start(listener, state.clone()).context("starting the server")?;
        let (stop_controllers, stop_rx) = tokio::sync::watch::channel(false);
        let controllers = tokio::spawn(gc::run(store, stop_rx));
        tracing::info!(url = %state.url, "kube-emulator listening");
        Ok(Emulator {
            addr,
            state,
            server,
            controllers,
            stop_controllers,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.state.url.clone()
    }

    /// A kubeconfig for the emulator: one cluster, one user with a dummy token, one context.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: kube-emulator
  cluster:
    server: {url}
users:
- name: kube-emulator
  user:
    token: kube-emulator-token
contexts:
- name: kube-emulator
  context:
    cluster: kube-emulator
    user: kube-emulator
    namespace: default
current-context: kube-emulator
preferences: {{}}
",
            url = self.url()
        )
    }

    /// Writes the kubeconfig atomically (temporary file, then rename), so that a process
    /// waiting for the file never reads half of it.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "kubeconfig".into());
        let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, self.kubeconfig_yaml())?;
        std::fs::rename(&tmp, path)
    }

    /// Forgets the watch event history and ends every open watch, like an etcd compaction
    /// followed by an API server restart: watches resuming from an older resourceVersion get
    /// 410 Gone and clients must relist. For testing clients' recovery.
    pub fn compact(&self) {
        self.state.lock().compact();
        self.state.stop_watches.send_modify(|g| *g += 1);
    }

    /// Restarts the API server the way kube-apiserver restarts over a kept etcd: every open
    /// connection and watch is cut, connection attempts are refused for `downtime`, then it
    /// serves again on the same address with every object, resourceVersion and uid as they
    /// were. What a restarted kube-apiserver does not keep is its watch cache: the new cache
    /// starts from one list at the current resourceVersion (the watch cache's event history
    /// then begins just after that list's resourceVersion), so a watch resuming from an older
    /// resourceVersion gets 410 Gone and the client relists, while one resuming from the
    /// current resourceVersion resumes. List continue tokens (served from etcd) stay valid.
    /// The controllers, which stand for kube-controller-manager and keep running in a real
    /// cluster, keep running. The request counters start again at zero, like a new process's.
    /// Returns once the emulator serves again.
    pub async fn restart(&self, downtime: Duration) -> anyhow::Result<()> {
        self.refuse_connections().await;
        tokio::time::sleep(downtime).await;
        self.state.restart();
        self.accept_connections().await
    }

    /// Answer the next `fault.times` requests matching the fault with its error Status.
    pub fn inject_fault(&self, fault: Fault) {
        self.state.faults.inject(fault);
    }

    /// Injected failures not served yet.
    pub fn pending_faults(&self) -> u32 {
        self.state.faults.pending()
    }

    /// Cuts every open connection, watches included, without stopping: each client sees its
    /// connection closed under the request or watch it carried, and its next connection
    /// attempt succeeds. State and watch history are untouched, so watches resume.
    pub fn drop_connections(&self) {
        self.server.cut_connections();
    }

    /// Refuses connection attempts (nothing listens on the port) and cuts every open
    /// connection, until [`Emulator::accept_connections`]. Unlike [`Emulator::restart`], the
    /// server "process" lives on: watch history is kept, so watches resume where they were.
    /// Returns once the port is closed.
    pub async fn refuse_connections(&self) {
        self.server.stop_accepting().await;
        self.server.cut_connections();
    }

    /// Listens on the same address again after [`Emulator::refuse_connections`] (no-op while
    /// serving). Fails if the address cannot be bound again within a few seconds.
    pub async fn accept_connections(&self) -> anyhow::Result<()> {
        self.server.start_accepting().await
    }

    /// [`Emulator::refuse_connections`] for `duration`, then
    /// [`Emulator::accept_connections`]. Returns once the emulator serves again.
    pub async fn refuse_for(&self, duration: Duration) -> anyhow::Result<()> {
        self.refuse_connections().await;
        tokio::time::sleep(duration).await;
        self.accept_connections().await
    }

    /// `apiserver_request_total` as `/metrics` serves it, without a scrape: every request the
    /// emulator served since it started (or last restarted), labelled as kube-apiserver
    /// labels it. A watch is counted once it has ended.
    pub fn request_counts(&self) -> RequestCounts {
        self.state.requests().snapshot()
    }

    /// The file the emulator records requests into, if it records them.
    pub fn audit_file(&self) -> Option<&Path> {
        self.state.audit.as_ref().map(|a| a.path())
    }

    /// Whether connection attempts are accepted (false during an outage).
    pub async fn is_serving(&self) -> bool {
        self.server.is_accepting().await
    }

    /// How many client connections are open.
    pub fn open_connections(&self) -> usize {
        self.server.open_connections()
    }

    /// Stops the server: open watches end, in-flight requests finish.
    pub async fn shutdown(self) {
        self.state.closing.store(true, Ordering::SeqCst);
        self.state.stop_watches.send_modify(|g| *g += 1);
        self.server.shutdown().await;
        if self.state.audit.is_some() {
            let state = self.state.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(audit) = &state.audit {
                    audit.flush();
                }
            })
            .await;
        }
        let _ = self.stop_controllers.send(true);
        self.controllers.abort();
    }
}
