//! The I/O of one check: a TokenRequest for a subject's ServiceAccount, the exchange at Entra,
//! and for the Flux identity the Azure DevOps exchange and `info/refs`. The service-account
//! token and the access tokens live only inside these functions.

use std::time::Instant;

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{Api, api::PostParams};
use reqwest::Url;
use serde::Deserialize;
use tenant_identity_crd::reasons;

use super::{
    AZURE_DEVOPS_SCOPE, TOKEN_EXPIRATION_SECONDS, Verifier,
    answers::{self, EntraRefusal, Presented, Written},
};
use crate::{
    azure::{
        AzureRequestMetrics,
        token::{ExchangeFailure, exchange_assertion, token_url},
    },
    plan::{Plan, Subject, SubjectKind},
};

/// The outcome of one subject's exchange.
pub(super) struct SubjectCheck {
    pub(super) ok: bool,
    pub(super) reason: &'static str,
    pub(super) message: String,
}

impl Verifier {
    /// TokenRequest, then the exchange for ARM. For the Flux subject, the service-account
    /// token is handed back for the git check (and dropped by the caller).
    pub(super) async fn check_subject(
        &self,
        plan: &Plan,
        subject: &Subject,
    ) -> (SubjectCheck, Option<SecretToken>) {
        let sa_token = match self.service_account_token(plan, subject).await {
            Ok(t) => t,
            Err(message) => {
                return (
                    SubjectCheck {
                        ok: false,
                        reason: reasons::EXCHANGE_FAILED,
                        message,
                    },
                    None,
                );
            }
        };
        let result = self
            .exchange(plan, &sa_token, &self.settings.arm_scope)
            .await;
        let check = match result {
            // The ARM token proves the chain; it is not used for anything else.
            Ok(token) => {
                drop(token);
                SubjectCheck {
                    ok: true,
                    reason: reasons::TOKEN_EXCHANGE_SUCCEEDED,
                    message: String::new(),
                }
            }
            Err(failure) => self.explain(plan, subject, &sa_token, failure),
        };
        let keep = (subject.kind == SubjectKind::FluxSource && check.ok).then_some(sa_token);
        (check, keep)
    }

    fn explain(
        &self,
        plan: &Plan,
        subject: &Subject,
        sa_token: &SecretToken,
        failure: ExchangeFailure,
    ) -> SubjectCheck {
        let refusal = match &failure {
            ExchangeFailure::Refused { status, body } => answers::classify_entra(*status, body),
            ExchangeFailure::Transport(_) | ExchangeFailure::Malformed(_) => EntraRefusal {
                reason: reasons::EXCHANGE_FAILED,
                code: None,
                field: None,
                description: failure.describe(&self.token_url(plan), &plan.client_id),
            },
        };
        let message = if refusal.reason == reasons::FEDERATION_MISMATCH {
            answers::mismatch_message(
                &refusal,
                presented(sa_token).as_ref(),
                Written {
                    credential: &subject.credential_name,
                    issuer: &plan.issuer,
                    subject: &subject.subject,
                    audience: &subject.audience,
                },
            )
        } else {
            answers::refusal_message(&refusal, &plan.client_id, &plan.tenant_id, &plan.issuer)
        };
        SubjectCheck {
            ok: false,
            reason: refusal.reason,
            message,
        }
    }

    /// The DevOps exchange with the Flux identity's token, then `info/refs` with its answer.
    pub(super) async fn check_git(
        &self,
        plan: &Plan,
        sa_token: &SecretToken,
    ) -> answers::GitAnswer {
        let Some(git) = &plan.git else {
            return answers::GitAnswer {
                reason: reasons::GIT_CHECK_FAILED,
                message: "no git source".into(),
            };
        };
        let url = match answers::info_refs_url(&git.url, self.settings.devops_endpoint.as_ref()) {
            Ok(u) => u,
            Err(message) => {
                return answers::GitAnswer {
                    reason: reasons::GIT_CHECK_FAILED,
                    message,
                };
            }
        };
        let token = match self.exchange(plan, sa_token, AZURE_DEVOPS_SCOPE).await {
            Ok(t) => t,
            Err(failure) => {
                let description = match &failure {
                    ExchangeFailure::Refused { status, body } => {
                        answers::classify_entra(*status, body).description
                    }
                    _ => failure.describe(&self.token_url(plan), &plan.client_id),
                };
                return answers::GitAnswer {
                    reason: reasons::GIT_CHECK_FAILED,
                    message: format!(
                        "Entra refused a token for Azure DevOps to the Flux identity: {description}"
                    ),
                };
            }
        };
        // Named as the spec gives it (the endpoint override is an implementation detail).
        let shown = answers::info_refs_url(&git.url, None)
            .map(|u| format!("{}{}", u.origin().ascii_serialization(), u.path()))
            .unwrap_or_else(|_| git.url.clone());
        let response = self.http.get(url).bearer_auth(token.secret()).send().await;
        // The DevOps token has done its one job.
        drop(token);
        match response {
            Ok(r) => {
                let content_type = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                answers::classify_git(r.status().as_u16(), content_type, &shown, &plan.client_id)
            }
            Err(e) => answers::GitAnswer {
                reason: reasons::GIT_CHECK_FAILED,
                message: format!("GET {shown} failed: {}", e.without_url()),
            },
        }
    }

    async fn service_account_token(
        &self,
        plan: &Plan,
        subject: &Subject,
    ) -> Result<SecretToken, String> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &plan.namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![subject.audience.clone()]),
                expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let answer = accounts
            .create_token_request(&subject.service_account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                let hint = match &e {
                    kube::Error::Api(ae) if ae.code == 403 => {
                        " (the operator needs create on serviceaccounts/token: Helm verification.enabled)"
                    }
                    kube::Error::Api(ae) if ae.code == 404 => " (the ServiceAccount does not exist yet)",
                    _ => "",
                };
                format!(
                    "cannot request a token for ServiceAccount {}/{}: {}{hint}",
                    plan.namespace,
                    subject.service_account,
                    api_error_text(&e)
                )
            })?;
        answer
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .map(SecretToken)
            .ok_or_else(|| {
                format!(
                    "the API server returned no token for ServiceAccount {}/{}",
                    plan.namespace, subject.service_account
                )
            })
    }

    async fn exchange(
        &self,
        plan: &Plan,
        sa_token: &SecretToken,
        scope: &str,
    ) -> Result<crate::azure::AccessToken, ExchangeFailure> {
        exchange_assertion(
            &self.http,
            &self.token_url(plan),
            &plan.client_id,
            scope,
            &sa_token.0,
            self.azure_metrics(),
        )
        .await
        .map(|(token, _lifetime)| token)
    }

    fn token_url(&self, plan: &Plan) -> Url {
        // The tenant id passed validation (a GUID or domain); the authority host parsed at
        // start-up as a base URL, so this cannot fail; fall back to the host itself.
        token_url(&self.settings.authority_host, &plan.tenant_id)
            .unwrap_or_else(|_| self.settings.authority_host.clone())
    }

    fn azure_metrics(&self) -> &AzureRequestMetrics {
        &self.metrics.azure
    }

    pub(super) fn count(&self, kind: &str, result: &str, started: Instant) {
        self.metrics
            .verifications
            .with_label_values(&[kind, result])
            .inc();
        self.metrics
            .verification_duration
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A service-account token: no `Debug` or `Display`, so it cannot reach a log line.
pub(super) struct SecretToken(String);

/// The claims of the token the API server issued: what Entra was shown. Read without checking
/// the signature: the operator just received the token from the API server itself.
fn presented(sa_token: &SecretToken) -> Option<Presented> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Audience {
        One(String),
        Many(Vec<String>),
    }
    #[derive(Deserialize)]
    struct Claims {
        iss: String,
        sub: String,
        aud: Audience,
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.insecure_disable_signature_validation();
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(
        &sa_token.0,
        &jsonwebtoken::DecodingKey::from_secret(&[]),
        &validation,
    )
    .ok()?
    .claims;
    Some(Presented {
        issuer: claims.iss,
        subject: claims.sub,
        audience: match claims.aud {
            Audience::One(a) => a,
            Audience::Many(a) => a.join(","),
        },
    })
}

fn api_error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(ae) => format!("{} {}", ae.code, ae.message),
        other => other.to_string(),
    }
}
