//! Reads: get, and list with selectors and `limit`/`continue` paging.

use serde_json::{Value, json};

use super::target::Target;
use crate::error::ApiError;
use crate::object;
use crate::selectors::Selectors;
use crate::store::Store;

pub fn get(store: &Store, t: &Target) -> Result<Value, ApiError> {
    let obj = store
        .get(&t.res.key(), t.ns(), t.name())
        .ok_or_else(|| t.not_found())?;
    Ok(t.res.convert(obj.clone(), &t.version))
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub selectors: Selectors,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// A continue token names the list's resourceVersion and the last object returned, so the
/// next page starts after it and a token older than the history can be refused with 410.
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    let raw = json!({"rv": rv, "ns": ns, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Option<(u64, String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    Some((
        v.get("rv")?.as_u64()?,
        v.get("ns")?.as_str()?.to_string(),
        v.get("name")?.as_str()?.to_string(),
    ))
}

/// Objects of a target (one namespace, or all when the path has none), filtered and sorted.
pub fn select<'a>(store: &'a Store, t: &Target, selectors: &Selectors) -> Vec<&'a Value> {
    let ns = if t.res.namespaced {
        t.namespace.as_deref()
    } else {
        None
    };
    store
        .list(&t.res.key(), ns)
        .into_iter()
        .filter(|o| selectors.matches(o))
        .collect()
}

pub fn list(store: &Store, t: &Target, opts: &ListOptions) -> Result<Value, ApiError> {
    let (list_rv, after) = match &opts.continue_token {
        Some(token) => {
            let (rv, ns, name) = decode_continue(token)
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
            if rv < store.history_floor() {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ));
            }
            (rv, Some((ns, name)))
        }
        None => (store.current_rv(), None),
    };
    let all: Vec<&Value> = select(store, t, &opts.selectors)
        .into_iter()
        .filter(|o| match &after {
            Some((ns, name)) => {
                (object::namespace(o), object::name(o)) > (ns.as_str(), name.as_str())
            }
            None => true,
        })
        .collect();
    let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let page: Vec<Value> = all
        .iter()
        .take(limit)
        .map(|o| t.res.convert((*o).clone(), &t.version))
        .collect();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if all.len() > page.len()
        && let Some(last) = page.last()
    {
        metadata["continue"] = json!(encode_continue(
            list_rv,
            object::namespace(last),
            object::name(last)
        ));
        metadata["remainingItemCount"] = json!(all.len() - page.len());
    }
    Ok(json!({
        "kind": t.res.list_kind,
        "apiVersion": t.res.api_version(&t.version),
        "metadata": metadata,
        "items": page,
    }))
}
