//! The fake Microsoft Entra token endpoint, as strict as the real one for the client
//! credentials grant with a federated client assertion (workload identity federation): it
//! fetches the assertion issuer's OIDC discovery document and JWKS, checks the RS256
//! signature, `iss`, `sub`, `aud` and `exp`, and finds a federated identity credential of the
//! application whose issuer, subject and audience match byte for byte, after the identity's
//! propagation delay. Each refusal is Entra's error body with its AADSTS code (`errors`).
//!
//! Where credentials come from: the ARM identities whose `clientId` is the request's
//! `client_id` (the fake ARM's own state, for the ARM backend), and applications registered
//! directly ([`FakeArm::register_federated_credential`](crate::FakeArm::register_federated_credential),
//! for the ASO backend, whose credentials live in the cluster and are "created in Azure" by
//! the ASO simulation).
//!
//! Trusted callers ([`FakeArm::trust_client`](crate::FakeArm::trust_client)) are the
//! exception: their assertion is accepted without being read, as the fake's first version
//! accepted every assertion. The operator's own workload identity, whose token file the e2e
//! harness writes with random content, is one.
//!
//! Modules: `endpoint` (the handler and the order of checks), `errors` (the AADSTS table and
//! the error body), `jwt` (parsing and RS256), `discovery` (fetching an issuer, and which
//! issuers are trusted how), `federation` (the match), `tokens` (the access tokens issued).

mod discovery;
mod endpoint;
mod errors;
mod federation;
mod jwt;
mod tokens;

pub(crate) use discovery::IssuerTrust;
pub(crate) use endpoint::token_endpoint;
pub(crate) use federation::Candidate;
