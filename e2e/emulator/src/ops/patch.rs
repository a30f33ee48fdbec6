//! PATCH: server-side apply, or a merge, JSON or strategic merge patch of the stored object.

use serde_json::Value;

use super::admission;
use super::apply::apply;
use super::ownership::Ownership;
use super::target::{Target, WriteOptions};
use super::update::finish_update;
use crate::error::ApiError;
use crate::patch::{PatchType, apply_patch};
use crate::store::Store;

/// Returns the object and whether it was created (apply only).
pub fn patch(
    store: &mut Store,
    t: &Target,
    kind: PatchType,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<(Value, bool), ApiError> {
    // Custom resources have no Go struct tags to take merge keys from.
    if kind == PatchType::Strategic && t.res.custom {
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    if kind == PatchType::Apply {
        return apply(store, t, body, opts);
    }
    let old = store
        .get(&t.res.key(), t.ns(), t.name())
        .cloned()
        .ok_or_else(|| t.not_found())?;
    let mut patched = apply_patch(&t.res.convert(old.clone(), &t.version), kind, body)?;
    admission::normalize_type_meta(&mut patched, t)?;
    finish_update(store, t, old, patched, Ownership::Update, opts).map(|v| (v, false))
}
