//! Reading one object by name through a list selected on `metadata.name`: the operator's role
//! grants list and watch on what it caches, and no get, so a read before a watch's cache has
//! listed (start-up) needs no right of its own.

use kube::{Api, Resource, ResourceExt, api::ListParams};
use serde::de::DeserializeOwned;

/// The object `name` of `api`, if it exists. A kind the API server does not serve (404) has no
/// objects, as a get would answer.
pub async fn by_name<K>(api: &Api<K>, name: &str) -> kube::Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = ListParams::default().fields(&format!("metadata.name={name}"));
    match api.list(&params).await {
        Ok(list) => Ok(list.items.into_iter().find(|o| o.name_any() == name)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}
