//! The client assertion as Entra reads it: a compact JWS (RFC 7515) whose header names RS256
//! and, usually, a `kid`, and whose claims carry `iss`, `sub`, `aud` (a string or an array, as
//! RFC 7519 allows; Kubernetes service account tokens use an array) and `exp`. Parsing checks
//! the shape only; [`Assertion::verify`] checks the RS256 signature against a JWK.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::errors::EntraError;

/// A parsed (not yet verified) client assertion.
#[derive(Clone, Debug)]
pub(crate) struct Assertion {
    /// `header.payload`: what the signature covers.
    signing_input: String,
    signature: Vec<u8>,
    pub(crate) kid: Option<String>,
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) expires: i64,
    pub(crate) not_before: Option<i64>,
    pub(crate) issued_at: Option<i64>,
}

impl Assertion {
    /// Parse `token`: AADSTS50027 for anything that is not a JWS with the required claims,
    /// AADSTS5002730 for an algorithm other than RS256.
    pub(crate) fn parse(token: &str) -> Result<Assertion, EntraError> {
        let malformed = EntraError::malformed_assertion;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let header = decode_json(header).ok_or_else(malformed)?;
        let claims = decode_json(payload).ok_or_else(malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| malformed())?;
        match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => {}
            Some(_) => return Err(EntraError::unsupported_algorithm()),
            None => return Err(malformed()),
        }
        let string = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let issuer = string("iss").ok_or_else(malformed)?;
        let subject = string("sub").ok_or_else(malformed)?;
        let audiences: Vec<String> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|a| a.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(malformed)?,
            _ => return Err(malformed()),
        };
        if audiences.is_empty() {
            return Err(malformed());
        }
        let number = |name: &str| claims.get(name).and_then(numeric_date);
        let expires = number("exp").ok_or_else(malformed)?;
        Ok(Assertion {
            signing_input: token[..header_and_payload_len(token)].to_string(),
            signature,
            kid: header
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_string),
            issuer,
            subject,
            audiences,
            expires,
            not_before: number("nbf"),
            issued_at: number("iat"),
        })
    }

    /// The audiences as Entra prints them in AADSTS70021/700212.
    pub(crate) fn audience_text(&self) -> String {
        self.audiences.join(",")
    }

    /// Whether the RS256 signature verifies with the RSA JWK `jwk` (`kty` `RSA`, `n`, `e`).
    pub(crate) fn verify(&self, jwk: &Value) -> bool {
        if jwk.get("kty").and_then(Value::as_str) != Some("RSA") {
            return false;
        }
        let component = |name: &str| {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                .map(strip_leading_zeros)
        };
        let (Some(n), Some(e)) = (component("n"), component("e")) else {
            return false;
        };
        ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                self.signing_input.as_bytes(),
                &self.signature,
            )
            .is_ok()
    }
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json(segment: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.is_object().then_some(value)
}

/// An RFC 7519 NumericDate: seconds since the epoch, possibly with a fraction.
fn numeric_date(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros.min(bytes.len().saturating_sub(1)));
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn segment(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token(header: Value, claims: Value) -> String {
        format!("{}.{}.c2ln", segment(&header), segment(&claims))
    }

    fn claims() -> Value {
        json!({"iss": "https://issuer", "sub": "system:serviceaccount:a:b", "aud": ["api://AzureADTokenExchange"], "exp": 2_000_000_000, "iat": 1_999_999_000})
    }

    #[test]
    fn a_service_account_token_shape_parses() {
        let t = token(json!({"alg": "RS256", "kid": "k1"}), claims());
        let a = Assertion::parse(&t).expect("parses");
        assert_eq!(a.kid.as_deref(), Some("k1"));
        assert_eq!(a.issuer, "https://issuer");
        assert_eq!(a.subject, "system:serviceaccount:a:b");
        assert_eq!(a.audiences, vec!["api://AzureADTokenExchange".to_string()]);
        assert_eq!(a.expires, 2_000_000_000);
        assert_eq!(a.issued_at, Some(1_999_999_000));
        assert_eq!(a.not_before, None);
        assert_eq!(a.signature, b"sig");
        assert_eq!(a.signing_input, t[..t.rfind('.').unwrap_or(0)]);
    }

    #[test]
    fn a_string_audience_parses() {
        let mut c = claims();
        c["aud"] = json!("api://x");
        let a = Assertion::parse(&token(json!({"alg": "RS256"}), c)).expect("parses");
        assert_eq!(a.audiences, vec!["api://x".to_string()]);
    }

    #[test]
    fn malformed_assertions_are_50027_and_other_algorithms_5002730() {
        let code = |t: &str| Assertion::parse(t).err().map(|e| e.code);
        assert_eq!(code("not-a-jwt"), Some(50027));
        assert_eq!(code("a.b"), Some(50027));
        assert_eq!(code("a.b.c.d"), Some(50027));
        assert_eq!(code("%%%.e30.c2ln"), Some(50027));
        for missing in ["iss", "sub", "aud", "exp"] {
            let mut c = claims();
            c.as_object_mut().map(|o| o.remove(missing));
            assert_eq!(
                code(&token(json!({"alg": "RS256"}), c)),
                Some(50027),
                "without {missing}"
            );
        }
        let mut c = claims();
        c["aud"] = json!([]);
        assert_eq!(code(&token(json!({"alg": "RS256"}), c)), Some(50027));
        assert_eq!(code(&token(json!({}), claims())), Some(50027));
        assert_eq!(
            code(&token(json!({"alg": "none"}), claims())),
            Some(5002730)
        );
        assert_eq!(
            code(&token(json!({"alg": "HS256"}), claims())),
            Some(5002730)
        );
    }

    #[test]
    fn leading_zeros_are_stripped_but_not_the_last_byte() {
        assert_eq!(strip_leading_zeros(vec![0, 0, 1, 2]), vec![1, 2]);
        assert_eq!(strip_leading_zeros(vec![0]), vec![0]);
        assert_eq!(strip_leading_zeros(vec![]), Vec::<u8>::new());
    }
}
