//! The HTTP server task: serves the API on a listener until told to stop. It holds no state of
//! its own, so the same [`AppState`] (and with it every object) can be served again by a new
//! server on the same address.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::routes;
use crate::state::AppState;

/// How long in-flight requests may take to finish once the server is stopping.
const GRACE: Duration = Duration::from_secs(5);

pub struct Server {
    /// `true` (or dropping it) starts a graceful shutdown.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    pub fn spawn(listener: TcpListener, state: Arc<AppState>) -> Server {
        let (stop, mut stop_rx) = watch::channel(false);
        let app = routes::router(state);
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "emulator server failed");
            }
        });
        Server { stop, task }
    }

    /// Stops accepting connections and waits for in-flight requests (open watches must be
    /// ended by the caller), cutting them off after [`GRACE`].
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}
