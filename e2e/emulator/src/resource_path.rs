//! Where a resource request points: group, version, namespace, plural, name, subresource. A leaf
//! module, so the request counters and the audit record can use it without the request layer.

/// What the path of a resource request (after `/api/{v}` or `/apis/{g}/{v}`) addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourcePath<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub namespace: Option<&'a str>,
    pub plural: &'a str,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
}

/// Parses `rest`, the path segments after `/api/{v}` or `/apis/{g}/{v}`; `None` when it is
/// not the shape of a resource path (or empty: discovery).
pub fn resource_path<'a>(
    group: &'a str,
    version: &'a str,
    rest: &[&'a str],
) -> Option<ResourcePath<'a>> {
    // `/namespaces/{ns}/status` is the namespace's own subresource, not a resource in it.
    let scoped =
        rest.len() >= 3 && rest[0] == "namespaces" && !(rest.len() == 3 && rest[2] == "status");
    let (namespace, rest) = if scoped {
        (Some(rest[1]), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, subresource) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return None,
    };
    Some(ResourcePath {
        group,
        version,
        namespace,
        plural,
        name,
        subresource,
    })
}
