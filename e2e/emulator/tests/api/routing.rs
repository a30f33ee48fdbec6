//! Routing as plain HTTP sees it: which paths exist, which methods they allow, and the Status
//! codes of the refusals (kube-rs never sends most of these requests, so they are sent raw).

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::start;

/// Sends one HTTP/1.1 request and returns the status code and the body.
async fn send(base: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").expect("head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_string())
}

fn reason(body: &str) -> String {
    let status: Value = serde_json::from_str(body).expect("a Status body");
    status["reason"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn paths_methods_and_refusals() {
    let (emu, _client) = start().await;
    let url = emu.url();

    assert_eq!(
        send(&url, "GET", "/healthz", "", "").await,
        (200, "ok".into())
    );

    let (code, body) = send(&url, "POST", "/version", "", "").await;
    assert_eq!((code, reason(&body).as_str()), (405, "MethodNotAllowed"));

    let (code, body) = send(&url, "POST", "/nowhere", "", "").await;
    assert_eq!((code, reason(&body).as_str()), (404, "NotFound"));

    let (code, body) = send(&url, "GET", "/apis/nowhere.example", "", "").await;
    assert_eq!((code, reason(&body).as_str()), (404, "NotFound"));

    // No deletecollection.
    let (code, body) = send(
        &url,
        "DELETE",
        "/api/v1/namespaces/default/configmaps",
        "",
        "",
    )
    .await;
    assert_eq!((code, reason(&body).as_str()), (405, "MethodNotAllowed"));

    // ConfigMaps have no status subresource; namespaces do.
    let (code, _) = send(
        &url,
        "GET",
        "/api/v1/namespaces/default/configmaps/x/status",
        "",
        "",
    )
    .await;
    assert_eq!(code, 404);
    let (code, body) = send(&url, "GET", "/api/v1/namespaces/default/status", "", "").await;
    assert_eq!(code, 200, "{body}");

    // A body that is not JSON, and a patch of an unknown type.
    let (code, body) = send(
        &url,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "Content-Type: application/yaml\r\n",
        "metadata: {name: y}",
    )
    .await;
    assert_eq!((code, reason(&body).as_str()), (400, "BadRequest"));
    let (code, body) = send(
        &url,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/x",
        "Content-Type: text/plain\r\n",
        "{}",
    )
    .await;
    assert_eq!(
        (code, reason(&body).as_str()),
        (415, "UnsupportedMediaType")
    );

    // Options the emulator does not implement are refused, not ignored: a dry run must not
    // write.
    let (code, body) = send(
        &url,
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        "Content-Type: application/json\r\n",
        r#"{"metadata": {"name": "dry"}}"#,
    )
    .await;
    assert_eq!(
        (code, reason(&body).as_str()),
        (400, "BadRequest"),
        "{body}"
    );
    let (code, _) = send(
        &url,
        "GET",
        "/api/v1/namespaces/default/configmaps/dry",
        "",
        "",
    )
    .await;
    assert_eq!(code, 404, "nothing was written");
    let (code, body) = send(
        &url,
        "DELETE",
        "/api/v1/namespaces/default",
        "Content-Type: application/json\r\n",
        r#"{"preconditions": {"resourceVersion": "1"}}"#,
    )
    .await;
    assert_eq!(
        (code, reason(&body).as_str()),
        (400, "BadRequest"),
        "{body}"
    );
    emu.shutdown().await;
}
