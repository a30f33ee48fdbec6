//! The OIDC issuer written into federated credentials: spec, else `--oidc-issuer-url`, else the
//! API server's discovery document (the issuer that signs the projected tokens). Byte for byte.

use kube::Client;
use tokio::sync::Mutex;

use crate::error::Error;

pub struct IssuerSource {
    flag: Option<String>,
    discovered: Mutex<Option<String>>,
}

impl IssuerSource {
    pub fn new(flag: Option<String>) -> Self {
        Self {
            flag: flag.filter(|f| !f.is_empty()),
            discovered: Mutex::new(None),
        }
    }

    pub async fn resolve(&self, spec: Option<&str>, client: &Client) -> Result<String, Error> {
        if let Some(s) = spec.filter(|s| !s.is_empty()) {
            return Ok(s.to_string());
        }
        if let Some(f) = &self.flag {
            return Ok(f.clone());
        }
        let mut cached = self.discovered.lock().await;
        if let Some(d) = cached.as_ref() {
            return Ok(d.clone());
        }
        let discovered = discover(client).await?;
        *cached = Some(discovered.clone());
        Ok(discovered)
    }
}

async fn discover(client: &Client) -> Result<String, Error> {
    let request = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| Error::IssuerUnavailable(e.to_string()))?;
    let doc: serde_json::Value = client.request(request).await.map_err(|e| {
        Error::IssuerUnavailable(format!(
            "no spec.azure.issuer or --oidc-issuer-url, and the API server's /.well-known/openid-configuration failed: {e}"
        ))
    })?;
    doc.get("issuer")
        .and_then(|i| i.as_str())
        .filter(|i| i.starts_with("https://"))
        .map(str::to_string)
        .ok_or_else(|| {
            Error::IssuerUnavailable(
                "the API server's discovery document has no https issuer: set spec.azure.issuer or --oidc-issuer-url".into(),
            )
        })
}
