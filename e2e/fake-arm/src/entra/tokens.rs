//! Access tokens the fake Entra issues: JWT-shaped, so a reader can see what each is for
//! (`aud` the resource, `appid` the client id, `tid` the tenant, `oid`/`sub` the principal), but
//! not signed by anything a client could verify. Services of the fake (ARM, Azure DevOps)
//! never parse them: they look the token up in the fake's record, so a revoked token is
//! refused whatever it says.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::model::IssuedToken;

/// The token string for `record`, valid for `lifetime` seconds from now; `principal` is the
/// identity's principal (object) id when the fake knows one.
pub(crate) fn mint(record: &IssuedToken, lifetime: u64, principal: Option<&str>) -> String {
    let now = chrono::Utc::now().timestamp();
    let subject = principal.unwrap_or(&record.client_id);
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "fake-arm"});
    let claims = json!({
        "aud": record.resource,
        "iss": format!("https://sts.windows.net/{}/", record.tenant),
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
        "appid": record.client_id,
        "idtyp": "app",
        "oid": subject,
        "sub": subject,
        "tid": record.tenant,
        "ver": "1.0",
        // Random (v4): two fakes never issue the same token. Not a secret.
        "uti": uuid::Uuid::new_v4().simple().to_string(),
    });
    // Not a signature anyone can check; random so the token is unguessable.
    let signature = [
        *uuid::Uuid::new_v4().as_bytes(),
        *uuid::Uuid::new_v4().as_bytes(),
    ]
    .concat();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The resource a client credentials scope asks for: `<resource>/.default` without the suffix
/// and without a trailing `/` (Entra accepts `https://management.core.windows.net//.default`).
pub(crate) fn resource_of(scope: &str) -> Option<&str> {
    scope
        .strip_suffix("/.default")
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_their_resource() {
        assert_eq!(
            resource_of("https://management.azure.com/.default"),
            Some("https://management.azure.com")
        );
        assert_eq!(
            resource_of("https://management.core.windows.net//.default"),
            Some("https://management.core.windows.net")
        );
        assert_eq!(
            resource_of("499b84ac-1321-427f-aa17-267ca6975798/.default"),
            Some("499b84ac-1321-427f-aa17-267ca6975798")
        );
        assert_eq!(resource_of("/.default"), None);
        assert_eq!(resource_of("https://management.azure.com"), None);
    }

    #[test]
    fn tokens_carry_what_they_are_for() {
        let record = IssuedToken {
            tenant: "t".into(),
            client_id: "c".into(),
            resource: "r".into(),
            assertion_issuer: None,
            assertion_subject: None,
        };
        let token = mint(&record, 60, Some("p"));
        let claims = token.split('.').nth(1).expect("claims");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("b64")).expect("json");
        assert_eq!(claims["aud"], "r");
        assert_eq!(claims["appid"], "c");
        assert_eq!(claims["tid"], "t");
        assert_eq!(claims["oid"], "p");
        assert_ne!(token, mint(&record, 60, Some("p")), "unique");
    }
}
