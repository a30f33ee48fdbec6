//! ObjectMeta validation shared by all kinds: the name and label syntax.

use serde_json::{Value, json};

use super::field_error::value_str;
use crate::error::Cause;

const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const LABEL_VALUE: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
const QUALIFIED_NAME: &str = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$";

fn matches(re: &str, s: &str) -> bool {
    regex::Regex::new(re).is_ok_and(|r| r.is_match(s))
}

/// ObjectMeta validation shared by all kinds: the name (a DNS-1123 subdomain, or label for
/// namespaces) and label syntax.
pub fn validate_metadata(obj: &Value, name_is_label: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = crate::object::name(obj);
    let (re, max, what, example) = if name_is_label {
        (
            DNS1123_LABEL,
            63,
            "a lowercase RFC 1123 label",
            "'my-name',  or '123-abc'",
        )
    } else {
        (
            DNS1123_SUBDOMAIN,
            253,
            "a lowercase RFC 1123 subdomain",
            "'example.com'",
        )
    };
    if name.len() > max {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: must be no more than {max} characters",
                value_str(&json!(name))
            ),
            field: "metadata.name".into(),
        });
    } else if !matches(re, name) {
        let chars = if name_is_label { "'-'" } else { "'-' or '.'" };
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: {what} must consist of lower case alphanumeric characters, {chars}, \
                 and must start and end with an alphanumeric character (e.g. {example}, regex used for \
                 validation is '{}')",
                value_str(&json!(name)),
                re.trim_start_matches('^').trim_end_matches('$')
            ),
            field: "metadata.name".into(),
        });
    }
    if let Some(labels) = crate::object::labels(obj) {
        for (k, v) in labels {
            let key_name = k.rsplit('/').next().unwrap_or(k);
            if key_name.len() > 63 || !matches(QUALIFIED_NAME, key_name) {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", value_str(&json!(k))),
                    field: "metadata.labels".into(),
                });
            }
            let Some(s) = v.as_str() else {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {}: label values must be strings",
                        value_str(v)
                    ),
                    field: format!("metadata.labels.{k}"),
                });
                continue;
            };
            if s.len() > 63 || !matches(LABEL_VALUE, s) {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, and be at most 63 characters", value_str(v)),
                    field: "metadata.labels".into(),
                });
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_metadata(&json!({"metadata": {"name": "ok.name-1"}}), false).is_empty());
        let c = validate_metadata(&json!({"metadata": {"name": "Bad_Name"}}), false);
        assert_eq!(c[0].field, "metadata.name");
        assert!(!validate_metadata(&json!({"metadata": {"name": "a.b"}}), true).is_empty());
    }

    #[test]
    fn labels() {
        let ok = json!({"metadata": {"name": "a", "labels": {"example.com/app": "web", "e": ""}}});
        assert!(validate_metadata(&ok, false).is_empty());
        let bad = json!({"metadata": {"name": "a", "labels": {"-k": "v", "k": "-v", "n": 1}}});
        let fields: Vec<String> = validate_metadata(&bad, false)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            ["metadata.labels", "metadata.labels", "metadata.labels.n"]
        );
    }
}
