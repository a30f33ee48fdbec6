//! How the fake Entra reaches an assertion's issuer, as Entra does for workload identity
//! federation: `GET {iss}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0), whose
//! `issuer` must equal `iss` byte for byte, then `GET {jwks_uri}` for the signing keys.
//!
//! Transport is strict by default: only `https`, certificates checked against the public web
//! roots, no redirects followed, no proxy, 5 seconds per fetch. Tests open it up explicitly:
//!
//! * [`IssuerTrust::add_ca_pem`]: also trust this CA (an issuer served over `https` with a
//!   test certificate, e.g. the API emulator on 127.0.0.1; the certificate must name the host,
//!   e.g. an IP SAN `127.0.0.1`).
//! * [`IssuerTrust::allow_insecure`]: for this one issuer (exact `iss`), fetch the discovery
//!   document from `{fetch_base}/.well-known/openid-configuration` instead of from the issuer
//!   URL, and allow plain `http` for it and for its `jwks_uri` (an issuer such as
//!   `https://oidc.emulator.local/` served by an emulator on `http://127.0.0.1:PORT`).
//!
//! Any failure (connection, status, body, `issuer` mismatch, missing `jwks_uri` or `keys`) is
//! AADSTS50166 to the client; the reason is logged by the fake, never sent.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Which issuers the fake Entra can reach, and how.
#[derive(Clone, Debug)]
pub(crate) struct IssuerTrust {
    ca_pems: Vec<Vec<u8>>,
    /// Exact issuer -> base URL its discovery document is fetched from.
    insecure: BTreeMap<String, String>,
    client: reqwest::Client,
}

/// Where and how to fetch one issuer's keys.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    client: reqwest::Client,
    issuer: String,
    discovery_url: String,
    allow_http: bool,
}

impl IssuerTrust {
    /// Strict: public roots only, no insecure issuer.
    pub(crate) fn new() -> Result<IssuerTrust, String> {
        Ok(IssuerTrust {
            client: build_client(&[])?,
            ca_pems: Vec::new(),
            insecure: BTreeMap::new(),
        })
    }

    /// Also trust the CA certificate(s) in `pem`. Refused (and nothing changes) if `pem` holds
    /// no certificate the TLS stack accepts.
    pub(crate) fn add_ca_pem(&mut self, pem: &str) -> Result<(), String> {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err("no PEM certificate found".to_string());
        }
        let mut pems = self.ca_pems.clone();
        pems.push(pem.as_bytes().to_vec());
        self.client = build_client(&pems)?;
        self.ca_pems = pems;
        Ok(())
    }

    /// Reach `issuer` at `fetch_base` over plain HTTP (see the module docs).
    pub(crate) fn allow_insecure(&mut self, issuer: &str, fetch_base: &str) {
        self.insecure.insert(
            issuer.to_string(),
            fetch_base.trim_end_matches('/').to_string(),
        );
    }

    /// The insecure issuers and where they are fetched from.
    pub(crate) fn insecure_issuers(&self) -> &BTreeMap<String, String> {
        &self.insecure
    }

    pub(crate) fn route(&self, issuer: &str) -> Route {
        let (base, allow_http) = match self.insecure.get(issuer) {
            Some(base) => (base.clone(), true),
            None => (issuer.trim_end_matches('/').to_string(), false),
        };
        Route {
            client: self.client.clone(),
            issuer: issuer.to_string(),
            discovery_url: format!("{base}/.well-known/openid-configuration"),
            allow_http,
        }
    }
}

fn build_client(ca_pems: &[Vec<u8>]) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(FETCH_TIMEOUT);
    for pem in ca_pems {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

impl Route {
    /// The issuer's JWKS `keys`, or why they could not be had.
    pub(crate) async fn fetch_keys(&self) -> Result<Vec<Value>, String> {
        let discovery = self.get_json(&self.discovery_url).await?;
        match discovery.get("issuer").and_then(Value::as_str) {
            Some(issuer) if issuer == self.issuer => {}
            other => {
                return Err(format!(
                    "the discovery document names issuer {other:?}, not {:?}",
                    self.issuer
                ));
            }
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("the discovery document has no jwks_uri")?;
        let jwks = self.get_json(jwks_uri).await?;
        jwks.get("keys")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| format!("{jwks_uri} has no keys array"))
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            scheme => {
                return Err(format!(
                    "{url}: scheme {scheme} is not allowed (only https, or http for an issuer allowed as insecure)"
                ));
            }
        }
        let response = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        response
            .json::<Value>()
            .await
            .map_err(|e| format!("GET {url}: not JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_go_to_the_issuer_unless_it_is_allowed_as_insecure() {
        let mut trust = IssuerTrust::new().expect("client");
        let route = trust.route("https://oidc.example/tenant/");
        assert_eq!(
            route.discovery_url,
            "https://oidc.example/tenant/.well-known/openid-configuration"
        );
        assert!(!route.allow_http);
        trust.allow_insecure("https://oidc.emulator.local/", "http://127.0.0.1:8080/");
        let route = trust.route("https://oidc.emulator.local/");
        assert_eq!(
            route.discovery_url,
            "http://127.0.0.1:8080/.well-known/openid-configuration"
        );
        assert!(route.allow_http);
        assert!(
            !trust.route("https://oidc.emulator.local").allow_http,
            "the issuer must match exactly"
        );
    }

    #[test]
    fn a_ca_must_be_a_pem_certificate() {
        let mut trust = IssuerTrust::new().expect("client");
        assert!(trust.add_ca_pem("not a certificate").is_err());
        assert!(trust.ca_pems.is_empty());
    }
}
