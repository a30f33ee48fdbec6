//! Wire types of `Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials`,
//! from the ARM ManagedIdentity OpenAPI spec, api-version 2026-05-31 (identical in shape for
//! api-versions 2023-01-31 and 2024-11-30) and the ARM common types (`ErrorResponse`).

use serde::{Deserialize, Serialize};

/// `FederatedIdentityCredential` (a `ProxyResource` with `properties`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentityCredential {
    /// Read-only ARM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Read-only resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Read-only resource type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Read-only ARM metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_data: Option<SystemData>,
    /// Absent only on malformed answers; treated as "matches nothing".
    #[serde(default)]
    pub properties: FederatedIdentityCredentialProperties,
}

/// `FederatedIdentityCredentialProperties`. `subject` is required in the stable versions; it
/// defaults to empty so a preview "flexible FIC" (claimsMatchingExpression, no subject) created
/// by someone else still parses and is simply never equal to ours.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentityCredentialProperties {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// `FederatedIdentityCredentialsListResult`: one page; follow `nextLink`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentityCredentialsListResult {
    #[serde(default)]
    pub value: Vec<FederatedIdentityCredential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// The ARM `Identity` resource (a user-assigned identity): only what binding needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub properties: UserAssignedIdentityProperties,
}

/// `UserAssignedIdentityProperties`: read-only ids Azure assigns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentityProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// The id the identity's tokens carry as `appid`/`azp`, and what `spec.azure.clientId` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// ARM `SystemData` (all optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_by_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_at: Option<String>,
}

/// ARM `ErrorResponse`: `{"error": {"code", "message", ...}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// ARM `ErrorDetail`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_EXAMPLE: &str = r#"{
        "value": [{
            "id": "/subscriptions/c267c0e7-0a73-4789-9e17-d26aeb0904e5/resourcegroups/rgName/providers/Microsoft.ManagedIdentity/userAssignedIdentities/identityName/federatedIdentityCredentials/ficResourceName",
            "name": "ficResourceName",
            "properties": {
                "issuer": "https://oidc.prod-aks.azure.com/TenantGUID/IssuerGUID",
                "subject": "system:serviceaccount:ns:svcaccount",
                "audiences": ["api://AzureADTokenExchange"]
            },
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
        }],
        "nextLink": "https://serviceRoot/subscriptions/c267c0e7-0a73-4789-9e17-d26aeb0904e5/resourcegroups/rgName/providers/Microsoft.ManagedIdentity/userAssignedIdentities/resourceName/federatedIdentityCredentials?api-version=2026-05-31&$skipToken=X'12345'"
    }"#;

    #[test]
    fn parses_the_spec_list_example() {
        let page: FederatedIdentityCredentialsListResult =
            serde_json::from_str(LIST_EXAMPLE).expect("parses");
        assert_eq!(page.value.len(), 1);
        let fic = &page.value[0];
        assert_eq!(fic.name.as_deref(), Some("ficResourceName"));
        assert_eq!(
            fic.properties.subject,
            "system:serviceaccount:ns:svcaccount"
        );
        assert_eq!(fic.properties.audiences, vec!["api://AzureADTokenExchange"]);
        assert!(page.next_link.is_some());
    }

    #[test]
    fn put_body_carries_only_properties() {
        let body = FederatedIdentityCredential {
            properties: FederatedIdentityCredentialProperties {
                issuer: "https://i/".into(),
                subject: "s".into(),
                audiences: vec!["a".into()],
            },
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&body).expect("serializes"),
            serde_json::json!({"properties": {"issuer": "https://i/", "subject": "s", "audiences": ["a"]}})
        );
    }

    #[test]
    fn flexible_fic_without_subject_parses() {
        let fic: FederatedIdentityCredential = serde_json::from_str(
            r#"{"name":"flex","properties":{"issuer":"https://i","audiences":["a"],"claimsMatchingExpression":{"value":"x","languageVersion":1}}}"#,
        )
        .expect("parses");
        assert_eq!(fic.properties.subject, "");
    }

    #[test]
    fn parses_the_error_envelope() {
        let e: ErrorResponse = serde_json::from_str(
            r#"{"error":{"code":"BadRequest","message":"Issuer and subject combination already exists for this Managed Identity."}}"#,
        )
        .expect("parses");
        let detail = e.error.expect("detail");
        assert_eq!(detail.code.as_deref(), Some("BadRequest"));
    }
}
