//! The API's reads and writes: get, list, create, update, patch (including server-side apply),
//! delete. All functions run under the store lock and never await.
//!
//! Every write funnels through `create::finish_create` or `update::finish_update`, which take
//! the steps of the API server's generic registry in its order: server-owned metadata,
//! subresource scoping, per-kind hooks, pruning and defaulting ([`admission`]), managedFields
//! ([`ownership`]), validation, generation, and the no-op check that keeps an unchanged write
//! from bumping resourceVersion.

mod admission;
mod apply;
mod create;
mod delete;
mod ownership;
mod patch;
mod read;
mod target;
mod update;

pub use create::create;
pub use delete::{DeleteOptions, Deleted, delete, delete_object, remove_object};
pub use patch::patch;
pub use read::{ListOptions, get, list, select};
pub use target::{Target, WriteOptions};
pub use update::update;
