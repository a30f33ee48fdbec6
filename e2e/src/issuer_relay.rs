//! The cluster's service-account issuer as the fake Entra can reach it.
//!
//! Entra fetches `{iss}/.well-known/openid-configuration` and its `jwks_uri` anonymously over
//! the internet. The issuer of a test cluster is neither public nor anonymous: kind's is
//! `https://kubernetes.default.svc.cluster.local`, the emulator's `https://oidc.emulator.local/`,
//! and kube-apiserver serves both documents only to authenticated callers (the
//! `system:service-account-issuer-discovery` role). So the suite relays them: a local HTTP
//! server that fetches both documents through the suite's own client (the kubeconfig's
//! credentials), unchanged except for `jwks_uri`, which points back at the relay. The fake
//! Entra is told to fetch the issuer's discovery from the relay
//! ([`fake_arm::FakeArm::allow_insecure_issuer`]); it still checks that the document's `issuer`
//! equals the token's `iss` byte for byte, and the signature against the API server's real keys.
//!
//! Works the same against the emulator and a real API server: the keys are whatever the API
//! server signs its tokens with.

use std::net::SocketAddr;

use anyhow::{Context as _, anyhow};
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use kube::Client;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::Result;

const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/openid/v1/jwks";

/// A running relay; stops when dropped.
pub struct IssuerRelay {
    addr: SocketAddr,
    issuer: String,
    _stop: oneshot::Sender<()>,
}

#[derive(Clone)]
struct Relay {
    client: Client,
    base: String,
}

impl IssuerRelay {
    /// Start relaying the issuer of the API server `client` talks to.
    pub async fn start(client: &Client) -> Result<IssuerRelay> {
        let discovery = fetch(client, DISCOVERY).await?;
        let issuer = discovery["issuer"]
            .as_str()
            .ok_or_else(|| anyhow!("{DISCOVERY} of the API server has no issuer"))?
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen for the issuer relay")?;
        let addr = listener.local_addr()?;
        let relay = Relay {
            client: client.clone(),
            base: format!("http://{addr}"),
        };
        let app = Router::new()
            .route(DISCOVERY, get(discovery_document))
            .route(JWKS, get(keys))
            .with_state(relay);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(IssuerRelay {
            addr,
            issuer,
            _stop: stop,
        })
    }

    /// The issuer exactly as the API server puts it in `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where the relay serves the issuer's discovery document (`{url}/.well-known/...`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Make `fake`'s Entra fetch this issuer's documents from the relay.
    pub fn trust_in(&self, fake: &fake_arm::FakeArm) {
        fake.allow_insecure_issuer(&self.issuer, &self.url());
    }
}

async fn fetch(client: &Client, path: &str) -> Result<Value> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .context("cannot build the request")?;
    let text = client
        .request_text(request)
        .await
        .with_context(|| format!("cannot GET {path} from the API server"))?;
    serde_json::from_str(&text).with_context(|| format!("{path} of the API server is not JSON"))
}

async fn discovery_document(State(relay): State<Relay>) -> impl IntoResponse {
    match fetch(&relay.client, DISCOVERY).await {
        Ok(mut doc) => {
            doc["jwks_uri"] = Value::String(format!("{}{JWKS}", relay.base));
            (StatusCode::OK, axum::Json(doc)).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
    }
}

async fn keys(State(relay): State<Relay>) -> impl IntoResponse {
    match fetch(&relay.client, JWKS).await {
        Ok(doc) => (StatusCode::OK, axum::Json(doc)).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
    }
}
