//! Cross-origin requests, allowed as Ollama allows them: pages served from localhost,
//! 127.0.0.1 or 0.0.0.0 (any port, http or https), the app schemes `app://`, `file://`,
//! `tauri://`, `vscode-webview://` and `vscode-file://`, and the configured extra origins
//! (`HYPERLLAMA_ORIGINS`, patterns where `*` matches any text).
//!
//! # Invariants
//! - Only the `Origin` header decides; a request without one is not a CORS request.

use axum::http::{HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// Origins allowed without configuration.
const DEFAULT_ORIGINS: &[&str] = &[
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
];

/// Whether `text` matches `pattern`, where each `*` matches any (possibly empty) text.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether a request from `origin` may be answered.
pub fn origin_allowed(origin: &str, extra: &[String]) -> bool {
    DEFAULT_ORIGINS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .any(|pattern| glob(pattern, origin))
}

/// The CORS layer for `extra` origins on top of the defaults.
pub fn layer(extra: Vec<String>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(
            move |origin: &HeaderValue, _parts| {
                origin
                    .to_str()
                    .is_ok_and(|origin| origin_allowed(origin, &extra))
            },
        ))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::mirror_request())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_extra_origins() {
        assert!(origin_allowed("http://localhost:3000", &[]));
        assert!(origin_allowed("https://127.0.0.1", &[]));
        assert!(origin_allowed("tauri://localhost", &[]));
        assert!(!origin_allowed("https://evil.example", &[]));
        assert!(!origin_allowed("http://localhost.evil.example", &[]));
        let extra = vec!["https://*.example.com".to_owned()];
        assert!(origin_allowed("https://app.example.com", &extra));
        assert!(!origin_allowed("https://example.org", &extra));
        assert!(origin_allowed("https://anything", &["*".to_owned()]));
    }
}
