//! Non-apply patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge
//! patch (merge patch plus the merge keys of the built-in lists the emulator serves).

use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies a merge, JSON or strategic patch to `target`.
pub fn apply_patch(target: &Value, kind: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let mut doc = target.clone();
    match kind {
        PatchType::Merge => {
            let p = parse_json(body)?;
            if !p.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            json_patch::merge(&mut doc, &p);
        }
        PatchType::Json => {
            let ops: Vec<Value> = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            for op in ops {
                // Like the API server's JSON patch library, `test` of `null` passes on a missing
                // path: kube-runtime's finalizer helper relies on it to add the first finalizer.
                if op.get("op").and_then(Value::as_str) == Some("test")
                    && op.get("value").is_none_or(Value::is_null)
                {
                    let path = op.get("path").and_then(Value::as_str).unwrap_or("");
                    if doc.pointer(path).is_none_or(Value::is_null) {
                        continue;
                    }
                }
                let p: json_patch::Patch =
                    serde_json::from_value(Value::Array(vec![op])).map_err(|e| {
                        ApiError::bad_request(format!("error decoding JSON patch: {e}"))
                    })?;
                json_patch::patch(&mut doc, &p).map_err(|e| {
                    // The API server reports failed `test` operations and bad paths as 422.
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
            }
        }
        PatchType::Strategic => {
            let p = parse_json(body)?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "strategic merge patch must be a JSON object",
                ));
            }
            strategic(&mut doc, &p, &mut Vec::new());
        }
        PatchType::Apply => return Err(ApiError::internal("apply is not a plain patch")),
    }
    Ok(doc)
}

/// The patch strategy of built-in lists: `Some(None)` merges primitives as a set, `Some(Some(k))`
/// merges objects by key `k`; anything else is replaced.
fn merge_key(path: &[String]) -> Option<Option<&'static str>> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["metadata", "finalizers"] => Some(None),
        ["metadata", "ownerReferences"] => Some(Some("uid")),
        ["secrets"] | ["imagePullSecrets"] => Some(Some("name")),
        ["status", "conditions"] => Some(Some("type")),
        _ => None,
    }
}

fn strategic(target: &mut Value, patch: &Value, path: &mut Vec<String>) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        match (merge_key(path), v, t.get_mut(k)) {
            (Some(None), Value::Array(items), Some(Value::Array(existing))) => {
                for i in items {
                    if !existing.contains(i) {
                        existing.push(i.clone());
                    }
                }
            }
            (Some(Some(key)), Value::Array(items), Some(Value::Array(existing))) => {
                for item in items {
                    let id = item.get(key);
                    let pos = existing
                        .iter()
                        .position(|e| id.is_some() && e.get(key) == id);
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            existing.remove(i);
                        }
                        (Some(i), false) => strategic(&mut existing[i], item, path),
                        (None, false) => existing.push(item.clone()),
                        (None, true) => {}
                    }
                }
            }
            (_, Value::Object(_), Some(existing)) if existing.is_object() => {
                strategic(existing, v, path)
            }
            _ => {
                let mut fresh = Value::Null;
                strategic_clean(&mut fresh, v);
                t.insert(k.clone(), fresh);
            }
        }
        path.pop();
    }
}

/// A value newly inserted by a strategic patch, with directives and nulls dropped.
fn strategic_clean(out: &mut Value, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut o = Map::new();
            for (k, x) in m {
                if k.starts_with('$') || x.is_null() {
                    continue;
                }
                let mut c = Value::Null;
                strategic_clean(&mut c, x);
                o.insert(k.clone(), c);
            }
            *out = Value::Object(o);
        }
        other => *out = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_known_lists() {
        let target = json!({"metadata": {"finalizers": ["a"], "ownerReferences": [{"uid": "1", "name": "x"}]}, "spec": {"a": 1, "b": 2}});
        let p = json!({"metadata": {"finalizers": ["b"], "ownerReferences": [{"uid": "1", "name": "y"}]}, "spec": {"b": null}});
        let out =
            apply_patch(&target, PatchType::Strategic, p.to_string().as_bytes()).expect("patches");
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["a", "b"], "ownerReferences": [{"uid": "1", "name": "y"}]}, "spec": {"a": 1}})
        );
        let p = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out =
            apply_patch(&out, PatchType::Strategic, p.to_string().as_bytes()).expect("patches");
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn json_patch_and_merge() {
        let target = json!({"a": {"b": 1}});
        let out = apply_patch(
            &target,
            PatchType::Json,
            br#"[{"op":"add","path":"/a/c","value":2}]"#,
        )
        .expect("patches");
        assert_eq!(out, json!({"a": {"b": 1, "c": 2}}));
        let out = apply_patch(&out, PatchType::Merge, br#"{"a":{"b":null}}"#).expect("patches");
        assert_eq!(out, json!({"a": {"c": 2}}));
        assert_eq!(
            apply_patch(
                &out,
                PatchType::Json,
                br#"[{"op":"test","path":"/a/c","value":3}]"#
            )
            .map_err(|e| e.code)
            .err(),
            Some(422)
        );
        let out = apply_patch(
            &out,
            PatchType::Json,
            br#"[{"op":"test","path":"/f","value":null},{"op":"add","path":"/f","value":["x"]}]"#,
        )
        .expect("test of null passes on a missing path");
        assert_eq!(out["f"], json!(["x"]));
    }
}
