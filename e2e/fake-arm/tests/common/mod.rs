//! A test OIDC issuer, like a Kubernetes API server's service account issuer: a real RS256 key
//! (generated per test with the `rsa` crate, signing with `ring`), its discovery document and
//! JWKS served on 127.0.0.1 over plain HTTP ([`Issuer::start`]) or HTTPS with a self-signed
//! certificate ([`Issuer::start_https`]), and service-account-shaped tokens signed with it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_arm::{FakeArm, JWT_BEARER};
use ring::signature::RsaKeyPair;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub const AUDIENCE: &str = "api://AzureADTokenExchange";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
pub const DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";

/// An RSA signing key and its JWK.
pub struct Key {
    pub kid: String,
    pair: RsaKeyPair,
}

impl Key {
    pub fn generate(kid: &str) -> Key {
        use rsa::pkcs8::EncodePrivateKey as _;
        let mut rng = rand::rng();
        let private = rsa::PrivateKey::new(&mut rng, 2048).expect("RSA key");
        let der = private.to_pkcs8_der().expect("PKCS#8");
        let pair = RsaKeyPair::from_pkcs8(der.as_bytes()).expect("ring key");
        Key {
            kid: kid.to_string(),
            pair,
        }
    }

    pub fn jwk(&self) -> Value {
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = self.pair.public().into();
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }

    /// A compact JWS of `claims` with `header` (to which `alg` RS256 is added).
    pub fn sign_with_header(&self, mut header: Value, claims: &Value) -> String {
        header["alg"] = json!("RS256");
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(json!({"typ": "JWT", "kid": self.kid}), claims)
    }
}

/// What the issuer serves; tests change it to break it.
#[derive(Clone)]
pub struct Served {
    /// `issuer` of the discovery document.
    pub issuer: String,
    /// Public keys in the JWKS.
    pub jwks: Vec<Value>,
    /// Status of the discovery document.
    pub discovery_status: u16,
    /// Whether the discovery document has `jwks_uri`.
    pub with_jwks_uri: bool,
}

struct Shared {
    served: Mutex<Served>,
    base: Mutex<String>,
    fetches: AtomicUsize,
}

/// A running issuer.
pub struct Issuer {
    /// `iss` of its tokens (and the credentials' issuer).
    pub issuer: String,
    /// Where it is served: `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub base: String,
    pub key: Key,
    /// The self-signed certificate of an HTTPS issuer.
    pub ca_pem: Option<String>,
    shared: Arc<Shared>,
    _task: tokio::task::JoinHandle<()>,
}

impl Issuer {
    /// Serve over HTTP an issuer named `issuer` (e.g. `https://oidc.test.local/tenant/`, as an
    /// AKS issuer); the fake must be told to fetch it from [`Self::base`].
    pub async fn start(issuer: &str) -> Issuer {
        Self::start_http(Some(issuer)).await
    }

    /// Serve over HTTP an issuer whose URL is its own `http://127.0.0.1:PORT`.
    pub async fn start_at_own_url() -> Issuer {
        Self::start_http(None).await
    }

    async fn start_http(issuer: Option<&str>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let issuer = issuer.unwrap_or(&base).to_string();
        let (key, shared) = Self::state(&issuer, &base);
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/openid/v1/jwks", get(jwks))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Issuer {
            issuer,
            base,
            key,
            ca_pem: None,
            shared,
            _task: task,
        }
    }

    /// Serve over HTTPS, with a self-signed certificate for 127.0.0.1, an issuer whose URL
    /// is its own base URL (as an API server on 127.0.0.1 would be).
    pub async fn start_https() -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("https://{addr}");
        let (key, shared) = Self::state(&base, &base);
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
        let ca_pem = certified.cert.pem();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![certified.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let served = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let served = served.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve_one(tls, &served).await;
                    }
                });
            }
        });
        Issuer {
            issuer: base.clone(),
            base,
            key,
            ca_pem: Some(ca_pem),
            shared,
            _task: task,
        }
    }

    fn state(issuer: &str, base: &str) -> (Key, Arc<Shared>) {
        let key = Key::generate("key-1");
        let shared = Arc::new(Shared {
            served: Mutex::new(Served {
                issuer: issuer.to_string(),
                jwks: vec![key.jwk()],
                discovery_status: 200,
                with_jwks_uri: true,
            }),
            base: Mutex::new(base.to_string()),
            fetches: AtomicUsize::new(0),
        });
        (key, shared)
    }

    /// Let the fake reach this (plain HTTP) issuer.
    pub fn allow_in(&self, fake: &FakeArm) {
        fake.allow_insecure_issuer(&self.issuer, &self.base);
    }

    /// Change what is served.
    pub fn serve(&self, change: impl FnOnce(&mut Served)) {
        let mut served = self.shared.served.lock().expect("lock");
        change(&mut served);
    }

    /// Requests received (discovery and JWKS).
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }

    /// Claims of a projected service account token for `subject`, valid for 10 minutes.
    pub fn claims(&self, subject: &str, audience: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": [audience],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u"}},
        })
    }

    /// A signed token for `subject` and `audience`.
    pub fn token(&self, subject: &str, audience: &str) -> String {
        self.key.sign(&self.claims(subject, audience))
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    let (status, body) = discovery_body(&shared);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

fn discovery_body(shared: &Shared) -> (u16, Value) {
    let served = shared.served.lock().expect("lock").clone();
    let base = shared.base.lock().expect("lock").clone();
    let mut body = json!({
        "issuer": served.issuer,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    if served.with_jwks_uri {
        body["jwks_uri"] = json!(format!("{base}/openid/v1/jwks"));
    }
    (served.discovery_status, body)
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = shared.served.lock().expect("lock").jwks.clone();
    Json(json!({ "keys": keys }))
}

/// One HTTP/1.1 request on a TLS stream, answered and closed.
async fn serve_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    shared: &Shared,
) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    let (status, body) = match path.as_str() {
        "/.well-known/openid-configuration" => discovery_body(shared),
        "/openid/v1/jwks" => {
            let keys = shared.served.lock().expect("lock").jwks.clone();
            (200, json!({ "keys": keys }))
        }
        _ => (404, json!({})),
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `POST {fake}/{tenant}/oauth2/v2.0/token` as a workload would; the status and JSON body.
pub async fn exchange(
    fake: &FakeArm,
    client_id: &str,
    scope: &str,
    assertion: &str,
) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", scope),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    let response = reqwest::Client::new()
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", fake.url()))
        .form(&form)
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// Entra's error body: `error`, `error_description` starting with `AADSTS<code>: ` and
/// ending with the trace suffix, `error_codes` `[code]`, `timestamp`, `trace_id`,
/// `correlation_id`, `error_uri`. Returns the description without the prefix and suffix.
pub fn assert_entra_error(status: u16, body: &Value, expected: (u16, &str, u32)) -> String {
    let (want_status, want_error, code) = expected;
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let timestamp = body["timestamp"].as_str().expect("timestamp");
    assert!(
        chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%d %H:%M:%SZ").is_ok(),
        "{timestamp}"
    );
    let trace_id = body["trace_id"].as_str().expect("trace_id");
    let correlation_id = body["correlation_id"].as_str().expect("correlation_id");
    assert!(uuid_like(trace_id) && uuid_like(correlation_id), "{body}");
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
    let description = body["error_description"].as_str().expect("description");
    let prefix = format!("AADSTS{code}: ");
    let suffix =
        format!(" Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}");
    assert!(description.starts_with(&prefix), "{description}");
    assert!(description.ends_with(&suffix), "{description}");
    description[prefix.len()..description.len() - suffix.len()].to_string()
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

/// The claims of an access token the fake issued.
pub fn token_claims(token: &str) -> Value {
    let claims = token.split('.').nth(1).expect("JWT-shaped");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url")).expect("JSON")
}

pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .expect("socket address")
}
