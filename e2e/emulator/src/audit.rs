//! An audit-style record of every request, with the attributes kube-apiserver's authorizer
//! sees, appended as JSON lines (one `audit.k8s.io/v1` `Event` a line, at level `Metadata`)
//! to a file of its own when [`crate::EmulatorConfig::audit_dir`] names a directory.
//!
//! What follows kube-apiserver (its request-info factory, which fills the authorizer's
//! attributes, and the audit policy's `Metadata` level):
//! - `verb` is the RBAC verb: `get`, `list` or `watch` for GET and HEAD (`list` for a
//!   collection, `watch` for a collection with a `watch` parameter other than `0`/`false`;
//!   an object is `get` whatever its `watch` parameter says), `create` (POST), `update`
//!   (PUT), `patch` (PATCH, any patch type, server-side apply included), `delete` (DELETE of
//!   an object) or `deletecollection` (DELETE of a collection); a method outside these is its
//!   name in lower case, and so is every non-resource request's verb;
//! - a list or watch whose `fieldSelector` requires `metadata.name` to be one value is
//!   authorized as a request for that name (`objectRef.name`), so `resourceNames` apply;
//! - `objectRef.namespace` of `/api/v1/namespaces/{name}` is `{name}`;
//! - non-resource requests (discovery, `/version`, the issuer's documents) have no
//!   `objectRef`;
//! - `stage` is `ResponseComplete`, except a watch that was accepted: `ResponseStarted`, as it
//!   is recorded when it starts.
//!
//! The file is written by a thread of its own through a bounded queue and a buffer, flushed
//! whenever the queue runs empty and on [`crate::Emulator::shutdown`], never synced: a request
//! costs a serialization and a channel send, memory stays bounded (a full queue makes the
//! request wait), and what a test process served is on disk right after it served it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method, Uri, header};
use serde::Serialize;

use crate::resource_path::resource_path;

/// The environment variable naming the directory [`crate::EmulatorConfig::default`] records
/// requests into; unset or empty records nothing.
pub const AUDIT_DIR_ENV: &str = "KUBE_EMULATOR_AUDIT_DIR";
/// Entries waiting for the writer thread at most.
const QUEUE: usize = 8192;
/// The writer's buffer.
const BUFFER: usize = 64 * 1024;
/// How long [`AuditLog::flush`] waits for the writer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the audit log records it at level `Metadata`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: &'static str,
    pub stage: &'static str,
    pub request_received_timestamp: String,
    pub verb: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    pub response_status: ResponseStatus,
}

/// What a resource request addresses; empty fields are left out, as in kube-apiserver's
/// audit events (the core group has no `apiGroup`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResponseStatus {
    pub code: u16,
}

impl AuditEntry {
    /// The entry of a request answered with `code`; `started` for a watch recorded when it
    /// starts.
    pub fn new(method: &Method, uri: &Uri, headers: &HeaderMap, code: u16, started: bool) -> Self {
        let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let query: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let first = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let resource = match segs.as_slice() {
            ["api", version, rest @ ..] => resource_path("", version, rest),
            ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
            _ => None,
        };
        let method_verb = method.as_str().to_ascii_lowercase();
        let (verb, object_ref) = match resource {
            None => (method_verb, None),
            Some(r) => {
                let mut name = r.name.unwrap_or_default().to_string();
                let verb = match method_verb.as_str() {
                    "get" | "head" if name.is_empty() => {
                        if let Some(n) = first("fieldSelector").and_then(exact_name) {
                            name = n;
                        }
                        if first("watch").is_some_and(|v| {
                            !v.eq_ignore_ascii_case("0") && !v.eq_ignore_ascii_case("false")
                        }) {
                            "watch"
                        } else {
                            "list"
                        }
                    }
                    "get" | "head" => "get",
                    "post" => "create",
                    "put" => "update",
                    "patch" => "patch",
                    "delete" if name.is_empty() => "deletecollection",
                    "delete" => "delete",
                    other => other,
                }
                .to_string();
                let namespace = match r.namespace {
                    Some(ns) => ns.to_string(),
                    None if r.group.is_empty() && r.plural == "namespaces" => {
                        r.name.unwrap_or_default().to_string()
                    }
                    None => String::new(),
                };
                let object_ref = ObjectRef {
                    resource: r.plural.to_string(),
                    namespace,
                    name,
                    api_group: r.group.to_string(),
                    api_version: r.version.to_string(),
                    subresource: r.subresource.unwrap_or_default().to_string(),
                };
                (verb, Some(object_ref))
            }
        };
        AuditEntry {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            stage: if started {
                "ResponseStarted"
            } else {
                "ResponseComplete"
            },
            request_received_timestamp: chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            verb,
            request_uri: uri.to_string(),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            object_ref,
            response_status: ResponseStatus { code },
        }
    }
}

/// The name a field selector requires `metadata.name` to equal (`metadata.name=x` or
/// `metadata.name==x` among its terms), if it is a valid path segment.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let value = term
            .trim()
            .strip_prefix("metadata.name")?
            .trim_start()
            .strip_prefix('=')?;
        let value = value.strip_prefix('=').unwrap_or(value).trim();
        let valid = !value.is_empty()
            && value != "."
            && value != ".."
            && !value.contains('/')
            && !value.contains('%');
        valid.then(|| value.to_string())
    })
}

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// The JSON-lines file of one emulator, written by its own thread.
pub struct AuditLog {
    tx: SyncSender<Msg>,
    path: PathBuf,
}

impl AuditLog {
    /// Creates `dir` if needed and a new file in it, named after the process, the time and a
    /// sequence number so that concurrent test processes never share one.
    pub fn create(dir: &Path) -> std::io::Result<AuditLog> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = dir.join(format!(
            "audit-{}-{nanos}-{}.jsonl",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let shown = path.clone();
        std::thread::Builder::new()
            .name("kube-emulator-audit".into())
            .spawn(move || write_loop(rx, BufWriter::with_capacity(BUFFER, file), &shown))?;
        Ok(AuditLog { tx, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one entry; waits only while the queue is full.
    pub fn record(&self, entry: &AuditEntry) {
        match serde_json::to_vec(entry) {
            Ok(mut line) => {
                line.push(b'\n');
                let _ = self.tx.send(Msg::Line(line));
            }
            Err(e) => tracing::warn!(error = %e, "audit entry not serializable"),
        }
    }

    /// Blocks until everything queued before is written to the file (not synced).
    pub fn flush(&self) {
        let (ack, done) = mpsc::channel();
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

fn write_loop(rx: Receiver<Msg>, mut out: BufWriter<File>, path: &Path) {
    let mut failed = false;
    let mut fail = |e: std::io::Error| {
        if !failed {
            tracing::warn!(path = %path.display(), error = %e, "audit log write failed");
            failed = true;
        }
    };
    loop {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(TryRecvError::Empty) => {
                // Idle: hand what is buffered to the OS, then wait.
                if let Err(e) = out.flush() {
                    fail(e);
                }
                match rx.recv_timeout(Duration::from_secs(3600)) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match msg {
            Msg::Line(line) => {
                if let Err(e) = out.write_all(&line) {
                    fail(e);
                }
            }
            Msg::Flush(ack) => {
                if let Err(e) = out.flush() {
                    fail(e);
                }
                let _ = ack.send(());
            }
        }
    }
    if let Err(e) = out.flush() {
        fail(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: &str, uri: &str) -> AuditEntry {
        let mut headers = HeaderMap::new();
        headers.insert(header::USER_AGENT, "tester/1".parse().expect("header"));
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        AuditEntry::new(&method, &uri.parse().expect("uri"), &headers, 200, false)
    }

    fn short(e: &AuditEntry) -> (String, String, String, String, String, String) {
        let r = e.object_ref.clone().unwrap_or_default();
        (
            e.verb.clone(),
            r.api_group,
            r.resource,
            r.subresource,
            r.namespace,
            r.name,
        )
    }

    #[test]
    fn rbac_attributes_as_kube_apiserver_derives_them() {
        let s = |v: &str| v.to_string();
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/d/configmaps/x",
                ["get", "", "configmaps", "", "d", "x"],
            ),
            (
                "HEAD",
                "/api/v1/namespaces/d/configmaps/x",
                ["get", "", "configmaps", "", "d", "x"],
            ),
            (
                "GET",
                "/api/v1/namespaces/d/configmaps",
                ["list", "", "configmaps", "", "d", ""],
            ),
            (
                "GET",
                "/api/v1/configmaps?watch=true",
                ["watch", "", "configmaps", "", "", ""],
            ),
            (
                "GET",
                "/api/v1/configmaps?watch=1&resourceVersion=3",
                ["watch", "", "configmaps", "", "", ""],
            ),
            (
                "GET",
                "/api/v1/configmaps?watch=false",
                ["list", "", "configmaps", "", "", ""],
            ),
            (
                "GET",
                "/api/v1/namespaces/d/configmaps/x?watch=true",
                ["get", "", "configmaps", "", "d", "x"],
            ),
            (
                "GET",
                "/api/v1/namespaces/d/configmaps?fieldSelector=metadata.name%3Dx",
                ["list", "", "configmaps", "", "d", "x"],
            ),
            (
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/d/leases?fieldSelector=metadata.name%3D%3Dl%2Cb%3Dc&watch=true",
                ["watch", "coordination.k8s.io", "leases", "", "d", "l"],
            ),
            (
                "GET",
                "/api/v1/namespaces/d/configmaps?fieldSelector=metadata.name%21%3Dx",
                ["list", "", "configmaps", "", "d", ""],
            ),
            (
                "POST",
                "/api/v1/namespaces/d/configmaps",
                ["create", "", "configmaps", "", "d", ""],
            ),
            (
                "PUT",
                "/api/v1/namespaces/d/configmaps/x",
                ["update", "", "configmaps", "", "d", "x"],
            ),
            (
                "PATCH",
                "/apis/identity.tenancy.dev/v1alpha1/namespaces/d/tenantidentities/t/status",
                [
                    "patch",
                    "identity.tenancy.dev",
                    "tenantidentities",
                    "status",
                    "d",
                    "t",
                ],
            ),
            (
                "DELETE",
                "/api/v1/namespaces/d/configmaps/x",
                ["delete", "", "configmaps", "", "d", "x"],
            ),
            (
                "DELETE",
                "/api/v1/namespaces/d/configmaps",
                ["deletecollection", "", "configmaps", "", "d", ""],
            ),
            (
                "GET",
                "/api/v1/namespaces/d",
                ["get", "", "namespaces", "", "d", "d"],
            ),
            (
                "GET",
                "/api/v1/namespaces",
                ["list", "", "namespaces", "", "", ""],
            ),
            (
                "PUT",
                "/api/v1/namespaces/d/status",
                ["update", "", "namespaces", "status", "d", "d"],
            ),
            (
                "POST",
                "/api/v1/namespaces/d/serviceaccounts/sa/token",
                ["create", "", "serviceaccounts", "token", "d", "sa"],
            ),
        ];
        for (method, uri, want) in cases {
            let got = short(&entry(method, uri));
            let want = (
                s(want[0]),
                s(want[1]),
                s(want[2]),
                s(want[3]),
                s(want[4]),
                s(want[5]),
            );
            assert_eq!(got, want, "{method} {uri}");
        }
        for (method, uri) in [
            ("GET", "/apis"),
            ("GET", "/openid/v1/jwks"),
            ("GET", "/apis/g.example/v1"),
        ] {
            let e = entry(method, uri);
            assert_eq!(
                (e.verb.as_str(), e.object_ref.is_none()),
                ("get", true),
                "{uri}"
            );
        }
        assert_eq!(entry("POST", "/version").verb, "post");
    }

    #[test]
    fn serialized_like_an_audit_event() {
        let e = entry("GET", "/api/v1/namespaces/d/configmaps/x");
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["kind"], "Event");
        assert_eq!(v["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(v["userAgent"], "tester/1");
        assert_eq!(v["requestURI"], "/api/v1/namespaces/d/configmaps/x");
        assert_eq!(v["responseStatus"]["code"], 200);
        assert_eq!(
            v["objectRef"],
            serde_json::json!({"resource": "configmaps", "namespace": "d", "name": "x", "apiVersion": "v1"})
        );
    }

    #[test]
    fn lines_reach_the_file_on_flush_and_files_are_unique() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::create(dir.path()).expect("log");
        let other = AuditLog::create(dir.path()).expect("second log");
        assert_ne!(log.path(), other.path());
        for _ in 0..3 {
            log.record(&entry("GET", "/api/v1/namespaces"));
        }
        log.flush();
        let text = std::fs::read_to_string(log.path()).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines.iter().all(|l| l["verb"] == "list"));
    }
}
