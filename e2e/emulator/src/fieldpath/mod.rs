//! Field paths and field sets, the vocabulary of server-side apply (structured-merge-diff):
//! which fields an object sets and how two objects differ ([`set`]), how an applied
//! configuration merges into a live object ([`merge`]), how maps and lists merge ([`shape`]),
//! and the `FieldsV1` wire format ([`fields_v1`]: `f:`, `k:`, `v:`, `.`; every list is atomic,
//! associative or a set, so `i:` index elements never arise).

mod fields_v1;
mod merge;
mod path;
mod set;
mod shape;

pub use fields_v1::{from_fields_v1, to_fields_v1};
pub use merge::{merge, path_exists, remove_path};
pub use path::{FieldSet, Path, path_string};
pub use set::{Diff, compare, to_set};
pub use shape::Shape;
