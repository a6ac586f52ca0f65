//! The API key, the `Host` check and the refusal of disallowed origins, over real HTTP on
//! 127.0.0.1 (no model is loaded).

mod common;

use common::start_server;
use hyperllama_server::guard::ApiKey;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, HOST, ORIGIN};
use reqwest::Method;
use serde_json::Value;

/// Sends a request with extra headers; returns status, headers and the body as JSON (Null
/// when not JSON).
async fn send(
    server: &common::TestServer,
    method: Method,
    path: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> (u16, HeaderMap, Value) {
    let mut req = server.client.request(method, server.at(path));
    for (name, value) in headers {
        req = req.header(name, HeaderValue::from_str(value).expect("header value"));
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn api_key_guards_every_route_but_the_root() {
    let server = start_server(|cfg| cfg.api_key = Some(ApiKey::new("s3cret-key"))).await;

    for method in [Method::GET, Method::HEAD] {
        let (status, _, _) = send(&server, method, "/", &[]).await;
        assert_eq!(status, 200, "the liveness probe needs no key");
    }

    // Missing key: 401 in each dialect, with WWW-Authenticate.
    let (status, headers, body) = send(&server, Method::GET, "/api/tags", &[]).await;
    assert_eq!(status, 401);
    assert!(body["error"]
        .as_str()
        .expect("Ollama error")
        .contains("API key"));
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, body) = send(&server, Method::GET, "/v1/models", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    let (status, _, _) = send(&server, Method::GET, "/metrics", &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(&server, Method::GET, "/api/nosuch", &[]).await;
    assert_eq!(status, 401, "unknown routes are guarded too");

    // Wrong key, wrong scheme, a prefix of the key: 401.
    for auth in [
        "Bearer wrong",
        "Basic s3cret-key",
        "Bearer s3cret",
        "Bearer s3cret-key2",
    ] {
        let (status, _, body) =
            send(&server, Method::GET, "/api/tags", &[(AUTHORIZATION, auth)]).await;
        assert_eq!(status, 401, "{auth}");
        assert!(body["error"].is_string());
    }

    // The right key (scheme case-insensitive).
    for auth in ["Bearer s3cret-key", "bearer s3cret-key"] {
        let (status, _, body) =
            send(&server, Method::GET, "/api/tags", &[(AUTHORIZATION, auth)]).await;
        assert_eq!(status, 200, "{auth}: {body}");
        assert!(body["models"].is_array());
    }
    let (status, _, body) = send(
        &server,
        Method::GET,
        "/v1/models",
        &[(AUTHORIZATION, "Bearer s3cret-key")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn without_a_key_nothing_is_required() {
    let server = start_server(|_| {}).await;
    let (status, _, _) = send(&server, Method::GET, "/api/tags", &[]).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn foreign_host_names_are_refused_on_loopback() {
    let server = start_server(|_| {}).await;
    let port = server.url.rsplit(':').next().expect("port").to_owned();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "192.168.1.7".to_owned(),
        format!("app.localhost:{port}"),
        "box.internal".to_owned(),
    ] {
        let (status, _, body) = send(&server, Method::GET, "/api/version", &[(HOST, &host)]).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    for host in [
        "evil.example",
        "evil.example:80",
        "localhost.evil.example",
        "8.8.8.8",
    ] {
        let (status, _, body) = send(&server, Method::GET, "/api/version", &[(HOST, host)]).await;
        assert_eq!(status, 403, "{host}");
        assert!(body["error"]
            .as_str()
            .expect("Ollama error")
            .contains("host"));
        let (status, _, body) = send(&server, Method::GET, "/v1/models", &[(HOST, host)]).await;
        assert_eq!(status, 403, "{host}");
        assert_eq!(body["error"]["type"], "permission_error", "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn disallowed_origins_get_403_and_allowed_ones_cors_headers() {
    let server =
        start_server(|cfg| cfg.allowed_origins = vec!["https://*.trusted.example".into()]).await;
    let host = server.url.trim_start_matches("http://").to_owned();

    for origin in [
        "http://localhost:3000",
        "https://app.trusted.example",
        "tauri://localhost",
    ] {
        let (status, headers, _) =
            send(&server, Method::GET, "/api/version", &[(ORIGIN, origin)]).await;
        assert_eq!(status, 200, "{origin}");
        assert_eq!(headers["access-control-allow-origin"], origin);
    }
    // The server's own origin is not a cross-origin request.
    let own = format!("http://{host}");
    let (status, _, _) = send(&server, Method::GET, "/api/version", &[(ORIGIN, &own)]).await;
    assert_eq!(status, 200);

    for origin in ["https://evil.example", "http://localhost.evil.example"] {
        let (status, headers, body) =
            send(&server, Method::GET, "/api/version", &[(ORIGIN, origin)]).await;
        assert_eq!(status, 403, "{origin}");
        assert!(headers.get("access-control-allow-origin").is_none());
        assert!(body["error"]
            .as_str()
            .expect("Ollama error")
            .contains("origin"));
        let (status, _, body) = send(&server, Method::GET, "/v1/models", &[(ORIGIN, origin)]).await;
        assert_eq!(status, 403);
        assert_eq!(body["error"]["type"], "permission_error");
    }

    // Preflights: answered for allowed origins, refused for others.
    let preflight = |origin: &'static str| {
        vec![
            (ORIGIN, origin),
            (reqwest::header::ACCESS_CONTROL_REQUEST_METHOD, "POST"),
        ]
    };
    let (status, headers, _) = send(
        &server,
        Method::OPTIONS,
        "/api/generate",
        &preflight("http://localhost:5173"),
    )
    .await;
    assert!(status == 200 || status == 204, "{status}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let (status, _, _) = send(
        &server,
        Method::OPTIONS,
        "/api/generate",
        &preflight("https://evil.example"),
    )
    .await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn preflights_need_no_api_key() {
    let server = start_server(|cfg| cfg.api_key = Some(ApiKey::new("k"))).await;
    let (status, headers, _) = send(
        &server,
        Method::OPTIONS,
        "/v1/chat/completions",
        &[
            (ORIGIN, "http://localhost:3000"),
            (reqwest::header::ACCESS_CONTROL_REQUEST_METHOD, "POST"),
            (
                reqwest::header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization",
            ),
        ],
    )
    .await;
    assert!(status == 200 || status == 204, "{status}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    server.stop().await;
}
