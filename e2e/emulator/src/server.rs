//! The HTTP server: a listener on a fixed address and the connections it accepted, both under
//! the emulator's control, so that a test can take the API server away the way a control-plane
//! outage does. It holds no API state of its own: the same [`AppState`] (and with it every
//! object) is served again when the listener comes back on the same address.
//!
//! What a client sees matches a real API server's host: while the listener is closed nothing
//! listens on the port, so a connection attempt is refused (`ECONNREFUSED`); a cut connection
//! is closed under whatever request or watch it carried (the client reads end of file or a
//! reset, mid-response).

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::routes;
use crate::state::AppState;

/// How long in-flight requests may take to finish once the server is shutting down.
const GRACE: Duration = Duration::from_secs(5);
/// How long re-binding the address may be retried: another socket (a client's outgoing
/// connection that happened to get this port as its local port) may hold it for a moment.
const REBIND: Duration = Duration::from_secs(5);

pub struct Server {
    addr: SocketAddr,
    connections: Arc<Connections>,
    /// The accept loop, while the server accepts connections.
    accepting: Mutex<Option<AcceptLoop>>,
}

/// What the accept loop hands every connection it accepts.
struct Connections {
    app: Router,
    /// Bumped to cut every open connection at once.
    cut: watch::Sender<u64>,
    /// Set once the server shuts down: connections finish their request in flight, then close.
    /// Dropping it (dropping the server, then its accept loop ends) does the same.
    drain: watch::Sender<bool>,
    /// How many accepted connections are open.
    open: Arc<watch::Sender<usize>>,
}

struct AcceptLoop {
    /// `true` (or dropping it) stops the loop, which closes the listener.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Binds `addr` for listening. `SO_REUSEADDR`, so that the address can be bound again right
/// after the listener closed, while connections it accepted linger in `TIME_WAIT`.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Counts a connection as open for as long as it lives (however its task ends).
struct OpenConnection(Arc<watch::Sender<usize>>);

impl OpenConnection {
    fn new(open: &Arc<watch::Sender<usize>>) -> Self {
        open.send_modify(|n| *n += 1);
        OpenConnection(open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Accepts connections on `listener` until stopped; dropping the listener at the end closes the
/// port.
fn accept_loop(listener: TcpListener, connections: Arc<Connections>) -> AcceptLoop {
    let (stop, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // Subscribed here, not in the task: a cut that follows the end of this
                        // loop reaches every connection the loop accepted.
                        let open = OpenConnection::new(&connections.open);
                        tokio::spawn(serve_connection(
                            stream,
                            connections.app.clone(),
                            connections.cut.subscribe(),
                            connections.drain.subscribe(),
                            open,
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: the socket stays usable.
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = async { stop_rx.wait_for(|stop| *stop).await.is_ok() } => break,
            }
        }
    });
    AcceptLoop { stop, task }
}

impl Server {
    /// Starts serving `state` on `listener`, whose address the server keeps for later
    /// re-binds.
    pub fn start(listener: TcpListener, state: Arc<AppState>) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        let connections = Arc::new(Connections {
            app: routes::router(state),
            cut: watch::channel(0).0,
            drain: watch::channel(false).0,
            open: Arc::new(watch::channel(0).0),
        });
        let accepting = Mutex::new(Some(accept_loop(listener, connections.clone())));
        Ok(Server {
            addr,
            connections,
            accepting,
        })
    }

    /// Whether the server accepts connections.
    pub async fn is_accepting(&self) -> bool {
        self.accepting.lock().await.is_some()
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        *self.connections.open.borrow()
    }

    /// Closes the listener; returns once the port is closed. Open connections are untouched.
    pub async fn stop_accepting(&self) {
        // Held until the port is closed, so that `is_accepting` never answers false before.
        let mut slot = self.accepting.lock().await;
        if let Some(AcceptLoop { stop, task }) = slot.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// Listens on the server's address again (no-op while accepting).
    pub async fn start_accepting(&self) -> anyhow::Result<()> {
        let mut slot = self.accepting.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + REBIND;
        let listener = loop {
            match bind(self.addr) {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "kube-emulator cannot listen on {} again",
                        self.addr
                    )));
                }
            }
        };
        *slot = Some(accept_loop(listener, self.connections.clone()));
        Ok(())
    }

    /// Cuts every open connection: each is closed under the request or watch it carries.
    pub fn cut_connections(&self) {
        self.connections
            .cut
            .send_modify(|generation| *generation += 1);
    }

    /// Stops accepting, lets in-flight requests finish (open watches must be ended by the
    /// caller) and closes idle connections, cutting whatever is left after [`GRACE`].
    pub async fn shutdown(&self) {
        self.stop_accepting().await;
        let _ = self.connections.drain.send(true);
        let mut open = self.connections.open.subscribe();
        let drained = async { open.wait_for(|n| *n == 0).await.is_ok() };
        if tokio::time::timeout(GRACE, drained).await.is_err() {
            self.cut_connections();
        }
    }
}

/// Serves HTTP/1.1 on one connection until the client closes it, the server cuts it (the
/// connection's future is dropped, which closes the socket mid-response) or drains it.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    mut cut: watch::Receiver<u64>,
    mut drain: watch::Receiver<bool>,
    _open: OpenConnection,
) {
    let service = TowerToHyperService::new(app);
    let mut conn = pin!(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service)
    );
    let (mut cuttable, mut draining) = (true, false);
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = cut.changed(), if cuttable => match changed {
                Ok(()) => return,
                // The server is gone: from now on the drain signal decides.
                Err(_) => cuttable = false,
            },
            // A dropped server drains too (`wait_for` fails once the sender is gone).
            _ = async { drain.wait_for(|d| *d).await.is_ok() }, if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
